"""Exact S2 batching: a piece decoded in a padded batch gives the samples it gives alone.

Tolerance 1e-6 (absolute, waveform in [-1, 1]): the remaining differences come only from
float rounding (matrix products and softmax sums of a different shape accumulate in another
order; measured <= 1.5e-7 on these models and on the full-size one). One 16-bit LSB is
3.1e-5, so 1e-6 is 1/30 of an LSB; the padding leak this guards against was ~0.1 in the last
60 ms of a shorter piece.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from common.config import S2Config, load_config
from s2.model import SynthesizerTrn, build_generator
from s2.noise import BLOCK_FRAMES, PriorNoise, batch_noise

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

REPO = Path(__file__).resolve().parents[1]
ATOL = 1e-6


def _randomise_flow(g: SynthesizerTrn) -> SynthesizerTrn:
    """A fresh flow is the identity (zero ``post``); give it weights so that its masking is exercised."""
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.startswith("flow") and ".post." in name:
                p.normal_(0.0, 0.05)
    g.fold_weight_norm()
    return g.eval()


def _tiny() -> SynthesizerTrn:
    torch.manual_seed(0)
    return _randomise_flow(build_generator(load_config(REPO / "configs/tiny/s2.json", S2Config)))


def _wide() -> SynthesizerTrn:
    torch.manual_seed(1)
    return _randomise_flow(SynthesizerTrn(
        n_symbols=322, spec_channels=65, ssl_dim=96, inter_channels=64, hidden_channels=64, filter_channels=128,
        n_heads=2, n_layers=4, resblock_kernel_sizes=(3, 7), resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)),
        upsample_initial_channel=128, gin_channels=64, mrte_hidden=64, codebook_size=32, ref_hidden=32,
        posterior_layers=2, flow_layers=2, n_flows=2))


def _pad(xs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(x) for x in xs])
    out = torch.zeros(len(xs), int(lengths.max()), dtype=torch.long)
    for i, x in enumerate(xs):
        out[i, : len(x)] = x
    return out, lengths


@pytest.mark.parametrize("make", [_tiny, _wide], ids=["tiny", "wide"])
@pytest.mark.parametrize("lengths", [(7, 12, 3), (1, 25), (16, 16, 15), (9, 2, 30, 4)])
def test_batched_decode_equals_one_by_one(make, lengths) -> None:
    g = make()
    fpt, hop = g.frames_per_token, g.hop_length
    channels = g.enc_p.out_channels
    gen = torch.Generator().manual_seed(sum(lengths))
    n_codes = g.quantizer.codebook_size
    codes = [torch.randint(0, n_codes, (n,), generator=gen) for n in lengths]
    texts = [torch.randint(1, 300, (2 + n // 2,), generator=gen) for n in lengths]
    spec = torch.randn(1, g.ref_enc.spectral[0].fc.in_features, 40, generator=gen).abs()  # shared reference
    seeds = [10 + i for i in range(len(lengths))]
    c, cl = _pad(codes)
    t, tl = _pad(texts)
    noise = batch_noise(seeds, (cl * fpt).tolist(), channels, c.size(1) * fpt)
    with torch.inference_mode():
        batched = g.decode(c, t, tl, spec, code_lengths=cl, noise=noise)
        for i, n in enumerate(lengths):
            alone = g.decode(codes[i][None], texts[i][None], tl[i:i + 1], spec,
                             noise=batch_noise([seeds[i]], [n * fpt], channels, n * fpt))
            assert alone.shape == (1, 1, n * fpt * hop)
            torch.testing.assert_close(batched[i, :, : n * fpt * hop], alone[0], rtol=0, atol=ATOL)
            assert batched[i, :, n * fpt * hop:].abs().sum().item() == 0.0  # silence after the piece
            assert alone.abs().max() > 1e-3


def test_prior_noise_depends_only_on_seed_and_frame() -> None:
    n = 3 * BLOCK_FRAMES + 5
    whole = PriorNoise(7, 6).frames(0, n)
    assert whole.shape == (6, n)
    torch.testing.assert_close(PriorNoise(7, 6).frames(0, 11), whole[:, :11], rtol=0, atol=0)
    parts = PriorNoise(7, 6)
    assert torch.equal(torch.cat([parts.frames(0, 40), parts.frames(40, 70), parts.frames(70, n)], dim=1), whole)
    assert not torch.equal(PriorNoise(8, 6).frames(0, n), whole)
    rows = batch_noise([7, 8], [n, 4], 6, n)
    assert torch.equal(rows[0], whole) and rows[1, :, 4:].abs().max() == 0
