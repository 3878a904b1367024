"""``torch.compile`` of S1's decode step (gpt-fast style: only ``decode_one_token`` is compiled).

    from s1.compiled import compile_decode_step
    compile_decode_step(model)     # the next s1.generate call pays the compilation, later calls reuse it
    uncompile_decode_step(model)   # back to eager

The step is compiled with dynamic shapes (the cache length grows every step), so one graph
serves every step and every generation; prefill and sampling stay eager. It works with every
weight format of ``s1.weights`` (the packed linears are traced as the ops they call). On a
CPU the compilation takes tens of seconds and the decode step is bound by reading the
weights, so it pays only where per-step overhead is a large share of the step (small models,
fast memory, GPUs): measure with ``python -m bench.s1_decode --compile`` (it reports the
compile time and the speed) before turning it on.
"""

from __future__ import annotations

import torch
from torch import nn


def compile_decode_step(model: nn.Module, backend: str = "inductor", mode: str | None = None) -> None:
    """Replace ``model.decode_one_token`` by its compiled version (once; later calls do nothing)."""
    if "decode_one_token" in vars(model):
        return
    model.decode_one_token = torch.compile(model.decode_one_token, dynamic=True, backend=backend, mode=mode)


def uncompile_decode_step(model: nn.Module) -> None:
    """Undo ``compile_decode_step`` (the class's eager method is used again)."""
    vars(model).pop("decode_one_token", None)
