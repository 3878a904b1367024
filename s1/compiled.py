"""``torch.compile`` of S1's decode step (gpt-fast style: only ``decode_one_token`` is compiled).

    from s1.compiled import compile_decode_step
    compile_decode_step(model)     # the next s1.generate call pays the compilation, later calls reuse it
    uncompile_decode_step(model)   # back to eager (and to the weight format's eager kernels)

The step is compiled with dynamic shapes (the cache length grows every step), so one graph
serves every step and every generation; prefill and sampling stay eager. It keeps the model's
weight format (``s1.weights``) and packs it for the graph: fp32, bf16 and fp16 linears become
``modules.transformer.reduction_linear`` (a product and a sum that inductor fuses into one loop
over the stored weights, parallel over output rows), the one-row attention over the cache
becomes reductions too (``cached_attention``), and the LayerNorms, residuals and cache writes
fuse around them; int8 keeps its own kernel inside the graph. On a CPU this removes what an
eager step pays beyond reading the weights: a BLAS matrix-vector call per linear (which read
the weights at about half the rate of a plain sum on the 2-core AVX2 EPYC), two small matrix
products per head in the flash-attention kernel, ~300 dispatched ops. There a 12-layer fp32
step went from 43 to ~21 ms and an fp16 one from 37 to 11-13 ms, for ~1 minute of compilation
(~2 at 24 layers) on the first call (``python -m bench.s1_decode --compile`` reports both on your machine). Inductor
needs a C++ compiler on the CPU (``g++``/``clang++``); without one ``compile_decode_step`` raises.

Threads: the compiled loops run at the thread count set when they run, and which count is faster
depends on the machine: on the 2-core AVX2 EPYC two threads were (11-12 vs 15-19 ms per 12-layer fp16
step), on a 2-core AVX-512 EPYC (Zen 4) one was (5.6 vs 8.9 ms bf16, ``OMP_WAIT_POLICY=PASSIVE``: each of
the step's parallel loops wakes the other thread). So both are timed once compiled, as for eager steps.
"""

from __future__ import annotations

import os
import shutil

import torch
from torch import nn

from s1.weights import FormatInfo, choose_threads, use_weight_format

COMPILERS = ("g++", "c++", "clang++")


def check_cpp_compiler() -> None:
    """``RuntimeError`` unless a C++ compiler is on the PATH (or named by ``CXX``): inductor builds CPU kernels."""
    if os.environ.get("CXX") or any(shutil.which(c) for c in COMPILERS):
        return
    raise RuntimeError("torch.compile of the decode step on the CPU needs a C++ compiler (g++ or clang++; e.g. "
                       "`apt install g++`); none is on the PATH. Decode without --compile instead.")


def compile_decode_step(model: nn.Module, backend: str = "inductor", mode: str | None = None,
                        threads: int | str = "auto") -> FormatInfo | None:
    """Replace ``model.decode_one_token`` by its compiled version (once; later calls do nothing and return None).

    The model's weight format (``decode_format``, fp32 by default) is packed again with the "compiled"
    kernel; ``uncompile_decode_step`` restores the format's eager packing. On a CPU with ``threads="auto"``
    the compiled step is timed at torch's thread count and at one (``s1.weights.choose_threads``; its first
    call compiles, so the compilation happens here) and runs at the faster; an int fixes the count.
    Returns the packing's ``FormatInfo`` (threads and ms per step at each count timed), None off CPU."""
    if "decode_one_token" in vars(model):
        return None
    on_cpu = model.head.weight.device.type == "cpu"
    if backend == "inductor" and on_cpu:
        check_cpp_compiler()
    fmt, kernel, eager_threads = getattr(model, "decode_format", ("fp32", "auto", "auto"))
    fixed = torch.get_num_threads() if threads == "auto" else threads
    if on_cpu:
        info = use_weight_format(model, fmt, "compiled", threads=fixed)
        model.eager_decode_format = (fmt, kernel, eager_threads)
    model.decode_one_token = torch.compile(model.decode_one_token, dynamic=True, backend=backend, mode=mode)
    if not on_cpu:
        return None
    if threads == "auto":
        info.threads, info.step_ms_by_threads = choose_threads(model, step=model.decode_one_token)
    return info


def uncompile_decode_step(model: nn.Module) -> None:
    """Undo ``compile_decode_step``: the class's eager method is used again, with the format's eager packing."""
    vars(model).pop("decode_one_token", None)
    before = vars(model).pop("eager_decode_format", None)
    if before is not None:
        use_weight_format(model, *before)
