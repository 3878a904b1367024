"""S1 training loop (used by train_s1.py): token-weighted accumulation, warmup + cosine, checkpoints.

Optimizer: AdamW (not the original ScaledAdam). Schedule per optimizer step: linear warmup
from ``lr_init`` to ``learning_rate`` over ``warmup_steps``, cosine decay to ``lr_end`` at
``decay_steps``, constant ``lr_end`` after. ``step`` counts optimizer updates over the whole
run and continues across ``--resume``.

Gradient accumulation: an update uses ``grad_accum`` micro-batches (per rank). Each
micro-batch loss is the mean cross-entropy over its supervised positions; it is scaled by
``n_i / N`` (N = supervised positions of the whole update over all ranks, times the world
size because DDP averages gradients), so k micro-batches give exactly the update of one
batch holding all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from common.checkpoint import Checkpoint, CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from common.config import S1Config, S1TrainConfig, from_dict, to_dict
from common.dist import DistInfo, all_reduce_sum_, barrier, cleanup_dist, setup_dist
from common.training import (
    Board,
    NonFiniteGuard,
    autocast,
    check_run_dir,
    load_run_config,
    make_scaler,
    resolve_precision,
    seed_everything,
    setup_logging,
)
from s1.data import (
    S1_TRAIN_LIST,
    S1_VAL_LIST,
    SEMANTIC_JSON,
    S1Batch,
    S1Dataset,
    TokenBucketSampler,
    load_semantic_meta,
)
from s1.model import Text2Semantic, build_model
from text.symbols import SYMBOLS_MD5


def lr_at(step: int, tc: S1TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, cosine decay, constant tail."""
    if step < tc.warmup_steps:
        return tc.lr_init + (tc.learning_rate - tc.lr_init) * step / tc.warmup_steps
    if step >= tc.decay_steps:
        return tc.lr_end
    progress = (step - tc.warmup_steps) / (tc.decay_steps - tc.warmup_steps)
    return tc.lr_end + 0.5 * (1 + math.cos(math.pi * progress)) * (tc.learning_rate - tc.lr_end)


def make_optimizer(model: torch.nn.Module, tc: S1TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms, embeddings' positional scales (1-D parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr_at(0, tc), betas=tuple(tc.betas), eps=tc.eps)


def accumulate_step(model: torch.nn.Module, raw: Text2Semantic, micro: list[S1Batch], world_size: int,
                    precision: str, device: torch.device, top_k: int,
                    scaler: torch.amp.GradScaler | None = None) -> dict[str, torch.Tensor]:
    """Forward + backward over ``micro`` batches with token-weighted scaling; returns summed statistics.

    Gradients are left in ``.grad`` (the caller clips and steps). Under DDP (``model`` wraps
    ``raw``) gradient sync happens only on the last micro-batch.
    """
    n_local = sum(float((b.token_lens + 1).sum()) for b in micro)  # supervised positions incl. EOS
    n_total = all_reduce_sum_(torch.tensor([n_local], device=device)).item()
    stats = {"loss_sum": torch.zeros((), device=device), "acc_sum": 0.0, "topk_sum": 0.0, "n": 0.0, "scored": 0.0}
    for i, batch in enumerate(micro):
        sync = i == len(micro) - 1 or not isinstance(model, DDP)
        ctx = contextlib.nullcontext() if sync else model.no_sync()
        with ctx:
            with autocast(precision, device):
                out = model(batch.phones, batch.phone_lens, batch.tokens, batch.token_lens, top_k=top_k)
            n_i = float(out.n_tokens)
            loss = out.loss * (n_i * world_size / n_total)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        scored = float(batch.token_lens.sum())
        stats["loss_sum"] = stats["loss_sum"] + out.loss.detach().float() * n_i
        stats["acc_sum"] += float(out.acc) * scored
        stats["topk_sum"] += float(out.topk_acc) * scored
        stats["n"] += n_i
        stats["scored"] += scored
    return stats


class S1Trainer:
    def __init__(self, args: argparse.Namespace, info: DistInfo):
        self.args, self.info = args, info
        self.run_dir = Path(args.model_dir)
        self.dump = Path(args.dump)
        self.log = setup_logging(self.run_dir, info.is_main, "train_s1")
        resume_from = check_run_dir(self.run_dir, args.resume)
        self.cfg: S1Config = load_run_config(args.config, self.run_dir, args.resume, S1Config, info.is_main,
                                             "train_s1.py")
        self.meta = load_semantic_meta(self.dump / SEMANTIC_JSON)
        if self.meta.codebook_size != self.cfg.model.codebook_size:
            raise CheckpointError(f"{self.dump / SEMANTIC_JSON}: tokens come from a codebook of "
                                  f"{self.meta.codebook_size} codes but model.codebook_size is "
                                  f"{self.cfg.model.codebook_size}; set it to {self.meta.codebook_size}")
        tc = self.cfg.train
        self.device = info.device
        self.precision = resolve_precision(tc.precision, self.device)
        seed_everything(tc.seed + info.rank)
        self.raw = build_model(self.cfg).to(self.device)
        self.optim = make_optimizer(self.raw, tc)
        self.scaler = make_scaler(self.precision, self.device)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        if resume_from is not None:
            self._resume(resume_from)
        elif args.init:
            ckpt = load_checkpoint(args.init, stage="s1", symbols_md5=SYMBOLS_MD5, map_location=self.device)
            load_model_state(self.raw, ckpt.models["model"], ckpt.path)
            self.log.info(f"initialised weights from {ckpt.path} (step {ckpt.step}); optimizer starts fresh")
        self.guard = NonFiniteGuard(tc.max_nonfinite_steps)
        self.board = Board(self.run_dir, info.is_main)
        ddp_kw = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
        self.model = DDP(self.raw, **ddp_kw) if info.world_size > 1 else self.raw

    def _resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path, stage="s1", symbols_md5=SYMBOLS_MD5, map_location=self.device)
        if to_dict(from_dict(S1Config, ckpt.config))["model"] != to_dict(self.cfg)["model"]:
            raise CheckpointError(f"{path}: its model config differs from the current one; resume with the run's "
                                  f"own config ({self.run_dir / 'config.json'}) or use --init to fine-tune")
        load_model_state(self.raw, ckpt.models["model"], path)
        self.optim.load_state_dict(ckpt.optimizers["model"])
        if self.scaler is not None and ckpt.scaler:
            self.scaler.load_state_dict(ckpt.scaler)
        self.step, self.epoch = ckpt.step, ckpt.epoch
        self.batch_in_epoch = ckpt.extra.get("batch_in_epoch", 0)
        self.log.info(f"resuming from {path} at step {ckpt.step} (epoch {ckpt.epoch})")

    def _loaders(self) -> tuple[DataLoader, TokenBucketSampler, S1Dataset]:
        tc = self.cfg.train
        train_ds = S1Dataset(self.dump / S1_TRAIN_LIST, self.meta)
        val_ds = S1Dataset(self.dump / S1_VAL_LIST, self.meta)
        sampler = TokenBucketSampler(train_ds.lengths, tc.max_batch_tokens, tc.max_batch_size, shuffle=True,
                                     seed=tc.seed, rank=self.info.rank, world_size=self.info.world_size)
        loader = DataLoader(train_ds, batch_sampler=sampler, collate_fn=train_ds.collate, num_workers=tc.num_workers,
                            pin_memory=self.device.type == "cuda", persistent_workers=tc.num_workers > 0)
        return loader, sampler, val_ds

    def update(self, micro: list[S1Batch]) -> dict[str, float] | None:
        """One optimizer step over ``micro`` batches; None when skipped (non-finite loss)."""
        tc = self.cfg.train
        for group in self.optim.param_groups:
            group["lr"] = lr_at(self.step, tc)
        self.optim.zero_grad(set_to_none=True)
        stats = accumulate_step(self.model, self.raw, micro, self.info.world_size, self.precision, self.device,
                                tc.top_k_acc, self.scaler)
        totals = all_reduce_sum_(torch.stack([stats["loss_sum"].float(), torch.tensor(stats["n"], device=self.device)]))
        loss = totals[0] / totals[1].clamp(min=1.0)  # the same on every rank, so every rank skips together
        if not self.guard.ok(loss, self.step):
            self.optim.zero_grad(set_to_none=True)
            return None
        if self.scaler is not None:
            self.scaler.unscale_(self.optim)
        params = [p for p in self.raw.parameters() if p.grad is not None]
        clip = tc.grad_clip if tc.grad_clip > 0 else float("inf")
        gnorm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        if self.scaler is not None:
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            self.optim.step()
        scored = max(stats["scored"], 1.0)
        return {"loss/train": float(loss), "acc/top1": stats["acc_sum"] / scored,
                f"acc/top{tc.top_k_acc}": stats["topk_sum"] / scored, "grad_norm": gnorm,
                "lr": self.optim.param_groups[0]["lr"], "_tokens": stats["n"]}

    @torch.no_grad()
    def validate(self, val_ds: S1Dataset) -> dict[str, float]:
        """Teacher-forced loss and accuracy over the validation list (rank 0, unwrapped model)."""
        self.raw.eval()
        loss_sum = acc_sum = topk_sum = n = scored = 0.0
        for start in range(0, len(val_ds), 8):
            batch = val_ds.collate([val_ds[i] for i in range(start, min(start + 8, len(val_ds)))]).to(self.device)
            out = self.raw(batch.phones, batch.phone_lens, batch.tokens, batch.token_lens,
                           top_k=self.cfg.train.top_k_acc)
            loss_sum += float(out.loss) * float(out.n_tokens)
            n += float(out.n_tokens)
            s = float(batch.token_lens.sum())
            acc_sum += float(out.acc) * s
            topk_sum += float(out.topk_acc) * s
            scored += s
        self.raw.train()
        k = self.cfg.train.top_k_acc
        return {"val/loss": loss_sum / max(n, 1), "val/acc_top1": acc_sum / max(scored, 1),
                f"val/acc_top{k}": topk_sum / max(scored, 1)}

    def save(self) -> None:
        if not self.info.is_main:
            return
        ckpt = Checkpoint(stage="s1", step=self.step, epoch=self.epoch, config=to_dict(self.cfg),
                          symbols_md5=SYMBOLS_MD5, models={"model": self.raw.state_dict()},
                          optimizers={"model": self.optim.state_dict()}, schedulers={},
                          scaler=self.scaler.state_dict() if self.scaler is not None else None,
                          extra={"batch_in_epoch": self.batch_in_epoch, "semantic": asdict(self.meta)})
        self.log.info(f"saved {save_checkpoint(self.run_dir, ckpt, keep=self.cfg.train.keep_ckpts)}")

    def _evaluate_and_save(self, val_ds: S1Dataset) -> None:
        if self.info.is_main:
            val = self.validate(val_ds)
            self.board.scalars(val, self.step)
            self.board.flush()
            self.log.info(f"step {self.step}: " + " ".join(f"{k}={v:.4f}" for k, v in val.items()))
        self.save()
        barrier()

    def fit(self) -> None:
        tc = self.cfg.train
        loader, sampler, val_ds = self._loaders()
        max_steps = self.args.max_steps or tc.max_steps or math.inf
        self.log.info(f"S1 training on {self.device} x{self.info.world_size}, precision {self.precision}, "
                      f"{len(loader.dataset)} train / {len(val_ds)} val items, {len(sampler)} batches per epoch, "
                      f"accumulation {tc.grad_accum}; logs: {self.run_dir}")
        self.raw.train()
        t0, tokens, last_saved = time.perf_counter(), 0.0, self.step
        done = self.step >= max_steps
        while not done and self.epoch < tc.epochs:
            sampler.set_epoch(self.epoch)
            batches = iter(loader)
            for _ in range(self.batch_in_epoch):  # mid-epoch resume: skip what the saved run consumed
                next(batches, None)
            micro: list[S1Batch] = []
            for batch in batches:
                micro.append(batch.to(self.device))
                self.batch_in_epoch += 1
                if len(micro) < tc.grad_accum and self.batch_in_epoch < len(sampler):
                    continue
                stats = self.update(micro)
                micro = []
                if stats is None:
                    self.log.warning(f"step {self.step}: non-finite loss, update skipped "
                                     f"({self.guard.total_skipped} skipped so far)")
                    continue
                self.step += 1
                tokens += stats.pop("_tokens")
                if self.step % tc.log_interval == 0:
                    rate = float(all_reduce_sum_(torch.tensor([tokens], device=self.device))) / (
                        time.perf_counter() - t0)
                    stats |= {"throughput/tokens_per_s": rate, "train/skipped_nonfinite": self.guard.total_skipped}
                    self.board.scalars(stats, self.step)
                    self.log.info(f"step {self.step} epoch {self.epoch} | " +
                                  " ".join(f"{k}={v:.4g}" for k, v in stats.items() if not k.startswith("train/")))
                    t0, tokens = time.perf_counter(), 0.0
                if self.step % tc.eval_interval == 0 or self.step >= max_steps:
                    self._evaluate_and_save(val_ds)
                    last_saved = self.step
                if self.step >= max_steps:
                    done = True
                    break
            if not done:
                self.epoch += 1
                self.batch_in_epoch = 0
        if self.step != last_saved:
            self._evaluate_and_save(val_ds)
        self.board.close()
        self.log.info(f"finished at step {self.step}; checkpoints in {self.run_dir}")


def run(args: argparse.Namespace) -> None:
    info = setup_dist(timeout_s=args.dist_timeout, device=args.device)
    try:
        S1Trainer(args, info).fit()
    finally:
        cleanup_dist()
