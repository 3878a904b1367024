"""Weight formats of S1's cached decoding: fp32, bf16, fp16 or int8 weight-only, chosen by a flag.

    from s1.weights import use_weight_format
    info = use_weight_format(model, "int8")    # pack once; s1.generate then decodes with it
    use_weight_format(model, "fp32")           # back to full precision (the default)

A decode step reads every transformer weight once for one row of activations, so on a CPU
its speed is bound by memory bandwidth: halving the bytes (bf16, fp16) or quartering them (int8)
is what makes it faster. Only the cached, no-grad path of ``TransformerDecoder`` (prefill and
decode steps) uses the packed weights; training, the uncached path and the parameters
themselves are unchanged (fp32). Per format, each transformer ``Linear`` becomes:

- ``fp32``: the same weights through ``F.linear`` or oneDNN's fused linear
  (``modules.transformer.onednn_linear``), or a transposed copy ``[K, N]`` through ``addmm``
  ("transposed": MKL then streams the weight as ``y += x_k * W^T[k, :]``, which read one row
  18-30 % faster than ``F.linear``'s ``[N, K]`` dot products on the 2-core AVX2 EPYC, at the cost of
  a second copy of the transformer's fp32 weights). Results equal fp32 ``F.linear`` up to the
  summation order (~1e-6).
- ``bf16``: bf16 copies of weight and bias, through ``F.linear`` or oneDNN (weights reordered
  once into oneDNN's layout); the input is rounded to bf16, the product comes back to fp32.
  Residuals, LayerNorms, attention, the KV cache and the head stay fp32. Fast on CPUs with
  AVX-512 BF16 or AMX (``common.cpu.cpu_bf16_native``), slow (emulated) elsewhere.
- ``fp16``: fp16 copies packed once for fbgemm's fp16 GEMM (``quantized.linear_dynamic_fp16``, ReLU
  fused): the weights are read as fp16 and widened to fp32 in registers (F16C), the input, the
  accumulation and the output stay fp32, so the only error is the weights' rounding to fp16 (11
  significant bits: ~8x finer than bf16, ~30x finer than int8's per-row steps). Any x86 CPU with AVX2
  (torch's fbgemm engine); on the 2-core AVX2 EPYC one step's linears took 0.45-0.65x fp32's time.
  Weights beyond fp16's range (|w| > 65504) are refused.
- ``int8``: symmetric per-output-channel int8 weights (``scale = max|w_row| / 127``),
  ``torch.ops.aten._weight_int8pack_mm`` on bf16 inputs (its fast CPU path), then
  ``y * scale + bias`` in fp32. CPU only.

Kernel "compiled" (set by ``s1.compiled.compile_decode_step``, fp32/bf16/fp16): the weights in the format's
dtype (fp32: the parameters themselves) through ``modules.transformer.reduction_linear``, which inside the
compiled decode step becomes one fused loop over the stored weights (the input stays fp32, so bf16 there
rounds only the weights); run eagerly (prefill) it is ``F.linear`` on the widened weights. int8 keeps its
kernel in the graph; the head is then fp32 through ``reduction_linear`` too. With the compiled kernel every
format but fp32 also stores the KV cache in bf16 (``COMPILED_CACHE``; the attention widens it to fp32 as it
reads it): at 24 layers and ~425 cached positions the cache is 42 MB per step in fp32, a quarter of the
bf16 weights' bytes, and a step read it in ~9 % of its time (2-core AVX-512 EPYC, bf16 weights, 17.2 vs
15.4 ms per step). bf16 keeps fp32's range (fp16 could overflow on a model's activations); its rounding
moved the logits of a 12-layer random-weight model by 1e-4 next to the weights' 7e-3, and no greedy token.

For fp32 and bf16 the kernel (``F.linear`` = "plain", "onednn" where oneDNN supports the
format on this CPU, for fp32 also "transposed") is chosen by timing both over the model's own weights, one row, when the
format is set (``kernel="auto"``; the choice and the timings are in the returned ``FormatInfo``):
which one is faster depends on the CPU, the BLAS torch was built with and the load, so no
machine's result is built in. The timings of a bf16, fp16 or int8 pack also hold fp32's (``"fp32"``),
and a format slower than fp32 here warns (bf16 on CPUs without AVX-512 BF16/AMX is emulated and
runs ~30x slower than fp32 on a 2-core AVX2 EPYC).

Threads of the decode step (``threads="auto"``): one decode step is a chain of ~300 small ops,
mostly single-row matrix-vector products; each op that torch runs in parallel wakes the other
threads and waits for them, which on a shared machine (or with ``OMP_WAIT_POLICY=PASSIVE``) can
cost more than it saves (int8 steps ran at 48 tok/s on one thread vs 33 on two on a loaded 2-core
VM). So the step is timed at torch's thread count and at one thread when the format is set, and
``s1.generate`` runs each decode step with the faster count (one thread only when clearly faster:
``ONE_THREAD_MARGIN``; ``decode_threads``); prefill,
sampling and everything else keep torch's setting. An int fixes the count.

The output head (``[V, D]``, 1 % of the weights) is kept in fp32 in every format, so the
logits are computed exactly from the hidden state. Packed weights are snapshots: after the
parameters change (training, ``load_state_dict``) ``refresh`` (called by ``s1.generate``)
packs them again.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modules.transformer import onednn_linear, onednn_linear_usable, plain_linear, reduction_linear

WEIGHT_FORMATS = ("fp32", "bf16", "fp16", "int8")
KERNELS = ("auto", "plain", "onednn", "transposed", "compiled")
COMPILED_FORMATS = ("fp32", "bf16", "fp16")  # formats with a "compiled" kernel (s1.compiled); int8 keeps its own
WEIGHT_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BYTES_PER_WEIGHT = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}
INT8_K_MULTIPLE = 16
FP16_MAX = float(torch.finfo(torch.float16).max)
ONE_THREAD_MARGIN = 0.95  # choose_threads: one thread wins only below 95 % of torch's count's step time
COMPILED_CACHE = "bf16"  # KV cache of a compiled decode step in every format but fp32 (see the module doc)

Packed = Callable[[Tensor, bool], Tensor]  # (x [..., K], relu) -> [..., N]


def check_weight_format(fmt: str) -> str:
    """``fmt`` if known, else ``ValueError`` naming the choices."""
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}: choose one of {', '.join(WEIGHT_FORMATS)}")
    return fmt


def _with_relu(y: Tensor, relu: bool) -> Tensor:
    return torch.relu_(y) if relu else y


def pack_fp32(weight: Tensor, bias: Tensor | None, kernel: str = "plain") -> Packed:
    """fp32 weights through ``plain_linear``, ``onednn_linear`` or, "transposed", ``addmm`` on a ``[K, N]`` copy."""
    w, b = weight.detach(), None if bias is None else bias.detach()
    if kernel == "transposed":
        wt = w.t().contiguous()  # [K, N]

        def run(x: Tensor, relu: bool) -> Tensor:
            x2 = x.reshape(-1, x.shape[-1])  # [M, K]
            y = torch.mm(x2, wt) if b is None else torch.addmm(b, x2, wt)  # [M, N]
            return _with_relu(y.view(*x.shape[:-1], wt.shape[1]), relu)

        return run
    fn = onednn_linear if kernel == "onednn" else plain_linear
    return lambda x, relu: fn(x, w, b, relu)


def pack_bf16(weight: Tensor, bias: Tensor | None, kernel: str = "plain") -> Packed:
    """bf16 copies; x is rounded to bf16 and the product returned in x's dtype. ``kernel`` "onednn": the
    weight reordered once for oneDNN's inner product (one row), ReLU fused."""
    w = weight.detach().to(torch.bfloat16).contiguous()
    b = None if bias is None else bias.detach().to(torch.bfloat16)
    if kernel == "onednn":
        w = torch.ops.mkldnn._reorder_linear_weight(w, 1)
        return lambda x, relu: onednn_linear(x.to(torch.bfloat16), w, b, relu).to(x.dtype)
    return lambda x, relu: _with_relu(F.linear(x.to(torch.bfloat16), w, b).to(x.dtype), relu)


def fp16_usable(weight: Tensor) -> bool:
    """Whether ``pack_fp16`` can run here: a CPU weight and torch's fbgemm engine (x86 builds)."""
    return (weight.device.type == "cpu" and "fbgemm" in torch.backends.quantized.supported_engines
            and hasattr(torch.ops.quantized, "linear_relu_dynamic_fp16"))


def check_fp16_range(w: Tensor) -> Tensor:
    """``w`` if every entry fits fp16 (|w| <= 65504), else ``ValueError``."""
    peak = float(w.abs().max()) if w.numel() else 0.0
    if not peak <= FP16_MAX:  # also NaN
        raise ValueError(f"fp16 weights: a {list(w.shape)} weight holds |w| = {peak:g}, beyond fp16's range "
                         f"({FP16_MAX:g}); use --weights fp32 or bf16 for this model")
    return w


def pack_compiled(weight: Tensor, bias: Tensor | None, fmt: str) -> Packed:
    """Weights of format ``fmt`` (fp32: the parameter itself; bf16, fp16: one copy) through ``reduction_linear``,
    which a compiled decode step (``s1.compiled``) turns into one fused loop over the stored weights; eagerly
    (prefill) ``F.linear`` on the weights widened to fp32."""
    w = weight.detach()
    if fmt == "fp16":
        check_fp16_range(w)
    w = w.to(WEIGHT_DTYPE[fmt]).contiguous()
    b = None if bias is None else bias.detach().float()
    for t in (w, b):  # fixed shapes in the graph (it is compiled with dynamic shapes for the cache length)
        if t is not None:
            torch._dynamo.mark_static(t)
    return lambda x, relu: reduction_linear(x, w, b, relu)


def pack_fp16(weight: Tensor, bias: Tensor | None) -> Packed:
    """fp16 weight-only through fbgemm: ``x @ fp16(w).T + b`` with fp32 input, accumulation and output."""
    if not fp16_usable(weight):
        raise ValueError(f"fp16 weights need torch's fbgemm engine on a CPU (x86 builds); the model is on "
                         f"{weight.device} with engines {torch.backends.quantized.supported_engines}: use "
                         "--weights int8, bf16 or fp32")
    w = check_fp16_range(weight.detach().float().contiguous())
    packed = torch.ops.quantized.linear_prepack_fp16(w, None if bias is None else bias.detach().float())
    plain, fused = torch.ops.quantized.linear_dynamic_fp16, torch.ops.quantized.linear_relu_dynamic_fp16
    return lambda x, relu: (fused if relu else plain)(x.float(), packed).to(x.dtype)


def quantize_int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8: weight ``[N, K]`` -> (q int8 ``[N, K]``, scale fp32 ``[N]``), ``w ≈ q * scale``."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=torch.finfo(torch.float32).tiny)
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
    return q, scale


def pack_int8(weight: Tensor, bias: Tensor | None) -> Packed:
    """int8 weight-only: ``(bf16(x) @ q.T) * scale + bias`` in x's dtype."""
    if weight.device.type != "cpu":
        raise ValueError(f"int8 weights are for CPU decoding; the model is on {weight.device}")
    if weight.shape[1] % INT8_K_MULTIPLE:
        # torch's CPU kernel reads K in blocks of 16: other widths give wrong results or crash
        raise ValueError(f"int8 weights need layer input widths divisible by {INT8_K_MULTIPLE}, got "
                         f"{weight.shape[1]}; use --weights bf16 or fp32 for this model")
    q, scale = quantize_int8(weight)
    ones = torch.ones(q.shape[0], dtype=torch.bfloat16)
    b = torch.zeros_like(scale) if bias is None else bias.detach().float()

    def run(x: Tensor, relu: bool) -> Tensor:
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, x.shape[-1]).to(torch.bfloat16), q, ones)  # [M, N]
        y = torch.addcmul(b, y.float(), scale).to(x.dtype)
        return _with_relu(y.view(*x.shape[:-1], q.shape[0]), relu)

    return run


@dataclass
class FormatInfo:
    """What ``use_weight_format`` set up: format, kernel of the transformer linears, MB of their weights read
    per step, ms of one step's linears per kernel (``kernel="auto"``; bf16/fp16/int8 also time fp32's as ``"fp32"``),
    packing time, threads of the decode step and ms per step at each count timed (``threads="auto"``), and the
    KV cache's format where it is not the weights' dtype ("bf16" with the compiled kernel, see the module doc)."""

    weight_format: str
    kernel: str
    transformer_weight_mb: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    pack_s: float = 0.0
    threads: int | None = None
    step_ms_by_threads: dict[int, float] = field(default_factory=dict)
    cache_dtype: str | None = None


class PackedLinears:
    """The ``Linear`` of the cached path (``modules.transformer``): ``(x, weight, bias, relu)`` runs the
    packed form of ``weight`` (looked up by identity). Unknown weights run through ``plain_linear``."""

    def __init__(self, table: dict[int, Packed], sources: list[Tensor], info: FormatInfo) -> None:
        self.table = table
        self.info = info
        self._stamp = [(p, p._version, p.data_ptr()) for p in sources]

    def __call__(self, x: Tensor, weight: Tensor, bias: Tensor | None, relu: bool = False) -> Tensor:
        packed = self.table.get(id(weight))
        return plain_linear(x, weight, bias, relu) if packed is None else packed(x, relu)

    def fresh(self) -> bool:
        """True while no packed parameter has been modified or replaced since packing."""
        return all(p._version == v and p.data_ptr() == ptr for p, v, ptr in self._stamp)


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.transformer.modules() if isinstance(m, nn.Linear)]


def _time_pass(fns: list[Packed], xs: list[Tensor]) -> float:
    t0 = time.perf_counter()
    for fn, x in zip(fns, xs):
        fn(x, False)
    return time.perf_counter() - t0


PACKERS = {"fp32": pack_fp32, "bf16": pack_bf16, "fp16": lambda w, b, kernel: pack_fp16(w, b),
           "int8": lambda w, b, kernel: pack_int8(w, b)}

SINGLE_KERNEL = {"fp16": "fbgemm", "int8": "int8pack"}  # formats with one kernel: its name


def pack(fmt: str, weight: Tensor, bias: Tensor | None, kernel: str) -> Packed:
    """One linear in format ``fmt`` with ``kernel`` ("compiled": ``pack_compiled``, else the format's packer)."""
    return pack_compiled(weight, bias, fmt) if kernel == "compiled" else PACKERS[fmt](weight, bias, kernel)


def usable_kernels(linears: list[nn.Linear], fmt: str) -> list[str]:
    """The kernels format ``fmt`` can run with here: fp16 and int8 have one; "onednn" only where oneDNN supports
    the dtype."""
    if fmt in SINGLE_KERNEL:
        return [SINGLE_KERNEL[fmt]]
    onednn = bool(linears) and onednn_linear_usable(linears[0].weight, WEIGHT_DTYPE[fmt])
    return ["plain"] + (["onednn"] if onednn else []) + (["transposed"] if fmt == "fp32" else [])


@torch.inference_mode()
def choose_kernel(linears: list[nn.Linear], fmt: str, rounds: int = 3) -> tuple[str, dict[str, float]]:
    """Time one decode step's worth of linears in format ``fmt`` (one row, the model's own weights) per kernel,
    interleaved, best of ``rounds``: -> (the fastest kernel, ms per pass of each). For bf16, fp16 and int8 the pass
    of fp32 ``F.linear`` is timed too (key ``"fp32"``, never chosen) so that a format slower than fp32 shows."""
    kernels = usable_kernels(linears, fmt)
    if not linears or linears[0].weight.device.type != "cpu" or (fmt == "fp32" and len(kernels) == 1):
        return kernels[0], {}
    xs = [torch.randn(1, 1, m.in_features, device=m.weight.device) for m in linears]
    fns = {k: [PACKERS[fmt](m.weight, m.bias, k) for m in linears] for k in kernels}
    if fmt != "fp32":
        fns["fp32"] = [pack_fp32(m.weight, m.bias) for m in linears]
    best = {k: float("inf") for k in fns}
    for k in fns:  # warm-up: primitive creation, first touch
        _time_pass(fns[k], xs)
    for _ in range(rounds):
        for k, f in fns.items():
            best[k] = min(best[k], _time_pass(f, xs))
    chosen = min(kernels, key=best.get)
    if fmt != "fp32" and best[chosen] > best["fp32"]:
        warnings.warn(f"{fmt} weights: one step's linears take {best[chosen] * 1e3:.1f} ms here vs "
                      f"{best['fp32'] * 1e3:.1f} ms in fp32 (this CPU has no fast {fmt} kernel); "
                      "fp32 decodes faster on it", stacklevel=3)
    return chosen, {k: round(v * 1e3, 3) for k, v in best.items()}


@contextlib.contextmanager
def thread_count(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None or the current count: unchanged), then restore."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def decode_threads(model: nn.Module) -> contextlib.AbstractContextManager:
    """``thread_count`` of the model's packed decode step (``FormatInfo.threads``; unchanged when unpacked)."""
    packed = getattr(model.transformer, "decode_linear", None)
    return thread_count(packed.info.threads if isinstance(packed, PackedLinears) else None)


@torch.inference_mode()
def choose_threads(model: nn.Module, rounds: int = 3, steps: int = 8, prefix: int = 320,
                   step: Callable[..., Tensor] | None = None) -> tuple[int, dict[int, float]]:
    """Time cached decode steps of ``model`` (one row, a zero cache of ``prefix`` slots, its packed linears) at
    torch's thread count and at one thread, interleaved, best of ``rounds``: -> (the faster count, ms per step
    of each). Nothing is timed (-> torch's count) on one thread, off CPU, or while a cache is in use.
    ``step(tokens, positions, input_pos, mask, phone_lens)``: the step to time (default: the class's eager
    ``decode_one_token``, even if the instance's is compiled; ``s1.compiled`` passes the compiled one, whose
    warm-up call compiles it).

    ``prefix``: a typical sequence length mid-generation (phonemes + prompt + tokens so far), so that the
    attention over the cache weighs as it does then: with 64 slots one thread looked as fast as two for
    24-layer fp16 weights, which then decoded 300 tokens 8 % slower on one (2-core AVX2 EPYC); at 320 slots
    the two still tied (25.2 vs 25.3 ms), so one thread must be faster by ``1 - ONE_THREAD_MARGIN`` to win."""
    n = torch.get_num_threads()
    tr = model.transformer
    if n == 1 or model.head.weight.device.type != "cpu" or tr.caches is not None:
        return n, {}
    if step is None:
        eager = type(model).decode_one_token

        def step(*args: Tensor | int | None) -> Tensor:
            return eager(model, *args)
    tok = torch.zeros(1, dtype=torch.long)
    pos, phone_lens = torch.zeros(1, dtype=torch.long), torch.full((1,), prefix, dtype=torch.long)
    was_training = model.training
    model.eval()
    tr.setup_cache(1, prefix + steps)
    try:
        def per_step(threads: int) -> float:
            with thread_count(threads):
                t0 = time.perf_counter()
                for i in range(steps):
                    step(tok, pos + i, prefix + i, None, phone_lens)
                return (time.perf_counter() - t0) / steps

        best = {k: float("inf") for k in (n, 1)}
        for k in best:
            per_step(k)  # warm-up
        for _ in range(rounds):
            for k in best:
                best[k] = min(best[k], per_step(k))
    finally:
        tr.reset_cache()
        model.train(was_training)
    chosen = 1 if best[1] < ONE_THREAD_MARGIN * best[n] else n
    return chosen, {k: round(v * 1e3, 3) for k, v in best.items()}


def pack_linears(model: nn.Module, fmt: str, kernel: str = "auto") -> PackedLinears:
    """Pack the transformer linears of an S1 model in format ``fmt`` (the head stays fp32, see the module doc)."""
    check_weight_format(fmt)
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}: choose one of {', '.join(KERNELS)}")
    t0 = time.perf_counter()
    linears = _linears(model)
    timings: dict[str, float] = {}
    onednn_ok = bool(linears) and onednn_linear_usable(linears[0].weight)
    compiled = kernel == "compiled"  # for s1.compiled: every linear in a form its compiled graph can hold
    if kernel == "auto":
        kernel, timings = choose_kernel(linears, fmt)
    elif compiled and fmt not in COMPILED_FORMATS:  # int8: its own kernel, compiled as it is
        kernel = SINGLE_KERNEL[fmt]
    elif not compiled and kernel not in usable_kernels(linears, fmt):
        kernel = usable_kernels(linears, fmt)[0]  # fp16/int8: their one kernel; oneDNN where unsupported: F.linear
    table: dict[int, Packed] = {}
    sources: list[Tensor] = []
    n_bytes = 0
    for m in linears:
        table[id(m.weight)] = pack(fmt, m.weight, m.bias, kernel)
        n_bytes += m.weight.numel() * BYTES_PER_WEIGHT[fmt] + (4 * m.out_features if fmt == "int8" else 0)  # + scales
        sources += [m.weight] + ([] if m.bias is None else [m.bias])
    head = model.head  # fp32 in every format; its kernel: the fp32 choice, else oneDNN where usable
    head_kernel = kernel if fmt == "fp32" else ("onednn" if onednn_ok else "plain")
    table[id(head.weight)] = pack("fp32", head.weight, head.bias, "compiled" if compiled else head_kernel)
    sources.append(head.weight)
    info = FormatInfo(weight_format=fmt, kernel=kernel, transformer_weight_mb=round(n_bytes / 2**20, 1),
                      timings_ms=timings, pack_s=round(time.perf_counter() - t0, 3),
                      cache_dtype=COMPILED_CACHE if compiled and fmt != "fp32" else None)
    return PackedLinears(table, sources, info)


def _install(model: nn.Module, packed: PackedLinears, threads: int | str) -> PackedLinears:
    """Make ``packed`` the model's decode linears and KV cache dtype and set the decode step's thread count (timed if
    "auto")."""
    model.transformer.decode_linear = packed
    cache = packed.info.cache_dtype
    model.transformer.cache_dtype = None if cache is None else WEIGHT_DTYPE[cache]
    if threads == "auto":
        packed.info.threads, packed.info.step_ms_by_threads = choose_threads(model)
    else:
        packed.info.threads = int(threads)
    return packed


def use_weight_format(model: nn.Module, fmt: str = "fp32", kernel: str = "auto",
                      threads: int | str = "auto") -> FormatInfo:
    """Set the weight format of ``model``'s cached decoding (an S1 ``Text2Semantic``); returns what was set up.
    ``threads``: the decode step's torch thread count, or "auto" (the faster of torch's count and one, timed)."""
    if threads != "auto" and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be 'auto' or a positive int, got {threads!r}")
    packed = _install(model, pack_linears(model, fmt, kernel), threads)
    model.decode_format = (fmt, kernel, threads)
    return packed.info


def refresh(model: nn.Module) -> PackedLinears:
    """The model's packed linears, packed (again) if missing or stale; fp32 with a measured kernel by default."""
    packed = getattr(model.transformer, "decode_linear", None)
    if isinstance(packed, PackedLinears) and packed.fresh():
        return packed
    fmt, kernel, threads = getattr(model, "decode_format", ("fp32", "auto", "auto"))
    if isinstance(packed, PackedLinears):  # stale weights, same format: keep the kernel and threads measured before
        kernel = packed.info.kernel if kernel == "auto" and packed.info.kernel in KERNELS else kernel
        threads = packed.info.threads if threads == "auto" and packed.info.threads else threads
    return _install(model, pack_linears(model, fmt, kernel), threads)


@dataclass
class Agreement:
    """A weight format against fp32 on one row: teacher-forced over fp32's greedy tokens, and free-running.

    argmax_agreement: fraction of the ``steps`` logits rows (fed fp32's tokens) whose argmax is fp32's;
    logits_max_abs_diff: max |logits - fp32 logits| over those rows (``logits_max_abs`` for scale);
    free_running_identical: leading greedy tokens identical when each format feeds back its own tokens.
    """

    weight_format: str
    steps: int
    argmax_agreement: float
    logits_max_abs_diff: float
    logits_max_abs: float
    free_running_identical: int


@torch.inference_mode()
def teacher_forced_logits(model: nn.Module, phones: Tensor, prompt: Tensor, tokens: Tensor,
                          bert: Tensor | None = None) -> Tensor:
    """Cached-path logits ``[T+1, V]`` of one row fed ``tokens [T]`` after ``[phones ; prompt]``: row ``t``
    predicts ``tokens[t]`` (the last row the token after them). bert ``[L, bert_dim]`` or None."""
    from s1.generate import left_padded_prefix  # s1.generate imports this module
    from s1.model import prefix_lm_mask

    refresh(model)
    prefix = left_padded_prefix(model, [phones], [prompt], None if bert is None else [bert])
    s0 = prefix.x.shape[1]
    model.transformer.setup_cache(1, s0 + tokens.numel())
    try:
        mask = prefix_lm_mask(prefix.key_valid, prefix.is_phone)
        h = model.hidden(prefix.x, mask, input_pos=0, positions=prefix.seq_positions)[:, -1]  # [1, D]
        rows = [model.transformer.cached_linear()(h, model.head.weight, None, False)]
        pos = prefix.next_positions
        for t in range(tokens.numel()):
            rows.append(model.decode_one_token(tokens[t : t + 1], pos + t, s0 + t, None, prefix.phone_lens))
    finally:
        model.transformer.reset_cache()
    return torch.cat(rows).float()


@dataclass
class Fp32Reference:
    """fp32's greedy decoding of one row: ``tokens [steps]`` and the teacher-forced logits ``[steps, V]`` fed them."""

    tokens: Tensor
    logits: Tensor


def _greedy_tokens(model: nn.Module, phones: Tensor, prompt: Tensor, steps: int, bert: Tensor | None) -> Tensor:
    """``steps`` greedy tokens (EOS blocked, no penalty) of one row in the model's current format."""
    from s1.generate import generate  # s1.generate imports this module
    from s1.sampling import SamplingParams

    greedy = SamplingParams(top_k=1, greedy=True, repetition_penalty=1.0)
    return generate(model, [phones], [prompt], greedy, max_new_tokens=steps, max_tokens_per_phoneme=None,
                    min_new_tokens=steps + 1, bert=None if bert is None else [bert])[0]


def fp32_reference(model: nn.Module, phones: Tensor, prompt: Tensor, steps: int, bert: Tensor | None = None,
                   kernel: str = "auto") -> Fp32Reference:
    """fp32's side of ``compare_with_fp32``, to compare several formats against one run. Leaves the model in fp32."""
    use_weight_format(model, "fp32", kernel)
    tokens = _greedy_tokens(model, phones, prompt, steps, bert)
    return Fp32Reference(tokens, teacher_forced_logits(model, phones, prompt, tokens[:-1], bert))


def compare_with_fp32(model: nn.Module, phones: Tensor, prompt: Tensor, steps: int, fmt: str,
                      bert: Tensor | None = None, kernel: str = "auto",
                      reference: Fp32Reference | None = None) -> Agreement:
    """Greedy decoding of ``steps`` tokens (EOS blocked, no penalty) in fp32 (``reference``, else run here) and in
    ``fmt``; see ``Agreement``. Leaves the model in format ``fmt``."""
    ref = reference or fp32_reference(model, phones, prompt, steps, bert, kernel)
    if ref.tokens.numel() != steps:
        raise ValueError(f"the fp32 reference holds {ref.tokens.numel()} tokens, not {steps}")
    use_weight_format(model, fmt, kernel)
    own_tokens = _greedy_tokens(model, phones, prompt, steps, bert)
    got = teacher_forced_logits(model, phones, prompt, ref.tokens[:-1], bert)
    want, got = ref.logits[:, : model.eos_id], got[:, : model.eos_id]  # EOS (the last id) was blocked while decoding
    same = (own_tokens == ref.tokens).long().cumprod(0).sum()
    return Agreement(weight_format=fmt, steps=steps,
                     argmax_agreement=float((got.argmax(-1) == want.argmax(-1)).float().mean()),
                     logits_max_abs_diff=float((got - want).abs().max()), logits_max_abs=float(want.abs().max()),
                     free_running_identical=int(same))
