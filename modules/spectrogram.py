"""Linear and log-mel spectrograms as in VITS / SoVITS (``mel_processing``).

Linear: reflect-pad the waveform by ``(n_fft - hop) / 2`` on both sides, ``torch.stft``
(Hann window, ``center=False``, onesided, not normalised), magnitude ``sqrt(re² + im² + 1e-6)``;
a waveform of N samples gives ``floor(N / hop)`` frames. Mel: librosa's Slaney filters times
the magnitude, then ``log(clamp(x, 1e-5))``. Computed in fp32 whatever the input dtype.

Window and filters are non-persistent buffers of small modules, so they follow ``.to(device)``
and never enter checkpoints.
"""

from __future__ import annotations

import librosa
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def linear_spectrogram(wav: Tensor, window: Tensor, n_fft: int, hop_length: int, win_length: int) -> Tensor:
    """wav: [B, N] or [B, 1, N] float in [-1, 1] -> magnitude [B, n_fft // 2 + 1, N // hop_length]."""
    if wav.dim() == 3:
        if wav.size(1) != 1:
            raise ValueError(f"expected a mono waveform [B, 1, N], got shape {tuple(wav.shape)}")
        wav = wav.squeeze(1)
    if wav.dim() != 2:
        raise ValueError(f"expected a waveform [B, N] or [B, 1, N], got shape {tuple(wav.shape)}")
    pad = (n_fft - hop_length) // 2
    with torch.autocast(device_type=wav.device.type, enabled=False):
        x = F.pad(wav.float().unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(x, n_fft, hop_length=hop_length, win_length=win_length, window=window.float(),
                          center=False, normalized=False, onesided=True, return_complex=True)
        return torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-6)


def mel_filters(sampling_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> Tensor:
    """librosa Slaney mel filterbank ``[n_mels, n_fft // 2 + 1]`` (fp32)."""
    basis = librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return torch.from_numpy(basis).float()


def spec_to_mel(spec: Tensor, filters: Tensor) -> Tensor:
    """spec: [B, F, T] magnitude -> natural-log mel [B, n_mels, T]."""
    with torch.autocast(device_type=spec.device.type, enabled=False):
        mel = torch.matmul(filters.float(), spec.float())
        return torch.log(torch.clamp(mel, min=1e-5))


class Spectrogram(nn.Module):
    """Linear magnitude spectrogram: ``[B, N]`` or ``[B, 1, N]`` -> ``[B, n_fft // 2 + 1, N // hop]``."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int):
        super().__init__()
        if (n_fft - hop_length) % 2 != 0 or n_fft < hop_length:
            raise ValueError(f"n_fft ({n_fft}) - hop_length ({hop_length}) must be even and >= 0 so that "
                             "the frame count is N // hop_length")
        if win_length > n_fft:
            raise ValueError(f"win_length ({win_length}) must not exceed n_fft ({n_fft})")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        return linear_spectrogram(wav, self.window, self.n_fft, self.hop_length, self.win_length)


class MelScale(nn.Module):
    """Linear magnitude ``[B, n_fft // 2 + 1, T]`` -> natural-log mel ``[B, n_mels, T]``."""

    def __init__(self, sampling_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None):
        super().__init__()
        self.register_buffer("filters", mel_filters(sampling_rate, n_fft, n_mels, fmin, fmax), persistent=False)

    def forward(self, spec: Tensor) -> Tensor:
        return spec_to_mel(spec, self.filters)


class MelSpectrogram(nn.Module):
    """Waveform ``[B, N]`` or ``[B, 1, N]`` -> natural-log mel ``[B, n_mels, N // hop]``."""

    def __init__(self, sampling_rate: int, n_fft: int, hop_length: int, win_length: int, n_mels: int,
                 fmin: float = 0.0, fmax: float | None = None):
        super().__init__()
        self.spectrogram = Spectrogram(n_fft, hop_length, win_length)
        self.mel = MelScale(sampling_rate, n_fft, n_mels, fmin, fmax)

    def forward(self, wav: Tensor) -> Tensor:
        return self.mel(self.spectrogram(wav))
