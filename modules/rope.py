"""Rotary position embeddings (RoPE) for the queries and keys of self-attention.

Each head's ``Dh`` channels are split in two halves ``(x1, x2)``; channel pair ``(x1_i, x2_i)``
is rotated by the angle ``pos * base^(-2i/Dh)``::

    rope(x, pos) = [x1 * cos - x2 * sin, x2 * cos + x1 * sin]

so the dot product of a rotated query at position ``m`` with a rotated key at position ``n``
depends only on ``m - n``. Positions are explicit per row (``[B, S]``), so a left-padded
batch row and a KV-cached step see exactly the angles they would see alone (keys are rotated
before they are written to the cache and never again).

    rope = RotaryEmbedding(head_dim=32)
    cos, sin = rope(positions)          # positions [B, S] -> two [B, 1, S, Dh/2]
    q = apply_rotary(q, cos, sin)       # q [B, H, S, Dh]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RotaryEmbedding(nn.Module):
    """Angles of RoPE for integer positions; holds no parameters and no saved state."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # [Dh/2]
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, positions: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """positions ``[B, S]`` (integers) -> ``(cos, sin)``, each ``[B, 1, S, Dh/2]`` in ``dtype``."""
        angles = positions.to(torch.float32)[:, None, :, None] * self.inv_freq  # [B, 1, S, Dh/2]
        return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x [B, H, S, Dh]`` by the angles ``cos, sin [B, 1, S, Dh/2]``; returns ``[B, H, S, Dh]``."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
