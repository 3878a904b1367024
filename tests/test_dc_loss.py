"""modules.losses.dc_loss: the waveform's content below the frame rate (an offset, a slow drift) against the
recording's; the log-mel loss is nearly blind to it."""

from __future__ import annotations

import math

import pytest
import torch

from common.config import ConfigError, S2Config, from_dict
from modules.losses import dc_loss, mel_loss
from modules.spectrogram import MelSpectrogram

HOP, SR = 640, 32000


def speechlike(n_frames: int = 40, seed: int = 0) -> torch.Tensor:
    """[1, 1, n_frames · HOP]: a 150 Hz buzz with harmonics, switched on and off every few frames."""
    t = torch.arange(n_frames * HOP) / SR
    buzz = sum(torch.sin(2 * math.pi * 150 * k * t) / k for k in range(1, 6))
    gate = (torch.rand(n_frames, generator=torch.Generator().manual_seed(seed)) > 0.3).float()
    return (0.3 * buzz * gate.repeat_interleave(HOP))[None, None]


def test_zero_for_the_recording_itself_and_blind_to_audible_content():
    y = speechlike()
    assert float(dc_loss(y, y, HOP)) == 0.0
    t = torch.arange(y.size(-1)) / SR
    audible = y + 0.2 * torch.sin(2 * math.pi * 250 * t)  # 250 Hz: whole periods in every 20 ms frame
    assert float(dc_loss(y, audible, HOP)) < 1e-5


def test_an_offset_reads_as_its_size_where_the_mel_loss_barely_moves():
    y = speechlike()
    offset = y + 0.008
    assert float(dc_loss(y, offset, HOP)) == pytest.approx(0.008, rel=1e-3)
    mel = MelSpectrogram(SR, 2048, HOP, 2048, 128, 0.0, None)
    relative_mel = float(mel_loss(mel(y[:, 0]), mel(offset[:, 0])))  # log-mel L1 of the same offset
    assert relative_mel < 0.05  # a trained demo S2's mel L1 is ~0.7: the offset is lost in it


def test_its_gradient_removes_an_offset():
    y = speechlike()
    bias = torch.tensor(0.01, requires_grad=True)
    opt = torch.optim.Adam([bias], lr=1e-3)
    for _ in range(30):
        opt.zero_grad()
        dc_loss(y, y + bias, HOP).backward()
        opt.step()
    assert abs(float(bias.detach())) < 0.002


def test_shapes_must_match_and_fill_whole_frames():
    y = speechlike()
    with pytest.raises(ValueError, match="divisible by 640"):
        dc_loss(y[..., :-1], y[..., :-1], HOP)
    with pytest.raises(ValueError, match="equal shapes"):
        dc_loss(y, y[..., :-HOP], HOP)


def test_a_negative_weight_is_a_config_error():
    with pytest.raises(ConfigError, match="c_dc"):
        from_dict(S2Config, {"train": {"c_dc": -1.0}})
