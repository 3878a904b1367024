"""Run under ``torchrun --nproc_per_node=2 tests/s1_accum_ddp_worker.py OUT.pt`` (gloo on CPU).

Every rank builds the same tiny S1 model (fp32, dropout 0), wraps it in DDP and runs one
``s1.trainer.accumulate_step`` over its own two micro-batches (``RANK_MICRO``: different
items, sizes and lengths on each rank), then one AdamW step. Rank 0 saves the gradients
and the updated parameters to ``OUT.pt``; ``tests/test_s1_accumulation.py`` compares them
with one process stepping on one batch that holds every item. ``make_items`` and
``tiny_model`` are shared with that test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from common.config import S1TrainConfig
from common.dist import barrier, cleanup_dist, setup_dist
from s1.data import S1Item, collate_s1
from s1.model import Text2Semantic
from s1.trainer import accumulate_step, make_optimizer

CODEBOOK = 16
# item indices of each rank's micro-batches: unequal sizes, so the token weighting matters
RANK_MICRO = (((0, 1), (2, 3, 4)), ((5,), (6, 7)))
TRAIN = S1TrainConfig(learning_rate=1e-2, lr_init=1e-2, lr_end=1e-3, warmup_steps=0, decay_steps=10,
                      weight_decay=0.01)


def make_items(n: int = 8, seed: int = 0) -> list[S1Item]:
    """``n`` items with 2..9 phones and 0..14 tokens (one with no token at all)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        n_ph = int(torch.randint(2, 10, (1,), generator=g))
        n_tok = 0 if i == 3 else int(torch.randint(1, 15, (1,), generator=g))
        items.append(S1Item(f"u{i}", torch.randint(1, 60, (n_ph,), generator=g),
                            torch.randint(0, CODEBOOK, (n_tok,), generator=g)))
    return items


def tiny_model(seed: int = 0) -> Text2Semantic:
    torch.manual_seed(seed)
    return Text2Semantic(codebook_size=CODEBOOK, phoneme_vocab_size=64, dim=32, n_layer=2, n_head=4, ffn_dim=64,
                         dropout=0.0, pos_dropout=0.0)


def main(out: Path) -> None:
    info = setup_dist(timeout_s=120.0, device="cpu")
    torch.set_num_threads(1)
    items = make_items()
    raw = tiny_model()
    model = DDP(raw)
    micro = [collate_s1([items[i] for i in idx], CODEBOOK) for idx in RANK_MICRO[info.rank]]
    optim = make_optimizer(raw, TRAIN)
    optim.zero_grad(set_to_none=True)
    accumulate_step(model, micro, world_size=info.world_size)
    grads = {n: p.grad.clone() for n, p in raw.named_parameters()}
    optim.step()
    if info.is_main:
        torch.save({"grads": grads, "params": {n: p.detach().clone() for n, p in raw.named_parameters()}}, out)
    barrier()  # leave together: a rank tearing gloo down while its peer still works can abort the peer
    cleanup_dist()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
