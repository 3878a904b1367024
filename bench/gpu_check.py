"""The CUDA checks, in one run of a few minutes, on tiny models and data built here (no downloads).

    bash bench/gpu_check.sh                          # = python -m bench.gpu_check, keeps its work in /tmp
    python -m bench.gpu_check --work /tmp/gpu_check --steps 20
    python -m bench.gpu_check --skip-bench           # the pipeline checks only
    python -m bench.gpu_check --device cpu --steps 4  # dry run of the pipeline checks on the CPU (gloo, fp32)

Without a usable CUDA device it stops at once with one line on stderr and exit status 2.
Otherwise, in order (each a real command line, as a user runs it; ``--nproc`` processes under
torchrun, default 2 when the machine has 2 or more GPUs, else 1; NCCL, bf16):

1. a synthetic espeak-ng corpus (``tests.corpus``) and a tiny random HuBERT (``tests.tiny_hubert``);
2. resample.py, gen_phonemes.py, extract_ssl_s2.py on cuda, gen_filelist_s2.py (tiny S2 config);
3. train_s2.py under torchrun, bf16, ``--steps`` steps, then ``--resume`` for 2 more (the
   checkpoint round trip on the GPU);
4. extract_vq_s1.py on cuda, gen_filelist_s1.py, train_s1.py under torchrun, bf16, ``--steps``;
5. tts.py on cuda with both checkpoints (output: a finite, non-silent wav);
6. benchmarks on the GPU (``--skip-bench`` skips): bench.s1_train and bench.s2_train (full-size
   models, bf16), bench.s1_decode eager, then with ``--compile`` (``s1.compiled``: the decode
   step under torch.compile), then in this process greedy decoding eager vs the decode step
   compiled with ``--compile-mode`` (default reduce-overhead: CUDA graphs): tokens/s of both,
   the first (compiling) run's time, and whether the greedy tokens are identical.

Prints one JSON object: ``machine`` (``bench.machine`` with the GPU), per check ``ok``, seconds
and (for the benchmarks) the bench's own JSON; exit status 1 if any check failed. A failing
check's command and the tail of its output are in its entry.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NO_CUDA_EXIT = 2


def cuda_problem() -> str | None:
    """Why CUDA cannot be used here (one line), or None when it can."""
    try:
        import torch
    except ImportError as err:
        return f"torch cannot be imported ({err})"
    if not torch.cuda.is_available():
        return (f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False; "
                f"built with CUDA {torch.version.cuda})")
    return None


class Checks:
    """Runs commands from the repo root, records each as a check, and stops at the first failure of a stage
    that later ones need."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.results: dict[str, dict] = {}

    def run(self, name: str, cmd: list[object], timeout: float = 420, parse_json: bool = False) -> bool:
        cmd = [str(c) for c in cmd]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=self.env)
            ok, tail = proc.returncode == 0, (proc.stdout[-1500:] + proc.stderr[-2500:])
            out = proc.stdout
        except subprocess.TimeoutExpired:
            ok, tail, out = False, f"timed out after {timeout} s", ""
        entry: dict = {"ok": ok, "seconds": round(time.perf_counter() - t0, 1)}
        if ok and parse_json:
            try:
                entry["result"] = json.loads(out[out.index("{"):])
            except ValueError:
                entry.update(ok=False, error="no JSON in the output")
        if not entry["ok"]:
            entry["command"] = " ".join(cmd)
            entry["output_tail"] = tail
        self.results[name] = entry
        print(f"[gpu_check] {name}: {'ok' if entry['ok'] else 'FAILED'} ({entry['seconds']} s)", file=sys.stderr)
        return entry["ok"]


def torchrun(nproc: int) -> list[object]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


def check_wav(path: Path) -> dict:
    import soundfile as sf

    wav, sr = sf.read(path, dtype="float32")
    rms = float(np.sqrt(np.mean(np.square(wav)))) if wav.size else 0.0
    return {"ok": bool(wav.size > 0 and np.isfinite(wav).all() and rms > 1e-4), "seconds_of_audio":
            round(wav.shape[0] / sr, 2), "rms": round(rms, 5)}


def pipeline(checks: Checks, work: Path, args: argparse.Namespace) -> None:
    from tests.corpus import make_corpus
    from tests.pipeline import TINY_S1, TINY_S2, write_config
    from tests.tiny_hubert import make_tiny_hubert

    py, dump, dev = sys.executable, work / "dump", args.device
    dist = "nccl_bf16" if dev == "cuda" else "gloo_fp32"
    corpus = make_corpus(work / "corpus", n_sentences=8, speakers=2, n_english=0)
    s2_cfg = write_config(work / "s2.json", base=TINY_S2, train={"precision": "bf16", "eval_interval": 1000})
    s1_cfg = write_config(work / "s1.json", base=TINY_S1, train={"precision": "bf16", "eval_interval": 1000})
    ssl_dim = json.loads(s2_cfg.read_text(encoding="utf-8"))["data"]["ssl_dim"]
    hubert = make_tiny_hubert(work / "hubert", hidden_size=ssl_dim)
    stages = [
        ("resample", [py, "resample.py", "--root", corpus.root, "--dump", dump, "--workers", 2]),
        ("gen_phonemes", [py, "gen_phonemes.py", "--dump", dump, "--workers", 2]),
        (f"extract_ssl_s2_{dev}", [py, "extract_ssl_s2.py", "--dump", dump, "--config", s2_cfg, "--ssl-model", hubert,
                                 "--device", dev]),
        ("gen_filelist_s2", [py, "gen_filelist_s2.py", "--dump", dump, "--config", s2_cfg]),
        (f"train_s2_torchrun{args.nproc}_{dist}",
         [*torchrun(args.nproc), "train_s2.py", "-c", s2_cfg, "-m", work / "s2", "--dump", dump, "--device", dev,
          "--max-steps", args.steps]),
        ("train_s2_resume", [*torchrun(args.nproc), "train_s2.py", "-m", work / "s2", "--dump", dump, "--device",
                             dev, "--resume", "--max-steps", args.steps + 2]),
        (f"extract_vq_s1_{dev}", [py, "extract_vq_s1.py", "--dump", dump, "--s2-ckpt", work / "s2", "--device", dev]),
        ("gen_filelist_s1", [py, "gen_filelist_s1.py", "--dump", dump, "--config", s1_cfg]),
        (f"train_s1_torchrun{args.nproc}_{dist}",
         [*torchrun(args.nproc), "train_s1.py", "-c", s1_cfg, "-m", work / "s1", "--dump", dump, "--device", dev,
          "--max-steps", args.steps]),
    ]
    for name, cmd in stages:
        if not checks.run(name, cmd):
            return
    ref = corpus.items[0]  # a recording of the corpus with its transcript
    out = work / "tts.wav"
    if checks.run(f"tts_{dev}", [py, "tts.py", "--s1-ckpt", work / "s1", "--s2-ckpt", work / "s2", "--ref", ref.wav,
                               "--ref-text", ref.text, "--ref-lang", ref.lang, "--text", "我们去公园散步吧。",
                               "--device", dev, "-o", out]):
        checks.results[f"tts_{dev}"].update(check_wav(out))


def benchmarks(checks: Checks, args: argparse.Namespace) -> None:
    py = sys.executable
    checks.run("bench_s1_train_cuda_bf16", [py, "-m", "bench.s1_train", "--device", "cuda", "--precision", "bf16",
                                            "--batch", 16, "--threads", 0], parse_json=True)
    checks.run("bench_s2_train_cuda", [py, "-m", "bench.s2_train", "--device", "cuda", "--batch", 8, "--threads", 0],
               parse_json=True)
    decode = [py, "-m", "bench.s1_decode", "--device", "cuda", "--threads", 0, "--new-tokens", 300,
              "--agreement-steps", 0, "--copy-mb", 256]
    checks.run("bench_s1_decode_cuda_eager", decode, parse_json=True)
    checks.run("bench_s1_decode_cuda_compiled", [*decode, "--compile"], parse_json=True, timeout=540)
    t0 = time.perf_counter()
    try:
        entry = decode_modes(args.compile_mode, args.decode_tokens)
    except Exception as err:  # noqa: BLE001 - any failure of the compiled path is the check's finding
        entry = {"ok": False, "error": f"{type(err).__name__}: {err}"}
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    checks.results[f"s1_decode_compile_{args.compile_mode}"] = entry


def decode_modes(mode: str, n_tokens: int) -> dict:
    """Greedy S1 decoding (12 layers, random weights, cuda) eager and with the decode step compiled in
    ``mode`` (``s1.compiled``; reduce-overhead = CUDA graphs): tokens/s of each and whether the tokens agree."""
    import torch

    from s1.compiled import compile_decode_step, uncompile_decode_step
    from s1.generate import generate_detailed
    from s1.model import Text2Semantic
    from s1.sampling import PRESETS

    torch.manual_seed(0)
    model = Text2Semantic(codebook_size=1024).cuda().eval()
    phones, prompt = [torch.randint(1, 322, (100,))], [torch.randint(0, 1024, (75,))]

    def run() -> tuple[float, torch.Tensor]:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = generate_detailed(model, phones, prompt, PRESETS["greedy"], max_new_tokens=n_tokens,
                                max_tokens_per_phoneme=None, min_new_tokens=n_tokens, seed=0)
        torch.cuda.synchronize()
        return time.perf_counter() - t0, res.tokens[0].cpu()

    run()
    eager_s, eager = run()
    compile_decode_step(model, mode=mode)
    try:
        first_s, _ = run()
        compiled_s, compiled = run()
    finally:
        uncompile_decode_step(model)
    same = int((eager == compiled).long().cumprod(0).sum()) if eager.shape == compiled.shape else -1
    return {"ok": same == n_tokens, "mode": mode, "eager_tok_s": round(n_tokens / eager_s, 1),
            "compiled_tok_s": round(n_tokens / compiled_s, 1), "first_compiled_run_s": round(first_s, 1),
            "greedy_tokens_identical": same, "tokens": n_tokens}


def main(args: argparse.Namespace) -> int:
    problem = cuda_problem() if args.device == "cuda" else None
    if problem is not None:
        print(f"error: bench.gpu_check needs a CUDA GPU: {problem}", file=sys.stderr)
        return NO_CUDA_EXIT
    import torch

    from bench.machine import machine_facts
    from tests.pipeline import script_env

    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    args.nproc = args.nproc or (2 if gpus >= 2 else 1)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    if work.exists() and any(work.iterdir()):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    checks = Checks(script_env(threads=2))
    t0 = time.perf_counter()
    pipeline(checks, work, args)
    if not args.skip_bench and args.device == "cuda":
        benchmarks(checks, args)
    ok = all(r["ok"] for r in checks.results.values())
    print(json.dumps({"bench": "gpu_check", "machine": machine_facts(args.device), "device": args.device,
                      "gpus": gpus, "nproc": args.nproc,
                      "work": str(work), "seconds": round(time.perf_counter() - t0, 1), "all_ok": ok,
                      "checks": checks.results}, indent=2))
    return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=None, help="work directory (emptied first; default: a new temp dir)")
    p.add_argument("--steps", type=int, default=20, help="training steps of each stage (default: 20)")
    p.add_argument("--nproc", type=int, default=0, help="torchrun processes (0: 2 with >= 2 GPUs, else 1)")
    p.add_argument("--skip-bench", action="store_true", help="skip the GPU benchmarks")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda (default); cpu: a dry run of the pipeline checks (gloo, fp32, no benchmarks) to "
                        "test this script where no GPU is")
    p.add_argument("--compile-mode", default="reduce-overhead",
                   help="torch.compile mode of the in-process decode check (default: reduce-overhead, CUDA graphs)")
    p.add_argument("--decode-tokens", type=int, default=200, help="greedy tokens of that check (default: 200)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse_args()))
