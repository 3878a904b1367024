"""AdamW for both trainers, with PyTorch's fused kernel wherever it applies.

The default (for-loop) AdamW runs about ten elementwise operations per parameter tensor,
each a full pass over the parameter, its gradient or a moment (on a 40M-parameter S1 model
about a quarter of a CPU training step). ``fused=True`` (CPU and CUDA) does the same update
in one pass per tensor. Same algorithm and state-dict layout; results equal to float
rounding (not bit-identical to the for-loop version).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

FUSED_DEVICES = ("cpu", "cuda")


def fused_applies(params: Iterable[torch.Tensor]) -> bool:
    """Whether every tensor is floating point on a device with a fused AdamW kernel."""
    return all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params)


def adamw(params: Iterable[torch.nn.Parameter] | list[dict[str, Any]], **kwargs: Any) -> torch.optim.AdamW:
    """``torch.optim.AdamW(params, **kwargs)`` with ``fused=True`` where ``fused_applies``.

    ``params``: parameters or parameter groups (dicts with ``"params"``), on their final device.
    """
    items = list(params)
    groups = [{**g, "params": list(g["params"])} for g in items] if items and isinstance(items[0], dict) \
        else [{"params": items}]
    tensors = [p for g in groups for p in g["params"]]
    return torch.optim.AdamW(groups, fused=fused_applies(tensors), **kwargs)
