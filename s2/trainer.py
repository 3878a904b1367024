"""S2 training loop (used by train_s2.py): G/D steps, validation, checkpoints, tensorboard.

One process or torchrun DDP. Per batch (spec §3.3/§3.4): generator forward; discriminator
step on (real, generated.detach()); generator step on mel L1 (x c_mel), KL (x c_kl),
commitment (x c_commit), LSGAN (x c_gen) and feature matching (x c_fm). AdamW for both;
the learning rate decays by ``lr_decay`` once per epoch. ``step`` counts optimizer steps
in total over the whole run (it continues across ``--resume``).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from common.checkpoint import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from common.config import S2Config, from_dict, load_config, save_config, to_dict
from common.dist import DistInfo, all_reduce_sum_, barrier, cleanup_dist, setup_dist
from common.training import (
    Board,
    NonFiniteGuard,
    autocast,
    grad_norm,
    make_scaler,
    resolve_precision,
    seed_everything,
    setup_logging,
    spectrogram_image,
)
from modules.commons import slice_segments
from modules.losses import discriminator_loss, feature_loss, generator_loss, kl_loss, mel_loss
from modules.spectrogram import MelScale, MelSpectrogram
from s2.data import BucketBatchSampler, S2Batch, S2Dataset, collate_s2
from s2.model import build_model
from text.symbols import SYMBOLS_MD5

LOW_LR_PREFIXES = ("enc_p.text_embedding.", "enc_p.encoder_text.", "enc_p.mrte.")


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def param_groups(net_g: torch.nn.Module, lr: float, low_lr_rate: float) -> list[dict]:
    """All trainable parameters at ``lr``; the text/MRTE parts at ``lr * low_lr_rate`` when it is not 1 (§3.6)."""
    trainable = [(n, p) for n, p in net_g.named_parameters() if p.requires_grad]
    if low_lr_rate == 1.0:
        return [{"params": [p for _, p in trainable], "lr": lr}]
    low = [p for n, p in trainable if n.startswith(LOW_LR_PREFIXES)]
    base = [p for n, p in trainable if not n.startswith(LOW_LR_PREFIXES)]
    return [{"params": base, "lr": lr}, {"params": low, "lr": lr * low_lr_rate}]


class S2Trainer:
    def __init__(self, args: argparse.Namespace, info: DistInfo):
        self.args, self.info = args, info
        self.run_dir = Path(args.model_dir)
        self.dump = Path(args.dump)
        self.log = setup_logging(self.run_dir, info.is_main, "train_s2")
        self.cfg = self._config()
        tc = self.cfg.train
        self.device = info.device
        self.precision = resolve_precision(tc.precision, self.device)
        seed_everything(tc.seed + info.rank)
        self.net_g, self.net_d = build_model(self.cfg)
        self.net_g.to(self.device)
        self.net_d.to(self.device)
        self.optim_g = torch.optim.AdamW(param_groups(self.net_g, tc.learning_rate, tc.text_low_lr_rate),
                                         betas=tuple(tc.betas), eps=tc.eps, weight_decay=tc.weight_decay)
        self.optim_d = torch.optim.AdamW(self.net_d.parameters(), lr=tc.learning_rate, betas=tuple(tc.betas),
                                         eps=tc.eps, weight_decay=tc.weight_decay)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, gamma=tc.lr_decay)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, gamma=tc.lr_decay)
        self.scaler = make_scaler(self.precision, self.device)
        self.state = TrainState()
        self._restore()
        d = self.cfg.data
        self.mel_of_spec = MelScale(d.sampling_rate, d.filter_length, d.n_mel_channels, d.mel_fmin,
                                    d.mel_fmax).to(self.device)
        self.mel_of_wav = MelSpectrogram(d.sampling_rate, d.filter_length, d.hop_length, d.win_length,
                                         d.n_mel_channels, d.mel_fmin, d.mel_fmax).to(self.device)
        self.guard = NonFiniteGuard(tc.max_nonfinite_steps)
        self.board = Board(self.run_dir, info.is_main)
        ddp_kw = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
        self.g = DDP(self.net_g, broadcast_buffers=False, **ddp_kw) if info.world_size > 1 else self.net_g
        self.d = DDP(self.net_d, broadcast_buffers=False, **ddp_kw) if info.world_size > 1 else self.net_d

    # ------------------------------------------------------------------ setup

    def _config(self) -> S2Config:
        args = self.args
        saved = self.run_dir / "config.json"
        if args.resume and args.config is None:
            if not saved.is_file():
                raise CheckpointError(f"{self.run_dir}: --resume without -c needs {saved}")
            cfg = load_config(saved, S2Config)
        elif args.config is None:
            raise SystemExit("train_s2.py: -c/--config is required (e.g. -c configs/s2.json)")
        else:
            cfg = load_config(args.config, S2Config)
        if self.info.is_main:
            save_config(cfg, saved)
        return cfg

    def _restore(self) -> None:
        args = self.args
        if args.resume:
            path = latest_checkpoint(self.run_dir)
            if path is None:
                raise CheckpointError(f"{self.run_dir}: --resume given but there is no checkpoint to resume from "
                                      "(start without --resume for a fresh run)")
            ckpt = load_checkpoint(path, stage="s2", symbols_md5=SYMBOLS_MD5, map_location=self.device)
            if to_dict(from_dict(S2Config, ckpt.config)).get("model") != to_dict(self.cfg)["model"]:
                raise CheckpointError(f"{path}: its model config differs from the current one; resume with the "
                                      f"run's own config ({self.run_dir / 'config.json'}) or use --init to fine-tune")
            load_model_state(self.net_g, ckpt.models["generator"], path)
            load_model_state(self.net_d, ckpt.models["discriminator"], path)
            self.optim_g.load_state_dict(ckpt.optimizers["generator"])
            self.optim_d.load_state_dict(ckpt.optimizers["discriminator"])
            self.sched_g.load_state_dict(ckpt.schedulers["generator"])
            self.sched_d.load_state_dict(ckpt.schedulers["discriminator"])
            if self.scaler is not None and ckpt.scaler:
                self.scaler.load_state_dict(ckpt.scaler)
            self.state = TrainState(ckpt.step, ckpt.epoch, ckpt.extra.get("batch_in_epoch", 0))
            self.log.info(f"resuming from {path} at step {ckpt.step} (epoch {ckpt.epoch})")
        elif args.init:
            ckpt = load_checkpoint(args.init, stage="s2", symbols_md5=SYMBOLS_MD5, map_location=self.device)
            load_model_state(self.net_g, ckpt.models["generator"], ckpt.path)
            if "discriminator" in ckpt.models:
                load_model_state(self.net_d, ckpt.models["discriminator"], ckpt.path)
            if self.cfg.model.freeze_quantizer:
                self.net_g.freeze_quantizer()
            self.log.info(f"initialised weights from {ckpt.path} (step {ckpt.step}); optimizer starts fresh")
        elif latest_checkpoint(self.run_dir) is not None:
            raise CheckpointError(f"{self.run_dir} already holds checkpoints; pass --resume to continue that run, "
                                  "or choose another -m directory")

    def _loaders(self) -> tuple[DataLoader, BucketBatchSampler, S2Dataset]:
        tc = self.cfg.train
        train_ds = S2Dataset(self.dump / "s2_train.list", self.dump, self.cfg.data)
        val_ds = S2Dataset(self.dump / "s2_val.list", self.dump, self.cfg.data)
        sampler = BucketBatchSampler(train_ds.lengths(), tc.batch_size, tc.bucket_boundaries, self.info.rank,
                                     self.info.world_size, seed=tc.seed)
        if sampler.excluded:
            self.log.info(f"{len(sampler.excluded)} training item(s) fall outside train.bucket_boundaries "
                          f"({tc.bucket_boundaries[0]}..{tc.bucket_boundaries[-1]} frames) and are not used")
        loader = DataLoader(train_ds, batch_sampler=sampler, collate_fn=collate_s2, num_workers=tc.num_workers,
                            pin_memory=self.device.type == "cuda", persistent_workers=tc.num_workers > 0)
        return loader, sampler, val_ds

    # ------------------------------------------------------------------ one step

    def train_step(self, batch: S2Batch) -> dict[str, float] | None:
        """One D and one G update; returns named losses, or None when the step was skipped (non-finite)."""
        tc, hop, seg = self.cfg.train, self.cfg.data.hop_length, self.cfg.train.segment_frames
        with autocast(self.precision, self.device):
            out = self.g(batch.ssl, batch.spec, batch.spec_lengths, batch.text, batch.text_lengths)
            y = slice_segments(batch.wav, out.ids_slice * hop, seg * hop)  # [B, 1, seg·hop]
            d_out = self.d(y, out.y_hat.detach())
        loss_d = discriminator_loss(d_out.real_logits, d_out.fake_logits)
        if not self.guard.ok(loss_d, self.state.step):
            return None
        self.optim_d.zero_grad(set_to_none=True)
        self._backward(loss_d)
        grad_d = self._clip(self.net_d, self.optim_d)
        self._optimizer_step(self.optim_d)

        mel_real = slice_segments(self.mel_of_spec(batch.spec), out.ids_slice, seg)
        mel_fake = self.mel_of_wav(out.y_hat.squeeze(1))
        loss_mel = mel_loss(mel_real, mel_fake)
        loss_kl = kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.y_mask)
        with autocast(self.precision, self.device):
            d_out_g = self.d(y, out.y_hat)  # the updated D judges the generator
        loss_fm = feature_loss(d_out_g.real_features, d_out_g.fake_features)
        loss_gen = generator_loss(d_out_g.fake_logits)
        loss_g = (tc.c_mel * loss_mel + tc.c_kl * loss_kl + tc.c_commit * out.commit_loss.float()
                  + tc.c_fm * loss_fm + tc.c_gen * loss_gen)
        if not self.guard.ok(loss_g, self.state.step):
            return None
        self.optim_g.zero_grad(set_to_none=True)
        self._backward(loss_g)
        grad_g = self._clip(self.net_g, self.optim_g)
        self._optimizer_step(self.optim_g)
        self.optim_d.zero_grad(set_to_none=True)  # D's gradients from the generator pass are not used
        if self.scaler is not None:
            self.scaler.update()
        return {"loss/d/total": loss_d.item(), "loss/g/total": loss_g.item(), "loss/g/mel": loss_mel.item(),
                "loss/g/kl": loss_kl.item(), "loss/g/commit": out.commit_loss.item(), "loss/g/fm": loss_fm.item(),
                "loss/g/gen": loss_gen.item(), "grad_norm/g": grad_g, "grad_norm/d": grad_d}

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _clip(self, net: torch.nn.Module, optim: torch.optim.Optimizer) -> float:
        if self.scaler is not None:
            self.scaler.unscale_(optim)
        params = [p for p in net.parameters() if p.grad is not None]
        if self.cfg.train.grad_clip > 0:
            return float(torch.nn.utils.clip_grad_norm_(params, self.cfg.train.grad_clip))
        return grad_norm(params)

    def _optimizer_step(self, optim: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optim)
        else:
            optim.step()

    # ------------------------------------------------------------------ validation

    @torch.no_grad()
    def validate(self, val_ds: S2Dataset) -> float:
        """Mean mel L1 over the validation items: tokens -> decode with the item's own reference -> mel."""
        net = self.net_g
        net.eval()
        total, frames = 0.0, 0
        gen = torch.Generator(device=self.device).manual_seed(0)
        for i in range(len(val_ds)):
            b = collate_s2([val_ds[i]]).to(self.device)
            codes = net.extract_codes(b.ssl, b.spec_lengths)
            wav = net.decode(codes, b.text, b.text_lengths, b.spec, b.spec_lengths, generator=gen)
            n = codes.size(1) * net.frames_per_token  # whole tokens only (an odd last frame has none)
            mel_real = self.mel_of_spec(b.spec[:, :, :n])
            mel_fake = self.mel_of_wav(wav[:, 0, : n * self.cfg.data.hop_length])
            total += float((mel_real - mel_fake).abs().mean(dim=1).sum())
            frames += n
            if i == 0 and self.info.is_main:
                self.board.audio("val/audio_generated", wav[0, 0, : n * self.cfg.data.hop_length], self.state.step,
                                 self.cfg.data.sampling_rate)
                self.board.image("val/mel_generated", spectrogram_image(mel_fake[0].cpu().numpy()), self.state.step)
                self.board.image("val/mel_real", spectrogram_image(mel_real[0].cpu().numpy()), self.state.step)
        net.train()
        return total / max(frames, 1)

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> None:
        if not self.info.is_main:
            return
        ckpt = Checkpoint(stage="s2", step=self.state.step, epoch=self.state.epoch, config=to_dict(self.cfg),
                          symbols_md5=SYMBOLS_MD5,
                          models={"generator": self.net_g.state_dict(), "discriminator": self.net_d.state_dict()},
                          optimizers={"generator": self.optim_g.state_dict(),
                                      "discriminator": self.optim_d.state_dict()},
                          schedulers={"generator": self.sched_g.state_dict(),
                                      "discriminator": self.sched_d.state_dict()},
                          scaler=self.scaler.state_dict() if self.scaler is not None else None,
                          extra={"batch_in_epoch": self.state.batch_in_epoch})
        path = save_checkpoint(self.run_dir, ckpt, keep=self.cfg.train.keep_ckpts)
        self.log.info(f"saved {path}")

    # ------------------------------------------------------------------ loop

    def fit(self) -> None:
        tc = self.cfg.train
        loader, sampler, val_ds = self._loaders()
        max_steps = self.args.max_steps or tc.max_steps or math.inf
        self.log.info(f"S2 training on {self.device} x{self.info.world_size}, precision {self.precision}, "
                      f"{len(loader.dataset)} train / {len(val_ds)} val items, {len(sampler)} batches per epoch; "
                      f"logs: {self.run_dir}")
        self.net_g.train()
        self.net_d.train()
        t0, frames = time.perf_counter(), 0
        last_saved = self.state.step
        done = self.state.step >= max_steps
        while not done and self.state.epoch < tc.epochs:
            sampler.set_epoch(self.state.epoch, start=self.state.batch_in_epoch)
            for batch in loader:
                losses = self.train_step(batch.to(self.device))
                self.state.batch_in_epoch += 1
                if losses is None:
                    self.log.warning(f"step {self.state.step}: non-finite loss, batch skipped "
                                     f"({self.guard.total_skipped} skipped so far)")
                    continue
                self.state.step += 1
                frames += int(batch.spec_lengths.sum())
                step = self.state.step
                if step % tc.log_interval == 0:
                    n = torch.tensor([float(frames)], device=self.device)
                    rate = float(all_reduce_sum_(n)) / (time.perf_counter() - t0)
                    losses |= {"lr": self.optim_g.param_groups[0]["lr"], "throughput/frames_per_s": rate,
                               "train/skipped_nonfinite": self.guard.total_skipped}
                    self.board.scalars(losses, step)
                    self.log.info(f"step {step} epoch {self.state.epoch} | " + " ".join(
                        f"{k.split('/')[-1] if k.startswith('loss') else k}={v:.4g}" for k, v in losses.items()
                        if k.startswith("loss/g/") or k in ("loss/d/total", "throughput/frames_per_s")))
                    t0, frames = time.perf_counter(), 0
                if step % tc.eval_interval == 0 or step >= max_steps:
                    self._evaluate_and_save(val_ds)
                    last_saved = step
                if step >= max_steps:
                    done = True
                    break
            if not done:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
                self.sched_g.step()
                self.sched_d.step()
        if self.state.step != last_saved:
            self._evaluate_and_save(val_ds)
        self.board.close()
        self.log.info(f"finished at step {self.state.step}; checkpoints in {self.run_dir}")

    def _evaluate_and_save(self, val_ds: S2Dataset) -> None:
        if self.info.is_main:
            val = self.validate(val_ds)
            self.board.scalars({"val/mel_l1": val}, self.state.step)
            self.board.flush()
            self.log.info(f"step {self.state.step}: validation mel L1 {val:.4f}")
        self.save()
        barrier()


def run(args: argparse.Namespace) -> None:
    info = setup_dist(timeout_s=args.dist_timeout, device=args.device)
    try:
        S2Trainer(args, info).fit()
    finally:
        cleanup_dist()
