"""``torch.compile`` of S1's decode step (gpt-fast style: only ``decode_one_token`` is compiled).

    from s1.compiled import compile_decode_step
    compile_decode_step(model)     # compiles the step (timing its threads); s1.generate then uses it
    uncompile_decode_step(model)   # back to eager (and to the weight format's eager kernels)

The step is compiled with dynamic shapes (the cache length grows every step), so one graph per
thread count serves every step and every generation (the first batch of several rows or with
padding masks compiles its own once); prefill and sampling stay eager. It keeps the model's
weight format (``s1.weights``) and packs it for the graph: fp32, bf16 and fp16 linears become
``modules.transformer.reduction_linear`` (a product and a sum that inductor fuses into one loop
over the stored weights, parallel over output rows), the one-row attention over the cache
becomes reductions too (``cached_attention``), and the LayerNorms, residuals and cache writes
fuse around them; int8 keeps its own kernel inside the graph. On a CPU this removes what an
eager step pays beyond reading the weights: a BLAS matrix-vector call per linear (which read
the weights at about half the rate of a plain sum on the 2-core AVX2 EPYC), two small matrix
products per head in the flash-attention kernel, ~300 dispatched ops. There a 12-layer fp32
step went from 43 to ~21 ms and an fp16 one from 37 to 11-13 ms, for ~1 minute of compilation
(~2 at 24 layers) (``python -m bench.s1_decode --compile`` reports both on your machine). Inductor
needs a C++ compiler on the CPU (``g++``/``clang++``); without one ``compile_decode_step`` raises.

Threads: which count is faster depends on the machine: on the 2-core AVX2 EPYC two threads were
(11-12 vs 15-19 ms per 12-layer fp16 step), on a 2-core AVX-512 EPYC one was (7.9 vs 11.7 ms bf16,
12.7 vs 18.6 ms fp32, ``OMP_WAIT_POLICY=PASSIVE``: each of the step's parallel loops wakes the other
thread), and with OpenMP's default wait policy (threads spin a while before they sleep) two were again
(5.3 vs 5.9 ms bf16). So, as for eager steps, both are timed, each with its own graph (dynamo guards on the thread
count; the second compilation mostly hits inductor's cache), and ``s1.generate`` runs the faster.

Guards: before each call dynamo checks the graph's guards (the model's modules and tensors, the inputs'
kinds and shapes, the thread count): ~0.75 ms of a ~6 ms 12-layer bf16 step. Within one generation the step
is called again and again with the same model, thread count, batch and mask kind (only the cache slot, a
dynamic int, and the token values change), so ``s1.generate`` checks them on the first call of each such run
of steps and on the next ones runs only those that tell the graphs apart (``trusted_repeat``; 12-layer bf16
step 5.86 -> 5.11 ms, medians of 15 interleaved; 400-token generations 166 -> 197 decode tok/s, medians of 5
interleaved; 2-core AVX-512 EPYC, 2 threads). Should a trusted call pass none of the graphs' distinguishing
guards, dynamo raises ("Recompilation triggered with skip_guard_eval_unsafe stance"): a test makes sure a
generation's changes (first step, rows finishing) run all guards.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import torch
from torch import nn

from s1.weights import FormatInfo, choose_threads, use_weight_format

COMPILERS = ("g++", "c++", "clang++")
GRAPHS_PER_MODEL = 8  # room in dynamo's cache made by each compile_decode_step (see there)


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
    # Every model's step is the same function to dynamo, whose graphs for all models share one cache of
    # ``recompile_limit`` entries (8 by default); past it dynamo silently runs the step eagerly. Each model
    # compiled here adds up to GRAPHS_PER_MODEL (thread counts x one row / batched).
    from torch._dynamo import config as dynamo_config  # here: importing dynamo takes ~1.7 s, s1.generate imports us

    dynamo_config.recompile_limit += GRAPHS_PER_MODEL
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


def trusted_repeat(model: nn.Module, same_as_last: bool) -> contextlib.AbstractContextManager:
    """Run a compiled decode step with only the guards that tell its graphs apart (dynamo's
    ``skip_guard_eval_unsafe``: the tensor guards and those that ever caused a recompilation) when
    ``same_as_last``: the caller's previous call of this model's step, made with the guards checked or
    trusted in turn, had the same batch size, mask kind (None or a tensor) and thread count, and nothing
    else about the model or its inputs has changed since (as between the steps of one generation). Such a
    call passes every guard the previous one passed, so it needs no new graph and gets the previous one's.
    Anything else (an eager step, the first step, a changed batch): all guards run."""
    if same_as_last and "decode_one_token" in vars(model):
        return torch.compiler.set_stance(skip_guard_eval_unsafe=True)
    return contextlib.nullcontext()
