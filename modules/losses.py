"""S2 losses (VITS): feature matching, LSGAN discriminator/generator, KL, mel L1.

Every function computes in fp32 (autocast off) and returns a scalar tensor; the training
step weights them with ``c_mel``, ``c_kl``, ``c_fm``, ``c_gen``, ``c_commit``, ``c_prior_mean`` and
``c_dc`` from the config.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _no_autocast(t: Tensor) -> torch.autocast:
    return torch.autocast(device_type=t.device.type, enabled=False)


def feature_loss(real_features: list[list[Tensor]], fake_features: list[list[Tensor]]) -> Tensor:
    """``2 · Σ_discs Σ_layers mean|f_real - f_fake|`` with the real features detached."""
    first = real_features[0][0]
    with _no_autocast(first):
        total = first.new_zeros((), dtype=torch.float32)
        for real_d, fake_d in zip(real_features, fake_features, strict=True):
            for r, g in zip(real_d, fake_d, strict=True):
                total = total + (r.detach().float() - g.float()).abs().mean()
        return total * 2.0


def discriminator_loss(real_logits: list[Tensor], fake_logits: list[Tensor]) -> Tensor:
    """LSGAN for D: ``Σ_discs mean((1 - D(y))²) + mean(D(ŷ)²)`` (pass ŷ detached)."""
    with _no_autocast(real_logits[0]):
        total = real_logits[0].new_zeros((), dtype=torch.float32)
        for dr, dg in zip(real_logits, fake_logits, strict=True):
            total = total + (1.0 - dr.float()).pow(2).mean() + dg.float().pow(2).mean()
        return total


def generator_loss(fake_logits: list[Tensor]) -> Tensor:
    """LSGAN for G: ``Σ_discs mean((1 - D(ŷ))²)``."""
    with _no_autocast(fake_logits[0]):
        total = fake_logits[0].new_zeros((), dtype=torch.float32)
        for dg in fake_logits:
            total = total + (1.0 - dg.float()).pow(2).mean()
        return total


def kl_loss(z_p: Tensor, logs_q: Tensor, m_p: Tensor, logs_p: Tensor, z_mask: Tensor) -> Tensor:
    """Single-sample KL(q || p) per real frame, summed over channels.

    z_p: flow(z), z ~ q; logs_q: log-std of q; m_p, logs_p: prior; all [B, C, T]; z_mask: [B, 1, T].
    ``Σ[(logs_p - logs_q - ½) + ½ (z_p - m_p)² e^{-2 logs_p}] · mask / Σ mask``.
    """
    with _no_autocast(z_p):
        z_p, logs_q, m_p, logs_p, z_mask = (t.float() for t in (z_p, logs_q, m_p, logs_p, z_mask))
        kl = logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p).pow(2) * torch.exp(-2.0 * logs_p)
        return (kl * z_mask).sum() / z_mask.sum()


def prior_mean_loss(m_p: Tensor, target: Tensor, z_mask: Tensor) -> Tensor:
    """Regression of the prior mean on ``target = flow(m_q)``, per real frame, summed over channels.

    m_p: prior mean; target: the posterior *mean* through the flow; both [B, C, T]; z_mask: [B, 1, T].
    ``Σ ½ (m_p - target)² · mask / Σ mask`` with ``target`` detached: only the prior mean learns
    from it. Added with weight ``c_prior_mean`` on top of the KL, it keeps a small S2 trained from
    scratch from collapsing its prior mean to a constant (README, "Learning").

    Every channel has the same weight. The KL's own mean term divides by the prior variance
    ``e^{2 logs_p}``, and in the demo's S2 the widest prior channels are the ones that carry the
    content (the loudest channel of ``flow(m_q)`` has std ~3.4 and prior std ~3.6, the others
    ~0.5 and ~1.1): weighted like the KL, the channel inference most needs got ~1/11 of the
    weight, and the prior path stayed flat until step ~300 (measured; 0.66 at step 200 unweighted).
    """
    with _no_autocast(m_p):
        m_p, target, z_mask = (t.float() for t in (m_p, target, z_mask))
        sq = 0.5 * (m_p - target.detach()).pow(2)
        return (sq * z_mask).sum() / z_mask.sum()


def mel_loss(mel_real: Tensor, mel_fake: Tensor) -> Tensor:
    """Mean absolute difference of two log-mel spectrograms ``[B, n_mels, T]`` (fp32)."""
    if mel_real.shape != mel_fake.shape:
        raise ValueError(f"mel shapes differ: real {tuple(mel_real.shape)} vs generated {tuple(mel_fake.shape)}")
    with _no_autocast(mel_real):
        return F.l1_loss(mel_fake.float(), mel_real.float())


def dc_loss(y: Tensor, y_hat: Tensor, frame: int) -> Tensor:
    """Mean ``|frame mean of y_hat - frame mean of y|`` over windows of ``frame`` samples.

    y, y_hat: [B, 1, N] waveforms, N a multiple of ``frame`` (the hop). The frame means are the
    waveform's content below about ``sample_rate / frame`` Hz (25 Hz for 640 at 32 kHz): an offset
    or slow drift that the log-mel loss barely sees (its lowest band weights 0 Hz by 0) and the
    ear does not hear, but that fills every pause with a constant level. A demo S2 at 400 steps
    output a drifting offset of ~0.005-0.009 (about -41 dBFS) where the recording was silent
    (-90 dBFS): its resynthesis envelope correlation read 0.81 with it and 0.92 with the
    content below 40 Hz filtered out.
    """
    if y.shape != y_hat.shape or y.size(-1) % frame:
        raise ValueError(f"need equal shapes with a length divisible by {frame}, got {tuple(y.shape)} and "
                         f"{tuple(y_hat.shape)}")
    with _no_autocast(y_hat):
        return (F.avg_pool1d(y_hat.float(), frame) - F.avg_pool1d(y.float(), frame)).abs().mean()
