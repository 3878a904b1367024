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
- ``params_m`` (millions), ``precision``, ``device``, ``threads``, and on CUDA ``peak_mem_gb``;
- ``machine`` (``bench.machine``: CPU model and flags, threads, load average, torch) and
  ``load_avg_after``. GPT-SoVITS's step on the same batch: ``python -m bench.train_compare``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from bench.machine import load_now, machine_facts
from common.config import S1Config, load_config
from common.training import autocast, make_scaler, resolve_precision
from s1.data import S1Batch, S1Item, collate_s1
from s1.model import build_model
from s1.trainer import StepStats, accumulate_step, lr_at, make_optimizer
from text.symbols import SYMBOLS

REPO = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_inputs(batch: int, phones: int, tokens: int, codebook_size: int, bert_dim: int,
                     seed: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """Seeded random training inputs: phoneme ids ``[B, X]`` (symbols 1..), tokens ``[B, Y]``, BERT
    features ``[B, bert_dim, X]`` (None when ``bert_dim`` is 0). Every item has exactly X and Y."""
    g = torch.Generator().manual_seed(seed)
    phone_ids = torch.randint(1, len(SYMBOLS), (batch, phones), generator=g)
    token_ids = torch.randint(0, codebook_size, (batch, tokens), generator=g)
    bert = torch.randn(batch, bert_dim, phones, generator=g) if bert_dim > 0 else None
    return phone_ids, token_ids, bert


def our_batch(phone_ids: Tensor, token_ids: Tensor, bert: Tensor | None, eos_id: int) -> S1Batch:
    """The same inputs through our collation (``s1.data.collate_s1``)."""
    items = [S1Item(f"b{i}", phone_ids[i], token_ids[i], None if bert is None else bert[i])
             for i in range(phone_ids.shape[0])]
    return collate_s1(items, eos_id)


@dataclass
class OurStep:
    """One training update as ``S1Trainer.update`` does it: zero the gradients, ``accumulate_step``
    (forward + backward under ``precision``), ``clip_grad_norm_`` to ``train.grad_clip``, optimizer step."""

    model: torch.nn.Module
    optim: torch.optim.Optimizer
    cfg: S1Config
    precision: str
    scaler: torch.amp.GradScaler | None

    @classmethod
    def build(cls, cfg: S1Config, device: torch.device, precision: str, seed: int) -> OurStep:
        torch.manual_seed(seed)
        model = build_model(cfg).to(device).train()
        optim = make_optimizer(model, cfg.train)
        for group in optim.param_groups:
            group["lr"] = lr_at(cfg.train.warmup_steps, cfg.train)  # the peak rate
        return cls(model, optim, cfg, precision, make_scaler(precision, device))

    def backward(self, batch: S1Batch) -> StepStats:
        """Zero the gradients, then forward + backward."""
        self.optim.zero_grad(set_to_none=True)
        return accumulate_step(self.model, [batch], 1, self.precision, self.cfg.train.top_k_acc, self.scaler)

    def update(self) -> None:
        """Clip and step (after ``backward``)."""
        clip = self.cfg.train.grad_clip if self.cfg.train.grad_clip > 0 else float("inf")
        if self.scaler is not None:
            self.scaler.unscale_(self.optim)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        if self.scaler is not None:
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            self.optim.step()

    def __call__(self, batch: S1Batch) -> StepStats:
        stats = self.backward(batch)
        self.update()
        return stats

    def forward(self, batch: S1Batch) -> None:
        """A no-grad forward (training mode) on the same batch."""
        with torch.no_grad(), autocast(self.precision, batch.tokens.device):
            self.model(batch.phones, batch.phone_lens, batch.tokens, batch.token_lens, bert=batch.bert_rows)


def main(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    machine = machine_facts(device)
    cfg = load_config(args.config, S1Config)
    if args.codebook_size:
        cfg.model = dataclasses.replace(cfg.model, codebook_size=args.codebook_size)  # re-derives eos_id
    precision = resolve_precision(args.precision or cfg.train.precision, device)
    step = OurStep.build(cfg, device, precision, args.seed)
    batch = our_batch(*synthetic_inputs(args.batch, args.phones, args.tokens, cfg.model.codebook_size,
                                        cfg.model.bert_dim, args.seed), cfg.model.eos_id).to(device)

    times: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": [], "step": []}
    for i in range(args.warmup + args.steps):
        _sync(device)
        t0 = time.perf_counter()
        stats = step.backward(batch)
        _sync(device)
        t1 = time.perf_counter()
        step.update()
        _sync(device)
        t2 = time.perf_counter()
        step.forward(batch)  # forward alone (same inputs, no graph kept) to split forward from backward
        _sync(device)
        t3 = time.perf_counter()
        if i >= args.warmup:
            times["step"].append(t2 - t0)
            times["optimizer"].append(t2 - t1)
            times["forward"].append(t3 - t2)
            times["backward"].append(max((t1 - t0) - (t3 - t2), 0.0))
    if not torch.isfinite(stats.loss_sum):
        raise SystemExit(f"bench.s1_train: non-finite loss {float(stats.loss_sum)} (precision {precision})")

    median = statistics.median(times["step"])
    supervised = args.batch * (args.tokens + 1)
    result = {
        "bench": "s1_train",
        "machine": machine,
        "load_avg_after": load_now(),
        "reference": "none in this run; python -m bench.train_compare --gs-root <GPT-SoVITS> times GPT-SoVITS's "
                     "step beside ours",
        "config": str(args.config),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "params_m": round(sum(p.numel() for p in step.model.parameters()) / 1e6, 2),
        "shape": {"batch": args.batch, "phones": args.phones, "tokens": args.tokens,
                  "sequence": args.phones + args.tokens},
        "steps": args.steps,
        "step_ms": round(1000 * median, 2),
        "step_ms_min": round(1000 * min(times["step"]), 2),
        "forward_ms": round(1000 * statistics.median(times["forward"]), 2),
        "backward_ms": round(1000 * statistics.median(times["backward"]), 2),
        "optimizer_ms": round(1000 * statistics.median(times["optimizer"]), 2),
        "steps_per_s": round(1 / median, 3),
        "tokens_per_s": round(supervised / median, 1),
        "sequence_tokens_per_s": round(args.batch * (args.phones + args.tokens) / median, 1),
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
