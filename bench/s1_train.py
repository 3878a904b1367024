"""S1 training step speed: forward + backward + gradient clipping + AdamW step on a fixed batch.

    python -m bench.s1_train                                   # configs/s1.json, CPU, 2 threads
    python -m bench.s1_train --device cuda --batch 32 --threads 0
    python -m bench.s1_train --config configs/tiny/s1.json --codebook-size 64

The model comes from ``--config`` (default: the full-size configs/s1.json, 12 layers, width 512)
with random weights in training mode (its dropouts on). The batch is fixed and synthetic:
``--batch`` items of exactly ``--phones`` phonemes and ``--tokens`` semantic tokens (no padding).
A step is what ``S1Trainer.update`` does: ``s1.trainer.accumulate_step`` (forward and backward
under the config's precision, resolved for the device as in training), ``clip_grad_norm_`` and
``AdamW.step``. ``--warmup`` steps are run first and not timed. Prints one JSON object:

- ``shape``: the batch (items, phonemes, tokens, sequence length = phonemes + tokens);
- ``step_ms`` (median over ``--steps``), ``step_ms_min``; the medians of ``optimizer_ms``
  (clipping + AdamW), ``forward_ms`` (a separately timed no-grad forward on the same batch)
  and ``backward_ms`` (forward + backward minus that forward: an estimate, slightly high);
- ``steps_per_s``; ``tokens_per_s``: supervised positions (tokens + one EOS per item) per
  second, the figure train_s1.py logs as ``throughput/tokens_per_s``; ``sequence_tokens_per_s``:
  phonemes + tokens per second;
- ``params_m`` (millions), ``precision``, ``device``, ``threads``, and on CUDA ``peak_mem_gb``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from common.config import S1Config, load_config
from common.training import autocast, make_scaler, resolve_precision
from s1.data import S1Item, collate_s1
from s1.model import build_model
from s1.trainer import accumulate_step, lr_at, make_optimizer
from text.symbols import SYMBOLS

REPO = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(args.config, S1Config)
    if args.codebook_size:
        cfg.model = dataclasses.replace(cfg.model, codebook_size=args.codebook_size)  # re-derives eos_id
    precision = resolve_precision(args.precision or cfg.train.precision, device)
    torch.manual_seed(args.seed)
    model = build_model(cfg).to(device).train()
    optim = make_optimizer(model, cfg.train)
    for group in optim.param_groups:
        group["lr"] = lr_at(cfg.train.warmup_steps, cfg.train)  # the peak rate
    scaler = make_scaler(precision, device)
    g = torch.Generator().manual_seed(args.seed)
    items = [S1Item(f"b{i}", torch.randint(1, len(SYMBOLS), (args.phones,), generator=g),
                    torch.randint(0, cfg.model.codebook_size, (args.tokens,), generator=g))
             for i in range(args.batch)]
    batch = collate_s1(items, cfg.model.eos_id).to(device)
    clip = cfg.train.grad_clip if cfg.train.grad_clip > 0 else float("inf")

    times: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": [], "step": []}
    for i in range(args.warmup + args.steps):
        _sync(device)
        t0 = time.perf_counter()
        optim.zero_grad(set_to_none=True)
        stats = accumulate_step(model, [batch], 1, precision, cfg.train.top_k_acc, scaler)
        _sync(device)
        t1 = time.perf_counter()
        if scaler is not None:
            scaler.unscale_(optim)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        if scaler is not None:
            scaler.step(optim)
            scaler.update()
        else:
            optim.step()
        _sync(device)
        t2 = time.perf_counter()
        # forward alone (same inputs, no graph kept) to split forward from backward
        with torch.no_grad(), autocast(precision, device):
            model(batch.phones, batch.phone_lens, batch.tokens, batch.token_lens)
        _sync(device)
        t3 = time.perf_counter()
        if i >= args.warmup:
            times["step"].append(t2 - t0)
            times["optimizer"].append(t2 - t1)
            times["forward"].append(t3 - t2)
            times["backward"].append(max((t1 - t0) - (t3 - t2), 0.0))
    if not torch.isfinite(stats.loss_sum):
        raise SystemExit(f"bench.s1_train: non-finite loss {float(stats.loss_sum)} (precision {precision})")

    step = statistics.median(times["step"])
    supervised = args.batch * (args.tokens + 1)
    result = {
        "bench": "s1_train",
        "config": str(args.config),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "shape": {"batch": args.batch, "phones": args.phones, "tokens": args.tokens,
                  "sequence": args.phones + args.tokens},
        "steps": args.steps,
        "step_ms": round(1000 * step, 2),
        "step_ms_min": round(1000 * min(times["step"]), 2),
        "forward_ms": round(1000 * statistics.median(times["forward"]), 2),
        "backward_ms": round(1000 * statistics.median(times["backward"]), 2),
        "optimizer_ms": round(1000 * statistics.median(times["optimizer"]), 2),
        "steps_per_s": round(1 / step, 3),
        "tokens_per_s": round(supervised / step, 1),
        "sequence_tokens_per_s": round(args.batch * (args.phones + args.tokens) / step, 1),
        "loss": round(float(stats.loss_sum / stats.n_tokens), 4),
    }
    if device.type == "cuda":
        result["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    print(json.dumps(result))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=REPO / "configs" / "s1.json", help="S1 config (model + train)")
    p.add_argument("--codebook-size", type=int, default=0, help="override model.codebook_size (0: the config's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                   help="default: the config's train.precision resolved for the device (auto: bf16 on CUDA, "
                        "fp32 on CPU)")
    p.add_argument("--batch", type=int, default=4, help="items per batch (default: 4)")
    p.add_argument("--phones", type=int, default=100, help="phonemes per item (default: 100)")
    p.add_argument("--tokens", type=int, default=250, help="semantic tokens per item (default: 250 = 10 s at 25 Hz)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (default: 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (0: leave the default)")
    p.add_argument("--seed", type=int, default=0)
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
