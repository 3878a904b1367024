"""Run under ``torchrun --nproc_per_node=2 tests/vq_ddp_worker.py OUTDIR`` (gloo on CPU).

Each rank starts from a *different* random codebook and feeds *different* data with
padding; after several training steps (k-means init, EMA, dead-code resets) it saves its
buffers to ``OUTDIR/rank{R}.pt`` together with the number of steps that reset codes.
``tests/test_quantize.py`` checks that the ranks ended up identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from common.dist import cleanup_dist, setup_dist
from modules.quantize import VectorQuantizer


def main(outdir: Path) -> None:
    info = setup_dist(timeout_s=120.0, device="cpu")
    torch.set_num_threads(1)
    torch.manual_seed(1000 + info.rank)  # different initial codebooks on purpose
    vq = VectorQuantizer(dim=6, codebook_size=16, decay=0.9, kmeans_iters=5, dead_code_threshold=1.5).train()
    data = torch.Generator().manual_seed(7 + info.rank)
    reset_steps = 0
    for _ in range(8):
        x = torch.randn(3, 6, 10, generator=data) * (1.0 + info.rank) + 3.0 * info.rank
        lengths = torch.randint(4, 11, (3,), generator=data)
        mask = (torch.arange(10).unsqueeze(0) < lengths.unsqueeze(1)).float().unsqueeze(1)
        x = x * mask + 50.0 * (1 - mask)
        vq(x, mask)
        reset_steps += int((vq.cluster_size == vq.dead_code_threshold).any())
    state = {k: v.clone() for k, v in vq.state_dict().items()}
    torch.save({"state": state, "reset_steps": reset_steps}, outdir / f"rank{info.rank}.pt")
    cleanup_dist()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
