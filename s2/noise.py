"""Prior noise of S2 decoding that depends only on (seed, frame), never on the batch or the window.

``z_p = m_p + ε · exp(logs_p) · noise_scale`` needs ``ε [C, T]`` per piece. Drawing it with
one ``torch.randn`` of the batch's shape makes a piece's noise depend on its neighbours and
on the padded length; drawing ``[C, T]`` per piece still makes frame ``t`` depend on ``T``
(PyTorch's CPU normal sampler treats the last 16 values of a call specially). ``PriorNoise``
draws fixed blocks of ``BLOCK_FRAMES`` frames, time-major, from a CPU generator seeded with
the piece's seed, so frame ``t`` of a piece gets the same ``ε[:, t]`` whether the piece is
decoded alone, in a batch, or in streaming windows, and on any device (the noise is moved
to the model's device after drawing).
"""

from __future__ import annotations

import torch
from torch import Tensor

BLOCK_FRAMES = 32


class PriorNoise:
    """Standard normal noise ``[C, T]`` of one piece, prefix-stable: ``frames(a, b)`` is a slice of ``frames(0, n)``."""

    def __init__(self, seed: int, channels: int):
        self.channels = channels
        self._gen = torch.Generator(device="cpu")
        self._gen.manual_seed(int(seed))
        self._blocks: list[Tensor] = []  # each [BLOCK_FRAMES, C], drawn in order

    def frames(self, start: int, end: int) -> Tensor:
        """Noise of frames ``[start, end)``: float32 ``[C, end - start]`` on the CPU."""
        if not 0 <= start <= end:
            raise ValueError(f"bad frame range [{start}, {end})")
        while len(self._blocks) * BLOCK_FRAMES < end:
            self._blocks.append(torch.randn(BLOCK_FRAMES, self.channels, generator=self._gen))
        if not self._blocks:
            return torch.zeros(self.channels, 0)
        return torch.cat(self._blocks)[start:end].T.contiguous()  # [C, end - start]


def batch_noise(seeds: list[int], lengths: list[int], channels: int, n_frames: int) -> Tensor:
    """Per-row noise, zero-padded: row ``b`` is ``PriorNoise(seeds[b]).frames(0, lengths[b])``; ``[B, C, n_frames]``."""
    out = torch.zeros(len(seeds), channels, n_frames)
    for b, (s, n) in enumerate(zip(seeds, lengths)):
        out[b, :, :n] = PriorNoise(s, channels).frames(0, n)
    return out
