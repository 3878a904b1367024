"""Style (reference) encoder over a linear spectrogram (Meta-StyleSpeech ``MelStyleEncoder``).

spectral MLP -> two gated temporal convs -> self-attention -> linear -> masked time average.
Input ``[B, F, T]`` magnitude spectrogram (no log), mask ``[B, 1, T]``; output ``[B, G, 1]``.
Submodule names follow the original checkpoints (``spectral.0.fc``, ``temporal.0.conv1.conv``,
``slf_attn.w_qs``, ``fc.fc``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LinearNorm(nn.Module):
    """``nn.Linear`` held as ``.fc`` (checkpoint naming)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features, bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: [..., in] -> [..., out]."""
        return self.fc(x)


class ConvNorm(nn.Module):
    """``nn.Conv1d`` with "same" padding, held as ``.conv``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"ConvNorm needs an odd kernel size, got {kernel_size}")
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, C_in, T] -> [B, C_out, T]."""
        return self.conv(x)


class Conv1dGLU(nn.Module):
    """Gated conv with residual: ``x + dropout(a · sigmoid(b))`` where ``[a; b] = conv(x)``."""

    def __init__(self, channels: int, kernel_size: int, dropout: float):
        super().__init__()
        self.channels = channels
        self.conv1 = ConvNorm(channels, 2 * channels, kernel_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, C, T] -> [B, C, T]."""
        a, b = self.conv1(x).split(self.channels, dim=1)
        return x + self.dropout(a * torch.sigmoid(b))


class StyleAttention(nn.Module):
    """StyleSpeech self-attention: scores divided by √d_model (not √d_head), key padding -inf, residual."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.temperature = math.sqrt(d_model)
        self.w_qs = nn.Linear(d_model, d_model)
        self.w_ks = nn.Linear(d_model, d_model)
        self.w_vs = nn.Linear(d_model, d_model)
        self.fc = nn.Linear(d_model, d_model)
        self.attn_dropout = nn.Dropout(dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, pad_mask: Tensor | None) -> Tensor:
        """x: [B, T, C]; pad_mask: [B, T] bool, True = padding -> [B, T, C]."""
        b, t, c = x.shape
        h, d = self.n_heads, self.d_head
        q = self.w_qs(x).view(b, t, h, d).transpose(1, 2)  # [B, H, T, d]
        k = self.w_ks(x).view(b, t, h, d).transpose(1, 2)
        v = self.w_vs(x).view(b, t, h, d).transpose(1, 2)
        scores = q @ k.transpose(2, 3) / self.temperature  # [B, H, T, T]
        if pad_mask is not None:
            scores = scores.masked_fill(pad_mask.view(b, 1, 1, t), float("-inf"))
        p = self.attn_dropout(torch.softmax(scores, dim=-1))
        out = (p @ v).transpose(1, 2).reshape(b, t, c)
        return self.dropout(self.fc(out)) + x


class MelStyleEncoder(nn.Module):
    """Global style vector from a (linear or mel) magnitude spectrogram."""

    def __init__(self, in_channels: int, hidden: int = 128, out_channels: int = 512, kernel_size: int = 5,
                 n_heads: int = 2, dropout: float = 0.1):
        super().__init__()
        self.spectral = nn.Sequential(
            LinearNorm(in_channels, hidden), nn.Mish(), nn.Dropout(dropout),
            LinearNorm(hidden, hidden), nn.Mish(), nn.Dropout(dropout),
        )
        self.temporal = nn.Sequential(Conv1dGLU(hidden, kernel_size, dropout),
                                      Conv1dGLU(hidden, kernel_size, dropout))
        self.slf_attn = StyleAttention(hidden, n_heads, dropout)
        self.fc = LinearNorm(hidden, out_channels)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: [B, F, T] spectrogram; mask: [B, 1, T] (1 = real) or None -> style [B, out, 1]."""
        pad = None if mask is None else (mask.squeeze(1) == 0)  # [B, T], True = padding
        h = self.spectral(x.transpose(1, 2))  # [B, T, hidden]
        h = self.temporal(h.transpose(1, 2)).transpose(1, 2)  # [B, T, hidden]
        if pad is not None:
            h = h.masked_fill(pad.unsqueeze(-1), 0.0)
        h = self.fc(self.slf_attn(h, pad))  # [B, T, out]
        if pad is None:
            style = h.mean(dim=1)
        else:
            keep = (~pad).unsqueeze(-1).to(h.dtype)
            style = (h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
        return style.unsqueeze(-1)
