"""EMA vector quantizer: round trip, straight-through, masked k-means/EMA, freezing,
dead-code reset, fp32 under autocast, identical codebooks under 2-process DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modules.quantize import VectorQuantizer, kmeans

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

REPO = Path(__file__).resolve().parents[1]


def _trained_vq(dim: int = 8, k: int = 16, seed: int = 0) -> VectorQuantizer:
    torch.manual_seed(seed)
    vq = VectorQuantizer(dim, k, kmeans_iters=5).train()
    vq(torch.randn(4, dim, 30))
    return vq


def _buffers(vq: VectorQuantizer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in vq.state_dict().items()}


def test_buffers_and_no_parameters():
    vq = VectorQuantizer(12, 32)
    assert list(vq.parameters()) == []
    shapes = {k: tuple(v.shape) for k, v in vq.state_dict().items()}
    assert shapes == {"inited": (1,), "cluster_size": (32,), "embed": (32, 12), "embed_avg": (32, 12)}


def test_decode_of_encode_equals_eval_forward():
    vq = _trained_vq().eval()
    x = torch.randn(3, 8, 17)
    codes = vq.encode(x)
    out = vq(x)
    assert codes.shape == (3, 17) and codes.dtype == torch.long
    assert torch.equal(out.codes, codes)
    assert torch.equal(vq.decode(codes), out.quantized)
    assert out.commit_loss.item() == 0.0
    # nearest code really is the nearest (brute force)
    flat = x.transpose(1, 2).reshape(-1, 8)
    brute = torch.cdist(flat, vq.embed).argmin(1)
    assert torch.equal(codes.view(-1), brute)


def test_encode_is_pure_in_training_mode():
    vq = _trained_vq()
    before = _buffers(vq)
    vq.encode(torch.randn(2, 8, 9) * 5)
    for k, v in vq.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_straight_through_gradient_and_commit_loss():
    vq = _trained_vq()
    x = torch.randn(2, 8, 11, requires_grad=True)
    w = torch.randn(2, 8, 11)
    out = vq(x)
    (out.quantized * w).sum().backward()
    torch.testing.assert_close(x.grad, w)
    x2 = x.detach().clone().requires_grad_()
    out2 = vq(x2)
    out2.commit_loss.backward()
    expected = 2 * (x2.detach() - out2.quantized.detach()) / x2.numel()
    torch.testing.assert_close(x2.grad, expected)


def test_kmeans_and_ema_ignore_padding_frames():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 25)
    lengths = torch.tensor([25, 10, 6, 3])
    mask = (torch.arange(25).unsqueeze(0) < lengths.unsqueeze(1)).float().unsqueeze(1)
    x = x * mask + 1e6 * (1 - mask)
    vq = VectorQuantizer(8, 16, kmeans_iters=10).train()
    for _ in range(3):
        out = vq(x, mask)
    assert vq.inited.item() == 1.0
    assert vq.embed.abs().max().item() < 100
    assert vq.embed_avg.abs().max().item() < 1000
    assert out.commit_loss.item() < 100
    # without the mask the padding value becomes a code (the test can fail)
    unmasked = VectorQuantizer(8, 16, kmeans_iters=10).train()
    unmasked(x)
    assert unmasked.embed.abs().max().item() > 1e5


def test_kmeans_converges_to_centroids_and_keeps_empty_clusters():
    torch.manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = torch.cat([c + 0.5 * torch.randn(40, 2) for c in centers])
    means, counts = kmeans(x, 6, 30)
    assign = torch.cdist(x, means).argmin(1)
    assert torch.equal(counts, torch.bincount(assign, minlength=6).float())
    for c in range(6):
        if counts[c] > 0:  # a fixed point of Lloyd: every mean is the centroid of its points
            torch.testing.assert_close(means[c], x[assign == c].mean(0))
    # two distinct points, four clusters: duplicates stay empty and keep a finite mean
    two = torch.tensor([[1.0, 1.0], [-1.0, 2.0]]).repeat(10, 1)
    means, counts = kmeans(two, 4, 5)
    assert counts.sum().item() == 20 and (counts == 0).sum().item() >= 2
    assert torch.isfinite(means).all()


def test_kmeans_init_is_a_fixed_point_of_the_ema():
    """The init's EMA state must describe its means (embed = embed_avg / cluster_size): a batch like
    the init data leaves the codebook where k-means put it. Setting embed_avg to the means alone
    (encodec, GPT-SoVITS) divides every code by its count at the first update."""
    torch.manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = torch.cat([c + 0.5 * torch.randn(40, 2) for c in centers]).t().unsqueeze(0)  # [1, 2, 160]
    vq = VectorQuantizer(2, 4, kmeans_iters=20).train()
    for _ in range(3):  # the first forward runs k-means, then every forward an EMA update
        vq(x)
    assign = torch.cdist(x[0].t(), centers).argmin(1)
    centroids = torch.stack([x[0].t()[assign == c].mean(0) for c in range(4)])
    order = torch.cdist(centroids, vq.embed).argmin(1)
    torch.testing.assert_close(vq.embed[order], centroids, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(vq.cluster_size[order], torch.full((4,), 40.0))


def test_frozen_codebook_does_not_move():
    vq = _trained_vq()
    vq.freeze()
    before = _buffers(vq)
    x = torch.randn(3, 8, 20, requires_grad=True)
    for _ in range(5):
        out = vq(x * 4 + 3)
        assert out.commit_loss.item() == 0.0
        assert not out.quantized.requires_grad
    for k, v in vq.state_dict().items():
        assert torch.equal(v, before[k]), k
    vq.train()  # mode changes do not unfreeze
    vq(x.detach() * 4 + 3)
    assert torch.equal(vq.embed, before["embed"])


def test_uninitialised_codebook_is_not_kmeans_initialised_in_eval():
    vq = VectorQuantizer(8, 16).eval()
    before = _buffers(vq)
    vq(torch.randn(2, 8, 10))
    assert vq.inited.item() == 0.0
    assert torch.equal(vq.embed, before["embed"])


def test_dead_codes_are_replaced_by_real_frames():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 8, decay=0.5, kmeans_iters=3, dead_code_threshold=1.0).train()
    data = torch.randn(2, 4, 30)
    vq(data)
    far = torch.full((4,), 1e3)
    with torch.no_grad():  # make codes 0..2 unreachable and nearly dead
        vq.embed[:3] = far
        vq.embed_avg[:3] = far * 0.1
        vq.cluster_size[:3] = 0.1
    x = torch.randn(2, 4, 30)
    mask = torch.ones(2, 1, 30)
    mask[1, :, 20:] = 0
    vq(x, mask)
    real_rows = torch.cat([x[0].t(), x[1, :, :20].t()])
    for code in range(3):
        assert (vq.embed[code] == real_rows).all(1).any(), code  # an exact copy of a real frame
        assert vq.cluster_size[code].item() == pytest.approx(1.0)


def test_distances_in_fp32_under_autocast():
    vq = _trained_vq(dim=16, k=32)
    x = torch.randn(2, 16, 40)
    vq.eval()
    ref = vq.encode(x)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        assert torch.equal(vq.encode(x.bfloat16().float()), vq.encode(x.bfloat16().float()))
        assert torch.equal(vq.encode(x), ref)
        assert torch.equal(vq(x).codes, ref)


def test_rejects_bad_input():
    vq = VectorQuantizer(8, 16)
    with pytest.raises(ValueError, match=r"\[B, 8, N\]"):
        vq.encode(torch.randn(2, 7, 5))
    with pytest.raises(ValueError, match="codes must be in"):
        vq.decode(torch.tensor([[0, 16]]))


def test_codebooks_identical_across_two_gloo_ranks(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tests" / "vq_ddp_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["state"]["inited"].item() == 1.0
    assert r0["reset_steps"] > 0 and r1["reset_steps"] == r0["reset_steps"]
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["state"]["embed"].abs().max().item() < 40  # padding (50.0) never became a code
