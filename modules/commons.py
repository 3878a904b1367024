"""Small helpers shared by the S2 building blocks: masks, segment slicing, weight norm.

Shapes: ``B`` batch, ``C`` channels, ``T`` frames. Masks on the conv side are float
``[B, 1, T]`` (1 = real frame, 0 = padding) so that they can multiply activations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrizations, parametrize


def sequence_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """Boolean mask ``[B, T]`` that is True for ``t < lengths[b]``; T defaults to ``lengths.max()``."""
    if max_len is None:
        max_len = int(lengths.max().item())
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def frame_mask(lengths: Tensor, max_len: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Float mask ``[B, 1, T]`` for conv-side tensors of ``T = max_len`` frames."""
    return sequence_mask(lengths, max_len).unsqueeze(1).to(dtype)


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """Symmetric padding that keeps the length of an odd-kernel convolution."""
    return (kernel_size * dilation - dilation) // 2


def slice_segments(x: Tensor, starts: Tensor, segment_size: int) -> Tensor:
    """Cut ``x [B, C, T]`` into ``[B, C, segment_size]`` starting at ``starts [B]`` (per item)."""
    if x.size(2) < segment_size:
        raise ValueError(f"cannot cut segments of {segment_size} frames from a tensor of {x.size(2)} frames")
    if bool((starts < 0).any()) or bool((starts + segment_size > x.size(2)).any()):
        raise ValueError(f"segment starts {starts.tolist()} + {segment_size} fall outside [0, {x.size(2)}]")
    offsets = torch.arange(segment_size, device=x.device)
    index = (starts.to(x.device).long().unsqueeze(1) + offsets.unsqueeze(0))  # [B, S]
    index = index.unsqueeze(1).expand(-1, x.size(1), -1)  # [B, C, S]
    return torch.gather(x, 2, index)


def rand_slice_segments(
    x: Tensor, lengths: Tensor, segment_size: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Random windows of ``segment_size`` frames inside each item's valid length.

    x: ``[B, C, T]``; lengths: ``[B]``. The start of item b is uniform in
    ``[0, lengths[b] - segment_size]`` (0 for items shorter than a segment, whose window then
    includes padding). Returns ``(segments [B, C, segment_size], starts [B] int64)``.
    """
    max_start = (lengths.to(x.device).long() - segment_size + 1).clamp(min=1)
    u = torch.rand(x.size(0), device=x.device, generator=generator)
    starts = (u * max_start).long().clamp(max=max(x.size(2) - segment_size, 0))
    return slice_segments(x, starts, segment_size), starts


def fused_add_tanh_sigmoid_multiply(a: Tensor, b: Tensor, n_channels: int) -> Tensor:
    """WaveNet gate: ``tanh(s[:, :n]) * sigmoid(s[:, n:])`` with ``s = a + b`` ([B, 2n, T] -> [B, n, T])."""
    s = a + b
    return torch.tanh(s[:, :n_channels]) * torch.sigmoid(s[:, n_channels:])


def weight_norm(module: nn.Module) -> nn.Module:
    """Weight normalisation over dim 0 (``g`` of shape ``[W.size(0), 1, ...]``).

    For ConvTranspose dim 0 is the input channel, as in the original checkpoints. Stored
    as ``parametrizations.weight.original0`` (g) and ``original1`` (v).
    """
    return parametrizations.weight_norm(module, name="weight", dim=0)


def fold_weight_norm(module: nn.Module) -> int:
    """Replace every weight parametrization under ``module`` by its current value, in place.

    After folding, each affected layer holds a plain ``weight`` (``g · v / ‖v‖``) and the
    forward pass is cheaper; outputs are unchanged. Returns the number of layers folded.
    """
    folded = 0
    for sub in module.modules():
        if parametrize.is_parametrized(sub, "weight"):
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)
            folded += 1
    return folded


def pad_same(x: Tensor, kernel_size: int) -> Tensor:
    """Pad ``[B, C, T]`` on the time axis so that a stride-1 conv keeps T (extra frame on the right)."""
    if kernel_size == 1:
        return x
    return F.pad(x, ((kernel_size - 1) // 2, kernel_size // 2))
