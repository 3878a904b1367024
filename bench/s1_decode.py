"""S1 decoding speed: KV-cached vs uncached generation against the memory-bandwidth bound.

    python -m bench.s1_decode                      # fp32, CPU, 2 threads
    python -m bench.s1_decode --n-layer 24         # the GPT-SoVITS v1 pretrained S1 shape
    python -m bench.s1_decode --weights int8       # int8 weight-only decoding (also: bf16, fp16), checked against fp32
    python -m bench.s1_decode --compile            # torch.compile of the decode step (compile time reported)
    python -m bench.s1_decode --device cuda --dtype bf16 --threads 0

On a machine shared with other busy processes, OpenMP threads that spin at barriers make
every multi-threaded op (and so this benchmark) collapse by 10-40x; there, run with
``OMP_WAIT_POLICY=PASSIVE`` or ``--threads 1`` and check ``load_avg_1min`` in the output.

Full-size model (random weights; 12 layers, ``--n-layer 24`` for the v1 pretrained shape), a
100-phoneme prefix plus a 75-token prompt, 500 new tokens with EOS blocked so every run has the
full length. Prints one JSON object:

- ``cached_tok_s``: new tokens / wall time of ``generate`` (prefill included);
  ``cached_decode_tok_s``: decode steps / their wall time (as timed by ``generate_detailed``).
- ``uncached_tok_s``: ``generate(use_cache=False)`` over the first ``--uncached-tokens``
  tokens only (cheaper per token than the full 500, so the speed-up is conservative).
- ``bandwidth_gb_s``: a large tensor copy timed in the same run (bytes read + written / s),
  best of the probes taken before and after each cached run (the machine is shared and
  noisy; the best probe gives the highest, i.e. strictest, bound);
  ``bound_tok_s`` = bandwidth / bytes of weights read per decode step;
  ``fraction_of_bound`` = cached_decode_tok_s / bound_tok_s (``fraction_of_bound_e2e`` uses
  cached_tok_s, prefill included). ``bound_tok_s_bytes_copied`` / ``fraction_of_bound_bytes_copied``:
  the same with the copy rate counted as bytes copied per second (half the read + write rate).
- ``load_avg_1min``: the machine's load when the run ended (other processes skew timings).
- ``weights``: the weight format of the decode step (``s1.weights``: fp32 / bf16 / fp16 / int8), the fp32
  kernel chosen by measurement (F.linear, oneDNN or a transposed copy through addmm, with the timings),
  the packing time and the decode step's thread count (timed: torch's or one, ``--decode-threads``);
  ``agreement``: the format against fp32 over ``--agreement-steps`` greedy tokens (teacher-forced
  argmax agreement, logits max abs diff, free-running identical tokens; skipped for fp32).
- ``compile_s``: with ``--compile``, ``compile_decode_step`` (compiling, timing the step's threads) plus the
  first run minus a later one.
- ``budget``: where a decode step's time goes, in ms per token: ``read_gb_s`` = read-only bandwidth
  (sum of a ``--read-mb`` tensor, best of 5, torch's threads) and ``read_bound_ms`` = the step's weight
  bytes at that rate; ``linears_ms`` = one pass of the step's packed linears (transformer + head, one
  row, at the decode step's threads) and ``linears_gb_s`` their weight bytes per second; ``step_ms`` =
  ``decode_one_token`` at a cache filled to the middle of the run (``step_gb_s``: the weight bytes per
  second of the whole step; with ``--compile`` the linears are fused into it and not timed apart:
  ``linears_ms`` and ``attention_and_small_ops_ms`` are null); ``attention_and_small_ops_ms`` =
  step - linears (attention over the cache, norms, residuals, cache writes, Python and dispatch);
  ``loop_ms`` = 1000 / cached_decode_tok_s and ``sampling_and_loop_ms`` = loop - step (penalty,
  top-k, sampling, the host sync of the EOS check, bookkeeping).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from bench.machine import machine_facts
from s1.compiled import compile_decode_step
from s1.generate import GenerationResult, generate_detailed
from s1.model import Text2Semantic
from s1.sampling import PRESETS
from s1.weights import KERNELS, WEIGHT_FORMATS, compare_with_fp32, decode_threads, use_weight_format

T = TypeVar("T")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device, n_bytes: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` copy bandwidth in GB/s (bytes read + bytes written per second)."""
    src = torch.ones(n_bytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # touch the pages once
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n_bytes / best / 1e9


def read_bandwidth(device: torch.device, n_bytes: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` read-only bandwidth in GB/s: the sum of an ``n_bytes`` fp32 tensor."""
    x = torch.ones(n_bytes // 4, dtype=torch.float32, device=device)
    x.sum()  # touch the pages once
    best = float("inf")
    for _ in range(repeats):
        best = min(best, timed(x.sum, device)[0])
    return n_bytes / best / 1e9


@torch.inference_mode()
def step_budget(model: Text2Semantic, device: torch.device, fill: int, weight_bytes: int, read_gb_s: float,
                loop_ms: float, repeats: int = 5, steps: int = 10) -> dict:
    """Where one decode step's time goes (see the module docstring, ``budget``), in ms."""
    linear = model.transformer.decode_linear
    mods = [m for m in model.transformer.modules() if isinstance(m, torch.nn.Linear)] + [model.head]
    xs = [torch.randn(1, 1, m.in_features, device=device) for m in mods]

    def linears() -> None:
        for m, x in zip(mods, xs):
            linear(x, m.weight, m.bias, False)

    model.transformer.setup_cache(1, fill + steps, device=device)
    tok = torch.zeros(1, dtype=torch.long, device=device)
    pos, phone_lens = torch.zeros(1, dtype=torch.long, device=device), torch.full((1,), fill, device=device)

    def decode_steps() -> None:
        for i in range(steps):
            model.decode_one_token(tok, pos + i, fill + i, None, phone_lens)

    fused = getattr(linear, "info", None) is not None and linear.info.kernel == "compiled"  # s1.compiled
    try:
        with decode_threads(model):
            t_lin = None if fused else min(timed(linears, device)[0] for _ in range(repeats + 1))
            t_step = min(timed(decode_steps, device)[0] for _ in range(repeats + 1)) / steps
    finally:
        model.transformer.reset_cache()
    return {
        "read_gb_s": round(read_gb_s, 1),
        "weight_mb_per_step": round(weight_bytes / 2**20, 1),
        "read_bound_ms": round(weight_bytes / read_gb_s / 1e6, 2),
        "linears_ms": None if fused else round(t_lin * 1e3, 2),  # compiled: fused into the step, not apart
        "linears_gb_s": None if fused else round(weight_bytes / t_lin / 1e9, 1),
        "step_ms": round(t_step * 1e3, 2),
        "step_gb_s": round(weight_bytes / t_step / 1e9, 1),
        "attention_and_small_ops_ms": None if fused else round((t_step - t_lin) * 1e3, 2),
        "loop_ms": round(loop_ms, 2),
        "sampling_and_loop_ms": round(loop_ms - t_step * 1e3, 2),
        "cache_slots": fill,
    }


def decode_weight_bytes(model: Text2Semantic, packed_mb: float | None = None) -> int:
    """Bytes of parameters read by one decode step: transformer + head + one embedding row; ``packed_mb``:
    the transformer linears' weights as packed by ``s1.weights`` (bf16/fp16/int8), in place of the parameters."""
    linears = {id(m.weight) for m in model.transformer.modules() if isinstance(m, torch.nn.Linear)}
    n = sum(p.numel() * p.element_size() for p in model.transformer.parameters()
            if packed_mb is None or id(p) not in linears)
    n += 0 if packed_mb is None else int(packed_mb * 2**20)
    n += model.head.weight.numel() * model.head.weight.element_size()
    emb = model.token_embedding.weight
    return n + emb.shape[1] * emb.element_size()


def timed(fn: Callable[[], T], device: torch.device) -> tuple[float, T]:
    """Wall time of ``fn()`` (device synchronised) and its result."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def main(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    machine = machine_facts(device)
    torch.manual_seed(args.seed)
    model = Text2Semantic(codebook_size=1024, phoneme_vocab_size=512, dim=512, n_layer=args.n_layer, n_head=16,
                          ffn_dim=2048)
    model = model.to(device=device, dtype=DTYPES[args.dtype]).eval()
    phones = [torch.randint(0, 322, (args.n_phones,))]
    prompt = [torch.randint(0, 1024, (args.n_prompt,))]
    params = PRESETS[args.preset]
    agreement = None
    if args.weights != "fp32" and args.agreement_steps > 0:
        agreement = vars(compare_with_fp32(model, phones[0], prompt[0], args.agreement_steps, args.weights,
                                           kernel=args.kernel))
    threads = args.decode_threads if args.decode_threads == "auto" else int(args.decode_threads)
    use_weight_format(model, args.weights, args.kernel, threads)
    setup_s = 0.0
    if args.compile:  # packs the format again for the graph ("compiled" kernel), compiles, times its threads
        setup_s = timed(lambda: compile_decode_step(model), device)[0]
    fmt_info = vars(model.transformer.decode_linear.info)

    def run(n_new: int, use_cache: bool) -> GenerationResult:
        res = generate_detailed(
            model, phones, prompt, params, max_new_tokens=n_new, max_tokens_per_phoneme=None,
            min_new_tokens=n_new, seed=args.seed, use_cache=use_cache,
        )
        if res.tokens[0].numel() != n_new:
            raise RuntimeError(f"run produced {res.tokens[0].numel()} tokens, expected {n_new}")
        return res

    compile_s, _ = timed(lambda: run(8, True), device)  # warm-up (allocator, kernels, compilation)
    if args.compile:
        compile_s += setup_s - timed(lambda: run(8, True), device)[0]
    run(2, False)
    bandwidths = [copy_bandwidth(device, args.copy_mb * 2**20)]
    t_cached, t_prefill, decode_tok_s = float("inf"), float("inf"), 0.0
    for _ in range(args.repeats):
        t, res = timed(lambda: run(args.new_tokens, True), device)
        t_cached = min(t_cached, t)
        t_prefill = min(t_prefill, res.prefill_s)
        decode_tok_s = max(decode_tok_s, res.decode_steps / res.decode_s)
        bandwidths.append(copy_bandwidth(device, args.copy_mb * 2**20))
    t_uncached, _ = timed(lambda: run(args.uncached_tokens, False), device)

    bandwidth = max(bandwidths)
    w_bytes = decode_weight_bytes(model, fmt_info["transformer_weight_mb"])
    budget = step_budget(model, device, args.n_phones + args.n_prompt + args.new_tokens // 2, w_bytes,
                         read_bandwidth(device, args.read_mb * 2**20), 1e3 / decode_tok_s)
    bound = bandwidth * 1e9 / w_bytes
    cached_tok_s = args.new_tokens / t_cached
    uncached_tok_s = args.uncached_tokens / t_uncached
    seq_avg = args.n_phones + args.n_prompt + args.new_tokens / 2
    kv_bytes = 2 * len(model.transformer.layers) * seq_avg * model.dim * model.head.weight.element_size()
    result = {
        "device": str(device),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "compile": args.compile,
        "compile_s": round(compile_s, 2) if args.compile else None,
        "weights": fmt_info,
        "agreement": agreement,
        "preset": args.preset,
        "n_layer": args.n_layer,
        "prefix": {"phones": args.n_phones, "prompt_tokens": args.n_prompt},
        "new_tokens": args.new_tokens,
        "prefill_s": round(t_prefill, 4),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "machine": machine,
        "reference": "the memory-bandwidth bound of this run (bound_tok_s); GPT-SoVITS infer_panel on the same "
                     "input: python -m bench.gsv1_compare --parts speed-s1",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "cached_s": round(t_cached, 3),
        "cached_tok_s": round(cached_tok_s, 1),
        "cached_decode_tok_s": round(decode_tok_s, 1),
        "uncached_tokens": args.uncached_tokens,
        "uncached_s": round(t_uncached, 3),
        "uncached_tok_s": round(uncached_tok_s, 2),
        "speedup_cached_vs_uncached": round(cached_tok_s / uncached_tok_s, 1),
        "weight_mb_per_step": round(w_bytes / 2**20, 1),
        "kv_cache_mb_per_step_avg": round(kv_bytes / 2**20, 1),
        "budget": budget,
        "bandwidth_gb_s": round(bandwidth, 1),
        "bandwidth_samples_gb_s": [round(b, 1) for b in bandwidths],
        "bound_tok_s": round(bound, 1),
        "fraction_of_bound": round(decode_tok_s / bound, 3),
        "fraction_of_bound_e2e": round(cached_tok_s / bound, 3),
        # The same bound with the copy rate counted as bytes copied per second (half of read + write), the
        # convention of the project's issue ("copy bandwidth gives a bound near 260 tokens/s" on 2 cores).
        "bound_tok_s_bytes_copied": round(bound / 2, 1),
        "fraction_of_bound_bytes_copied": round(2 * decode_tok_s / bound, 3),
    }
    print(json.dumps(result, indent=2))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="model dtype")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (0 = leave as is)")
    p.add_argument("--n-layer", type=int, default=12, help="layers (12: configs/s1.json; 24: GPT-SoVITS v1)")
    p.add_argument("--n-phones", type=int, default=100, help="phonemes in the prefix")
    p.add_argument("--n-prompt", type=int, default=75, help="prompt tokens in the prefix")
    p.add_argument("--new-tokens", type=int, default=500, help="tokens generated by the cached run")
    p.add_argument("--uncached-tokens", type=int, default=30, help="tokens generated by the uncached run")
    p.add_argument("--repeats", type=int, default=3, help="cached runs (best time is reported)")
    p.add_argument("--preset", default="gshead", choices=sorted(PRESETS), help="sampling preset")
    p.add_argument("--copy-mb", type=int, default=512, help="size of the bandwidth-probe copy in MiB")
    p.add_argument("--decode-threads", default="auto",
                   help="torch threads of the decode step: a number, or auto (the faster of --threads and 1, timed)")
    p.add_argument("--read-mb", type=int, default=150, help="size of the read-bandwidth probe (a sum) in MiB")
    p.add_argument("--compile", action="store_true", help="torch.compile the decode step")
    p.add_argument("--weights", default="fp32", choices=WEIGHT_FORMATS, help="weight format of the decode step")
    p.add_argument("--kernel", default="auto", choices=KERNELS,
                   help="fp32/bf16 linears: F.linear (plain), oneDNN, or the faster of both here (auto)")
    p.add_argument("--agreement-steps", type=int, default=500,
                   help="greedy tokens of the check against fp32 (bf16/fp16/int8; 0 = skip)")
    p.add_argument("--seed", type=int, default=0, help="random seed (weights and sampling)")
    return p.parse_args()


if __name__ == "__main__":
    main(parse_args())
