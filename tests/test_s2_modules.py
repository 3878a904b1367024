"""S2 building blocks: masks/slicing, relative attention, MRTE, style encoder, WN/flow,
HiFi-GAN generator + discriminator, spectrograms, losses. CPU, tiny sizes."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import torch

from modules.attentions import Encoder, MultiHeadAttention
from modules.commons import fold_weight_norm, frame_mask, rand_slice_segments, sequence_mask, slice_segments
from modules.hifigan import Generator, MultiPeriodDiscriminator, channels_last_applies
from modules.losses import discriminator_loss, feature_loss, generator_loss, kl_loss, mel_loss
from modules.mrte import MRTE
from modules.reference_encoder import MelStyleEncoder
from modules.spectrogram import MelSpectrogram, Spectrogram
from modules.vits import PosteriorEncoder, ResidualCouplingBlock

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


# ----------------------------------------------------------------------------- commons


def test_sequence_mask_and_frame_mask():
    m = sequence_mask(torch.tensor([3, 1, 0]), 4)
    assert m.tolist() == [[True, True, True, False], [True, False, False, False], [False] * 4]
    fm = frame_mask(torch.tensor([2, 4]), 5)
    assert fm.shape == (2, 1, 5) and fm.dtype == torch.float32
    assert fm.sum().item() == 6


def test_rand_slice_segments_stay_inside_valid_frames():
    g = torch.Generator().manual_seed(0)
    b, c, t, seg = 5, 3, 50, 8
    x = torch.arange(b * c * t, dtype=torch.float32).view(b, c, t)
    lengths = torch.tensor([50, 8, 9, 30, 12])
    for _ in range(20):
        segs, starts = rand_slice_segments(x, lengths, seg, generator=g)
        assert segs.shape == (b, c, seg)
        assert bool((starts >= 0).all()) and bool((starts + seg <= lengths).all())
        for i in range(b):
            s = int(starts[i])
            assert torch.equal(segs[i], x[i, :, s:s + seg])
    assert int(rand_slice_segments(x, lengths, seg, generator=g)[1][1]) == 0  # length == segment -> start 0


def test_slice_segments_rejects_out_of_range():
    x = torch.zeros(2, 1, 10)
    with pytest.raises(ValueError, match="outside"):
        slice_segments(x, torch.tensor([0, 5]), 6)
    with pytest.raises(ValueError, match="cannot cut"):
        slice_segments(x, torch.tensor([0, 0]), 11)


# ----------------------------------------------------------------------------- attention


def _naive_relative_attention(mha: MultiHeadAttention, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-pair loops: logits q_i·k_j/√d + (q_i/√d)·E_k[j-i+w], values + E_v[j-i+w] for |j-i| <= w."""
    _, c, t = x.shape
    h, d, w = mha.n_heads, mha.k_channels, mha.window_size
    q = mha.conv_q(x)[0].view(h, d, t)
    k = mha.conv_k(x)[0].view(h, d, t)
    v = mha.conv_v(x)[0].view(h, d, t)
    out = torch.zeros(h, d, t)
    for hh in range(h):
        for i in range(t):
            logits = torch.empty(t)
            for j in range(t):
                qi = q[hh, :, i] / math.sqrt(d)
                s = qi @ k[hh, :, j]
                if abs(j - i) <= w:
                    s = s + qi @ mha.emb_rel_k[0, j - i + w]
                logits[j] = s if (valid[i] and valid[j]) else -1e4
            p = torch.softmax(logits, 0)
            for j in range(t):
                val = v[hh, :, j]
                if abs(j - i) <= w:
                    val = val + mha.emb_rel_v[0, j - i + w]
                out[hh, :, i] += p[j] * val
    return mha.conv_o(out.reshape(1, h * d, t))


def test_relative_attention_matches_naive_loops():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 6, n_heads=2, window_size=2).eval()
    t = 7
    x = torch.randn(1, 8, t)
    valid = torch.tensor([1, 1, 1, 1, 1, 0, 0], dtype=torch.bool)
    m = valid.float().view(1, 1, t)
    attn_mask = m.unsqueeze(2) * m.unsqueeze(-1)
    with torch.no_grad():
        fast = mha(x, x, attn_mask)
        slow = _naive_relative_attention(mha, x, valid)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_relative_attention_rejects_cross_attention():
    mha = MultiHeadAttention(8, 8, n_heads=2, window_size=2)
    with pytest.raises(ValueError, match="self-attention"):
        mha(torch.randn(1, 8, 5), torch.randn(1, 8, 6))


def test_encoder_valid_frames_ignore_padding_content():
    torch.manual_seed(0)
    enc = Encoder(16, 32, n_heads=2, n_layers=2, kernel_size=3, p_dropout=0.1).eval()
    x = torch.randn(1, 16, 9)
    padded = torch.cat([x, 1e3 * torch.randn(1, 16, 5)], dim=2)
    with torch.no_grad():
        alone = enc(x, torch.ones(1, 1, 9))
        batched = enc(padded, frame_mask(torch.tensor([9]), 14))
    torch.testing.assert_close(batched[:, :, :9], alone, rtol=1e-4, atol=1e-5)
    assert batched[:, :, 9:].abs().max().item() == 0.0


def test_mrte_ignores_padded_phonemes_and_adds_style():
    torch.manual_seed(0)
    mrte = MRTE(content_channels=8, hidden_channels=12, out_channels=8, n_heads=3).eval()
    content, text = torch.randn(1, 8, 10), torch.randn(1, 8, 4)
    cm = torch.ones(1, 1, 10)
    ge = torch.randn(1, 12, 1)
    with torch.no_grad():
        ref = mrte(content, cm, text, torch.ones(1, 1, 4), ge)
        padded = mrte(content, cm, torch.cat([text, 50 * torch.randn(1, 8, 3)], 2),
                      frame_mask(torch.tensor([4]), 7), ge)
        no_style = mrte(content, cm, text, torch.ones(1, 1, 4), None)
        zero_style = mrte(content, cm, text, torch.ones(1, 1, 4), torch.zeros(1, 12, 1))
    assert ref.shape == (1, 8, 10)
    torch.testing.assert_close(padded, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(no_style, zero_style)
    assert not torch.allclose(no_style, ref)


def test_style_encoder_masks_attention_and_average():
    torch.manual_seed(0)
    enc = MelStyleEncoder(in_channels=20, hidden=16, out_channels=24, kernel_size=5, n_heads=2).eval()
    spec = torch.rand(1, 20, 12)
    tail = torch.zeros(1, 20, 10)
    junk_tail = tail.clone()
    junk_tail[:, :, 4:] = 100.0  # beyond the reach of the two k=5 temporal convs (4 frames)
    mask = frame_mask(torch.tensor([12]), 22)
    with torch.no_grad():
        a = enc(torch.cat([spec, tail], 2), mask)
        b = enc(torch.cat([spec, junk_tail], 2), mask)
        unmasked = enc(torch.cat([spec, junk_tail], 2), None)
    assert a.shape == (1, 24, 1)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(a, unmasked)


# ----------------------------------------------------------------------------- posterior / flow


def test_flow_is_invertible_and_starts_as_identity():
    torch.manual_seed(0)
    flow = ResidualCouplingBlock(8, 16, kernel_size=5, dilation_rate=1, n_layers=2, n_flows=2, gin_channels=6)
    x = torch.randn(2, 8, 11)
    mask = frame_mask(torch.tensor([11, 7]), 11)
    g = torch.randn(2, 6, 1)
    x = x * mask
    torch.testing.assert_close(flow(x, mask, g=g), x)  # zero-initialised post convs
    for layer in flow.flows[::2]:
        torch.nn.init.normal_(layer.post.weight, std=0.1)
    with torch.no_grad():
        y = flow(x, mask, g=g)
        back = flow(y, mask, g=g, reverse=True)
    assert not torch.allclose(y, x)
    torch.testing.assert_close(back, x, rtol=1e-5, atol=1e-5)


def test_posterior_encoder_detaches_style_and_masks_z():
    torch.manual_seed(0)
    enc = PosteriorEncoder(10, 4, 8, kernel_size=5, dilation_rate=1, n_layers=3, gin_channels=6)
    y = torch.rand(2, 10, 9)
    mask = frame_mask(torch.tensor([9, 5]), 9)
    g = torch.randn(2, 6, 1, requires_grad=True)
    z, m, logs = enc(y, mask, g=g)
    assert z.shape == m.shape == logs.shape == (2, 4, 9)
    assert z[1, :, 5:].abs().max().item() == 0.0
    z.sum().backward()
    assert g.grad is None
    assert enc.enc.cond_layer.parametrizations.weight.original1.grad is not None


# ----------------------------------------------------------------------------- HiFi-GAN


def _tiny_generator() -> Generator:
    return Generator(6, [3, 5], [[1, 3], [1, 2]], [4, 2, 2], 16, [8, 4, 4], gin_channels=5)


def test_generator_length_and_weight_norm_layout():
    torch.manual_seed(0)
    gen = _tiny_generator()
    out = gen(torch.randn(2, 6, 7), g=torch.randn(2, 5, 1))
    assert out.shape == (2, 1, 7 * 16)
    assert out.abs().max().item() <= 1.0
    assert gen.conv_post.bias is None
    # weight norm over dim 0: for ConvTranspose1d dim 0 is the input channel
    g0 = gen.ups[0].parametrizations.weight.original0
    assert g0.shape == (16, 1, 1)
    assert gen.resblocks[0].convs1[0].parametrizations.weight.original0.shape == (8, 1, 1)


def test_weight_norm_folding_keeps_generator_output():
    torch.manual_seed(0)
    gen = _tiny_generator().eval()
    x, g = torch.randn(2, 6, 9), torch.randn(2, 5, 1)
    with torch.no_grad():
        before = gen(x, g)
        n = fold_weight_norm(gen)
        after = gen(x, g)
    assert n == 3 + 6 * 4  # 3 upsamplers + 6 resblocks x (2 + 2) dilated convs
    assert not any("parametrizations" in k for k in gen.state_dict())
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


def test_multi_period_discriminator_outputs():
    torch.manual_seed(0)
    mpd = MultiPeriodDiscriminator([2, 3], channel_divisor=16)
    y, y_hat = torch.randn(2, 1, 301), torch.randn(2, 1, 301, requires_grad=True)
    out = mpd(y, y_hat)
    assert len(out.real_logits) == len(out.fake_logits) == 3
    assert [len(f) for f in out.real_features] == [7, 6, 6]
    for r, f in zip(out.real_logits, out.fake_logits):
        assert r.shape == f.shape and r.size(0) == 2
    # the batched pass equals separate passes
    alone_real = mpd.discriminators[1](y)[0]
    torch.testing.assert_close(out.real_logits[1], alone_real)
    generator_loss(out.fake_logits).backward()
    assert y_hat.grad is not None and y_hat.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="differ in shape"):
        mpd(y, y_hat[:, :, :-1])


# ----------------------------------------------------------------------------- spectrograms


def _numpy_spectrogram(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    pad = (n_fft - hop) // 2
    xp = np.pad(x, pad, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    n_frames = 1 + (len(xp) - n_fft) // hop
    frames = np.stack([xp[i * hop:i * hop + n_fft] * window for i in range(n_frames)], axis=1)
    spec = np.fft.rfft(frames, axis=0)
    return np.sqrt(spec.real**2 + spec.imag**2 + 1e-6)


@pytest.mark.parametrize("n", [640 * 5, 640 * 5 + 1, 640 * 6 - 1, 2049])
def test_spectrogram_frame_count_and_values(n):
    torch.manual_seed(0)
    spec_fn = Spectrogram(2048, 640, 2048)
    wav = torch.rand(2, n) * 2 - 1
    spec = spec_fn(wav)
    assert spec.shape == (2, 1025, n // 640)
    ref = _numpy_spectrogram(wav[1].double().numpy(), 2048, 640)
    np.testing.assert_allclose(spec[1].numpy(), ref, rtol=1e-4, atol=1e-3)
    assert torch.equal(spec_fn(wav.unsqueeze(1)), spec)


def test_mel_of_pure_tone_peaks_at_its_band():
    sr, n_fft, hop, n_mels = 32000, 2048, 640, 128
    centers = librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=sr / 2)[1:-1]
    mel_fn = MelSpectrogram(sr, n_fft, hop, n_fft, n_mels)
    for band in (40, 60, 90):
        f0 = float(centers[band])
        t = torch.arange(sr) / sr
        wav = 0.5 * torch.sin(2 * math.pi * f0 * t)
        mel = mel_fn(wav.unsqueeze(0))
        assert mel.shape == (1, n_mels, sr // hop)
        assert int(mel[0].mean(1).argmax()) == band
        lin = mel_fn.spectrogram(wav.unsqueeze(0))
        assert int(lin[0].mean(1).argmax()) == round(f0 * n_fft / sr)
    silence = mel_fn(torch.zeros(1, 6400))  # magnitude sqrt(0 + 1e-6) = 1e-3 in every bin
    expected = torch.log(torch.clamp(mel_fn.mel.filters.sum(1) * 1e-3, min=1e-5))
    torch.testing.assert_close(silence[0], expected.unsqueeze(1).expand(-1, 10))


def test_spectrogram_rejects_bad_shapes():
    with pytest.raises(ValueError, match="n_fft"):
        Spectrogram(2048, 641, 2048)
    with pytest.raises(ValueError, match="mono"):
        Spectrogram(64, 16, 64)(torch.zeros(1, 2, 100))


# ----------------------------------------------------------------------------- losses


def test_kl_matches_closed_form_and_is_zero_for_equal_distributions():
    torch.manual_seed(0)
    n = 200_000
    m_p, logs_p = torch.full((1, 1, n), 0.3), torch.full((1, 1, n), -0.2)
    m_q, logs_q = torch.full((1, 1, n), -0.1), torch.full((1, 1, n), 0.1)
    mask = torch.ones(1, 1, n)
    z_p = m_q + torch.randn(1, 1, n) * logs_q.exp()
    sq, sp = math.exp(0.1), math.exp(-0.2)
    closed = math.log(sp / sq) + (sq**2 + 0.4**2) / (2 * sp**2) - 0.5
    assert abs(kl_loss(z_p, logs_q, m_p, logs_p, mask).item() - closed) < 0.01
    same = m_p + torch.randn(1, 1, n) * logs_p.exp()
    assert abs(kl_loss(same, logs_p, m_p, logs_p, mask).item()) < 0.01


def test_kl_is_normalised_per_real_frame_and_ignores_padding():
    z_p = torch.tensor([[[1.0, 2.0, 99.0]]]).expand(1, 2, 3)
    zeros = torch.zeros(1, 2, 3)
    mask = torch.tensor([[[1.0, 1.0, 0.0]]])
    # per element: -0.5 + 0.5 z², summed over 2 channels, averaged over 2 frames
    expected = 2 * ((-0.5 + 0.5) + (-0.5 + 2.0)) / 2
    assert kl_loss(z_p, zeros, zeros, zeros, mask).item() == pytest.approx(expected)


def test_gan_and_feature_losses_on_known_values():
    ones, zeros = [torch.ones(2, 5), torch.ones(2, 3)], [torch.zeros(2, 5), torch.zeros(2, 3)]
    assert discriminator_loss(ones, zeros).item() == 0.0
    assert discriminator_loss(zeros, ones).item() == pytest.approx(4.0)
    assert generator_loss(ones).item() == 0.0
    assert generator_loss([torch.full((2, 4), 3.0)]).item() == pytest.approx(4.0)
    real = [[torch.zeros(2, 3), torch.ones(4)], [torch.zeros(5)]]
    fake = [[torch.full((2, 3), 0.5), torch.zeros(4)], [torch.full((5,), -2.0)]]
    assert feature_loss(real, fake).item() == pytest.approx(2 * (0.5 + 1.0 + 2.0))
    fake_g = [[t.clone().requires_grad_() for t in d] for d in fake]
    real_g = [[t.clone().requires_grad_() for t in d] for d in real]
    feature_loss(real_g, fake_g).backward()
    assert real_g[0][0].grad is None and fake_g[0][0].grad is not None
    assert mel_loss(torch.zeros(1, 4, 3), torch.full((1, 4, 3), 2.0)).item() == pytest.approx(2.0)


def test_generator_channels_last_inference_equals_training_layout() -> None:
    """Without grad on the CPU the generator runs channels-last (modules/hifigan.py): the same waveform as the
    1-D layout it runs with grad, for a batch with a padded row and a style vector."""
    torch.manual_seed(0)
    gen = Generator(24, [3, 5], [[1, 3], [1, 3]], [4, 2], 32, [8, 4], gin_channels=16).eval()
    for p in gen.parameters():  # larger weights than the init so that every layer shapes the output
        p.data.mul_(8.0)
    x, style = torch.randn(2, 24, 30), torch.randn(2, 16, 1)
    mask = torch.ones(2, 1, 30)
    mask[1, :, 21:] = 0
    assert channels_last_applies(x) is False  # grad mode: the 1-D layout
    ref = gen(x, style, mask).detach()
    with torch.no_grad():
        assert channels_last_applies(x)
        got = gen(x, style, mask)
    assert got.shape == ref.shape == (2, 1, 240) and got.is_contiguous()
    assert float(ref.abs().max()) > 0.1
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
