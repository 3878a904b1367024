"""Dropout for CPU training with cheaper masks, and attention with dropout on the probabilities.

``F.dropout`` on a CPU tensor draws one uniform number per element from the default generator
through ``bernoulli_`` (outside Intel CPUs, where MKL is not used, one generator call and one
double comparison per element), then divides the mask and multiplies: three passes over the
tensor and a float mask kept for backward. Here the keep mask comes from 64-bit random words
of the same default generator, split into four 16-bit integers each (a quarter of the
generator calls, which run serially and were ~20 % of an S1 training step), compared once with
a threshold: an element is kept with probability ``1 - p`` to within ``2**-17`` (the rate is
``p`` rounded to a multiple of ``2**-16``: 0.1 becomes 0.100006), as a bool mask. Otherwise the
same distribution as ``F.dropout``, other random draws; ``torch.manual_seed`` /
``set_rng_state`` make it repeat.

``attention_dropout`` is scaled dot-product attention with dropout on the attention
probabilities, written out for CPU training, where ``F.scaled_dot_product_attention`` with
``dropout_p > 0`` takes its math path: it adds the mask out of place, runs a "safe" softmax
(two more passes to find fully masked rows) and a ``bernoulli_`` dropout over the
``[B, H, S, S]`` probabilities. Here the mask is added in place, the softmax is plain (every
query row must allow a key), the dropout's ``1 / (1 - p)`` is folded into the values
(``[B, H, S, Dh]``, ``S / Dh`` times smaller), and the mask is a bool from ``keep_mask``.
Other devices keep ``F.dropout`` / SDPA (fused kernels there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> Tensor:
    """Bool ``shape``: True with probability ``1 - p`` (to within ``2**-17``), from the default generator."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    draws = words.view(torch.int16)[:n].view(shape)  # uniform over the int16 range
    # P(draw < threshold) = p rounded to a multiple of 2**-16, at most 1 - 2**-16: a threshold of 2**15 would
    # not fit in int16 and the comparison would wrap around (keeping everything)
    threshold = min(round(p * 2**16), 2**16 - 1) - 2**15
    return draws >= threshold


def uses_cpu_dropout(x: Tensor, p: float, training: bool) -> bool:
    """Whether the CPU mask path applies: training, ``0 < p < 1``, a CPU tensor."""
    return training and 0.0 < p < 1.0 and x.device.type == "cpu"


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)``; on CPU with a ``keep_mask`` (see the module docstring)."""
    if not uses_cpu_dropout(x, p, training):
        return F.dropout(x, p, training)
    return torch.mul(x, keep_mask(x.shape, p, x.device)).mul_(1.0 / (1.0 - p))  # the product is not saved


def attention_dropout(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)`` in training.

    q ``[B, H, Sq, Dh]``, k/v ``[B, H, Sk, Dh]``; mask bool broadcastable to ``[B, H, Sq, Sk]``
    (True = may attend; every query row must allow at least one key) or None. Returns
    ``[B, H, Sq, Dh]``. On CPU with ``0 < p < 1``: the written-out path of the module docstring.
    """
    if not uses_cpu_dropout(q, p, True):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
    scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-2, -1))  # [B, H, Sq, Sk]
    if mask is not None:  # -inf where masked, added in place (the mask is H times smaller than the scores)
        bias = torch.zeros(mask.shape, dtype=scores.dtype, device=mask.device).masked_fill_(~mask, -math.inf)
        scores = scores.add_(bias)
    probs = torch.softmax(scores, dim=-1)
    kept = torch.mul(probs, keep_mask(probs.shape, p, probs.device))
    return torch.matmul(kept, v * (1.0 / (1.0 - p)))
