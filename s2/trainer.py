"""S2 training loop (used by train_s2.py): G/D steps, validation, checkpoints, tensorboard.

One process or torchrun DDP. Per batch (spec §3.3/§3.4), in this order:

1. generator forward (the quantizer updates its EMA codebook here, in sync across ranks);
2. discriminator forward on (real slice, generated slice detached), LSGAN loss, backward,
   step of ``optim_d``;
3. the updated discriminator judges the generated slice again (its own parameters frozen
   for this pass, so no discriminator gradient is computed or all-reduced); generator loss
   ``c_mel·mel L1 + c_kl·KL + c_commit·commitment + c_fm·feature matching + c_gen·LSGAN``
   (+ ``c_prior_mean``·the prior-mean target when it is > 0), backward, step of
   ``optim_g``; one ``GradScaler.update()`` (fp16 only).

AdamW for both (weight decay 0.01 as the original, from the config); the learning rate
decays by ``lr_decay`` once per epoch, for both networks. With ``text_low_lr_rate`` ≠ 1 the
text embedding, text encoder and MRTE train at ``lr · text_low_lr_rate`` (GPT-SoVITS
fine-tuning, §3.6). ``grad_clip`` > 0 clips each network's gradient norm; the norm is
logged either way.

DDP: ``broadcast_buffers=False`` because the codebook keeps itself identical on every rank
(k-means and dead-code draws broadcast from rank 0, EMA statistics all-reduced); every
training forward therefore runs on all ranks together. A non-finite loss on any rank skips
the step on every rank (``max_nonfinite_steps`` in a row stop the run). Validation runs
on rank 0 with the unwrapped model in eval mode (no collectives) while the others wait.

``step`` counts optimizer steps over the whole run. A fresh run is validated once before
training (the untrained baseline of ``val/mel_l1``). Checkpoints hold both networks, both
optimizers and schedulers, the step, the epoch and the position in it, and every rank's RNG
state, so ``--resume`` with the same world size continues exactly as if never stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from common import speakers as spk
from common.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_discriminator_state,
    load_model_state,
    save_checkpoint,
)
from common.config import ConfigError, S2Config, from_dict, to_dict
from common.dist import DistInfo, all_gather_objects, all_reduce_sum_, barrier, distributed_stage
from common.gsv1.files import ENC_Q
from common.learning import envelope_correlation, mean, s2_resynthesis
from common.manifest import MANIFEST_NAME, S2_TRAIN_LIST, S2_VAL_LIST, ManifestError
from common.optim import adamw
from common.training import (
    Board,
    NonFiniteGuard,
    TrainingError,
    autocast,
    check_run_dir,
    load_run_config,
    make_scaler,
    resolve_precision,
    seed_everything,
    setup_logging,
    spectrogram_image,
)
from modules.commons import slice_segments
from modules.losses import dc_loss, discriminator_loss, feature_loss, generator_loss, kl_loss, mel_loss, prior_mean_loss
from modules.spectrogram import MelScale, MelSpectrogram
from s2.data import BucketBatchSampler, S2Batch, S2DataError, S2Dataset, collate_s2
from s2.model import build_model
from text.symbols import SYMBOLS_MD5

LOW_LR_PREFIXES = ("enc_p.text_embedding.", "enc_p.encoder_text.", "enc_p.mrte.")
# Names of the values one training step returns, in order (tensorboard tags).
STEP_KEYS = ("loss/d/total", "loss/g/total", "loss/g/mel", "loss/g/kl", "loss/g/commit", "loss/g/fm",
             "loss/g/gen", "loss/g/prior_mean", "loss/g/dc", "grad_norm/d", "grad_norm/g")


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done, over the whole run
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this rank's epoch already consumed (skipped ones included)


def param_groups(net_g: torch.nn.Module, lr: float, low_lr_rate: float) -> list[dict]:
    """All trainable parameters at ``lr``; the text/MRTE parts at ``lr * low_lr_rate`` when it is not 1 (§3.6)."""
    trainable = [(n, p) for n, p in net_g.named_parameters() if p.requires_grad]
    if low_lr_rate == 1.0:
        return [{"params": [p for _, p in trainable], "lr": lr}]
    low = [p for n, p in trainable if n.startswith(LOW_LR_PREFIXES)]
    base = [p for n, p in trainable if not n.startswith(LOW_LR_PREFIXES)]
    return [{"params": base, "lr": lr}, {"params": low, "lr": lr * low_lr_rate}]


def rng_state(device: torch.device) -> dict[str, Tensor]:
    """This process's torch RNG states (CPU, and the CUDA device's when training on one)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


@contextlib.contextmanager
def frozen(net: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``net`` with ``requires_grad`` off for its parameters (restored on exit)."""
    flags = [(p, p.requires_grad) for p in net.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield net
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class S2Trainer:
    def __init__(self, args: argparse.Namespace, info: DistInfo):
        self.args, self.info = args, info
        self.run_dir = Path(args.model_dir)
        self.dump = Path(args.dump)
        self.log = setup_logging(self.run_dir, info.is_main, "train_s2")
        resume_from = check_run_dir(self.run_dir, args.resume)
        self.cfg: S2Config = load_run_config(args.config, self.run_dir, args.resume, S2Config, info.is_main,
                                             "train_s2.py")
        tc = self.cfg.train
        self.device = info.device
        self.precision = resolve_precision(tc.precision, self.device)
        seed_everything(tc.seed + info.rank)
        try:
            self.speakers = spk.run_speaker_table(self.cfg.model.n_speakers, self.dump / MANIFEST_NAME,
                                                  args.config or self.run_dir / "config.json")
        except (spk.SpeakerError, ManifestError) as err:
            raise ConfigError(str(err)) from None
        self.net_g, self.net_d = build_model(self.cfg)
        self.net_g.to(self.device)
        self.net_d.to(self.device)
        self.optim_g = adamw(param_groups(self.net_g, tc.learning_rate, tc.text_low_lr_rate),
                             betas=tuple(tc.betas), eps=tc.eps, weight_decay=tc.weight_decay)
        self.optim_d = adamw(self.net_d.parameters(), lr=tc.learning_rate, betas=tuple(tc.betas),
                             eps=tc.eps, weight_decay=tc.weight_decay)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, gamma=tc.lr_decay)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, gamma=tc.lr_decay)
        self.scaler = make_scaler(self.precision, self.device)
        self.state = TrainState()
        if resume_from is not None:
            self._resume(resume_from)
        elif args.init:
            self._init_from(args.init)
        if self.cfg.model.freeze_quantizer and not bool(self.net_g.quantizer.inited.item()):
            raise ConfigError(f"{args.config or self.run_dir / 'config.json'}: model.freeze_quantizer is true but "
                              "the codebook was never trained; fine-tune from a trained S2 checkpoint with --init, "
                              "or set freeze_quantizer to false to learn the codebook")
        d = self.cfg.data
        self.mel_of_spec = MelScale(d.sampling_rate, d.filter_length, d.n_mel_channels, d.mel_fmin,
                                    d.mel_fmax).to(self.device)
        self.mel_of_wav = MelSpectrogram(d.sampling_rate, d.filter_length, d.hop_length, d.win_length,
                                         d.n_mel_channels, d.mel_fmin, d.mel_fmax).to(self.device)
        self.guard = NonFiniteGuard(tc.max_nonfinite_steps)
        self.board = Board(self.run_dir, info.is_main)
        self._real_logged = False
        ddp_kw = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
        self.g = DDP(self.net_g, broadcast_buffers=False, **ddp_kw) if info.world_size > 1 else self.net_g
        self.d = DDP(self.net_d, broadcast_buffers=False, **ddp_kw) if info.world_size > 1 else self.net_d

    # ------------------------------------------------------------------ setup

    def _resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path, stage="s2", symbols_md5=SYMBOLS_MD5, map_location=self.device)
        if to_dict(from_dict(S2Config, ckpt.config))["model"] != to_dict(self.cfg)["model"]:
            raise CheckpointError(f"{path}: its model config differs from the current one; resume with the run's "
                                  f"own config ({self.run_dir / 'config.json'}) or use --init to fine-tune")
        try:
            spk.check_resume(ckpt.extra, self.speakers, path, self.dump / MANIFEST_NAME)
        except spk.SpeakerError as err:
            raise CheckpointError(str(err)) from None
        load_model_state(self.net_g, ckpt.models["generator"], path)
        load_model_state(self.net_d, ckpt.models["discriminator"], path)
        self.optim_g.load_state_dict(ckpt.optimizers["generator"])
        self.optim_d.load_state_dict(ckpt.optimizers["discriminator"])
        self.sched_g.load_state_dict(ckpt.schedulers["generator"])
        self.sched_d.load_state_dict(ckpt.schedulers["discriminator"])
        if self.scaler is not None and ckpt.scaler:
            self.scaler.load_state_dict(ckpt.scaler)
        self.state = TrainState(ckpt.step, ckpt.epoch, ckpt.extra.get("batch_in_epoch", 0))
        states = ckpt.extra.get("rng")
        if states is not None and len(states) == self.info.world_size:
            set_rng_state(states[self.info.rank], self.device)
        else:
            self.log.warning(f"{path}: saved by {len(states or [])} process(es), now {self.info.world_size}: "
                             "random slices, noise and batch assignment will differ from an uninterrupted run")
        self.log.info(f"resuming from {path} at step {ckpt.step} (epoch {ckpt.epoch}, batch "
                      f"{self.state.batch_in_epoch})")

    def _init_from(self, source: str) -> None:
        """Weights of ``--init`` (ours or a GPT-SoVITS v1 generator) and ``--init-d`` (a discriminator)."""
        ckpt = load_checkpoint(source, stage="s2", symbols_md5=SYMBOLS_MD5, map_location=self.device)
        gen, note = spk.init_state(ckpt.models["generator"], ckpt.extra, self.speakers, ckpt.path)
        load_model_state(self.net_g, gen, ckpt.path, optional=(ENC_Q, "speaker_embedding."))
        if note:
            self.log.info(note)
        if not any(k.startswith(ENC_Q) for k in gen):
            self.log.warning(f"{ckpt.path} has no posterior encoder (an inference export): enc_q starts from random "
                             "weights; fine-tuning works but needs more steps than from a file with enc_q")
        init_d = getattr(self.args, "init_d", None)
        if init_d:
            load_model_state(self.net_d, load_discriminator_state(init_d, map_location=self.device), init_d)
            self.log.info(f"initialised the discriminator from {init_d}")
        elif "discriminator" in ckpt.models:
            load_model_state(self.net_d, ckpt.models["discriminator"], ckpt.path)
        else:
            self.log.warning(f"{ckpt.path} has no discriminator: it starts from random weights "
                             "(give one with --init-d)")
        self.log.info(f"initialised weights from {ckpt.path} (step {ckpt.step}); optimizer and step start fresh")

    def _loaders(self) -> tuple[DataLoader, BucketBatchSampler, S2Dataset]:
        tc = self.cfg.train
        train_ds = S2Dataset(self.dump / S2_TRAIN_LIST, self.dump, self.cfg.data, self.speakers)
        val_ds = S2Dataset(self.dump / S2_VAL_LIST, self.dump, self.cfg.data, self.speakers)
        sampler = BucketBatchSampler(train_ds.lengths(), tc.batch_size, tc.bucket_boundaries, self.info.rank,
                                     self.info.world_size, seed=tc.seed)
        if sampler.excluded:
            self.log.info(f"{len(sampler.excluded)} training item(s) fall outside train.bucket_boundaries "
                          f"({tc.bucket_boundaries[0]}..{tc.bucket_boundaries[-1]} frames) and are not used")
        # Its own generator: creating an iterator draws a worker seed, which must not move the global
        # RNG (a resumed run creates one more iterator than the uninterrupted run did).
        loader = DataLoader(train_ds, batch_sampler=sampler, collate_fn=collate_s2, num_workers=tc.num_workers,
                            pin_memory=self.device.type == "cuda", persistent_workers=tc.num_workers > 0,
                            generator=torch.Generator().manual_seed(tc.seed))
        return loader, sampler, val_ds

    # ------------------------------------------------------------------ one step

    def train_step(self, batch: S2Batch) -> Tensor | None:
        """One D and one G update; returns the ``STEP_KEYS`` values ``[11]`` (detached, on the device),
        or None when the step was skipped on every rank (a non-finite loss on any rank).

        Before ``train.disc_start_step`` the discriminator is neither run nor updated and the
        generator learns from the reconstruction terms alone (``loss/d``, ``fm``, ``gen`` and
        ``grad_d`` log 0).
        """
        tc, hop, seg = self.cfg.train, self.cfg.data.hop_length, self.cfg.train.segment_frames
        with autocast(self.precision, self.device):
            out = self.g(batch.ssl, batch.spec, batch.spec_lengths, batch.text, batch.text_lengths,
                         speakers=batch.speakers, prior_target=tc.c_prior_mean > 0)
            y = slice_segments(batch.wav, out.ids_slice * hop, seg * hop)  # [B, 1, seg·hop]
        adversarial = self.state.step >= tc.disc_start_step
        zero = out.y_hat.new_zeros((), dtype=torch.float32)
        loss_d, grad_d = zero, zero
        if adversarial:
            d_step = self._discriminator_step(y, out.y_hat.detach())
            if d_step is None:
                return None
            loss_d, grad_d = d_step

        mel_real = self.mel_of_spec(slice_segments(batch.spec, out.ids_slice, seg))  # [B, n_mels, seg]
        mel_fake = self.mel_of_wav(out.y_hat.squeeze(1))
        loss_mel = mel_loss(mel_real, mel_fake)
        loss_kl = kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.y_mask)
        loss_fm, loss_gen = zero, zero
        if adversarial:
            with autocast(self.precision, self.device), frozen(self.net_d) as judge:
                d_out_g = judge(y, out.y_hat)  # the updated D; gradients flow to the generator only
            loss_fm = feature_loss(d_out_g.real_features, d_out_g.fake_features)
            loss_gen = generator_loss(d_out_g.fake_logits)
        commit = out.commit_loss.float()
        loss_prior = (prior_mean_loss(out.m_p, out.z_p_mean, out.y_mask) if out.z_p_mean is not None
                      else zero)
        loss_dc = dc_loss(y, out.y_hat, hop)
        loss_g = (tc.c_mel * loss_mel + self.kl_weight() * loss_kl + tc.c_commit * commit
                  + tc.c_fm * loss_fm + tc.c_gen * loss_gen + tc.c_prior_mean * loss_prior + tc.c_dc * loss_dc)
        if not self.guard.ok(self._finite_on_all_ranks(loss_g), self.state.step):
            if self.scaler is not None:
                self.scaler.update()
            return None
        self.optim_g.zero_grad(set_to_none=True)
        self._backward(loss_g)
        grad_g = self._grad_norm(self.net_g, self.optim_g)
        self._optimizer_step(self.optim_g)
        if self.scaler is not None:
            self.scaler.update()
        return torch.stack([loss_d, loss_g, loss_mel, loss_kl, commit, loss_fm, loss_gen, loss_prior, loss_dc,
                            grad_d, grad_g]).detach()

    def _discriminator_step(self, y: Tensor, y_hat: Tensor) -> tuple[Tensor, Tensor] | None:
        """Update D on real ``y`` and generated ``y_hat`` (detached) ``[B, 1, N]``; returns (loss, grad norm),
        or None when the loss is not finite on some rank (nothing updated)."""
        with autocast(self.precision, self.device):
            d_out = self.d(y, y_hat)
        loss_d = discriminator_loss(d_out.real_logits, d_out.fake_logits)
        checked_d = self._finite_on_all_ranks(loss_d)
        if not bool(torch.isfinite(checked_d).all()):  # a finite D loss must not reset the guard's count:
            self.guard.ok(checked_d, self.state.step)  # the step is judged once, on the G loss
            return None
        self.optim_d.zero_grad(set_to_none=True)
        self._backward(loss_d)
        grad_d = self._grad_norm(self.net_d, self.optim_d)
        self._optimizer_step(self.optim_d)
        return loss_d, grad_d

    def kl_weight(self) -> float:
        """``c_kl``, ramped linearly over the first ``kl_warmup_steps`` steps (KL annealing; 0 = off).

        With the full weight from step 0 the posterior stays close to the unit-variance prior
        (KL about 1 nat per frame): its samples are mostly noise, the decoder learns to read the
        little they carry, and the prior mean has almost nothing to predict, so inference (the
        prior path) lags the posterior path by hundreds of steps. A light KL at first lets the
        posterior carry information (the prior, trained by the KL alone, gets Adam-normalised
        steps whatever the weight).
        """
        tc = self.cfg.train
        if tc.kl_warmup_steps <= 0:
            return tc.c_kl
        return tc.c_kl * min(1.0, (self.state.step + 1) / tc.kl_warmup_steps)

    def _finite_on_all_ranks(self, loss: Tensor) -> Tensor:
        """``loss`` (detached, ``[1]``), or NaN when the loss of any rank is not finite."""
        loss = loss.detach().float().reshape(1)
        bad = all_reduce_sum_((~torch.isfinite(loss)).float())
        return torch.where(bad > 0, torch.full_like(loss, math.nan), loss)

    def _backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _grad_norm(self, net: torch.nn.Module, optim: torch.optim.Optimizer) -> Tensor:
        """The gradient norm of ``net`` (unscaled), clipped to ``grad_clip`` when that is > 0."""
        if self.scaler is not None:
            self.scaler.unscale_(optim)
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grads_with_norm_(grads, self.cfg.train.grad_clip, norm)
        return norm.float()

    def _optimizer_step(self, optim: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optim)
        else:
            optim.step()

    # ------------------------------------------------------------------ validation

    @torch.no_grad()
    def validate(self, val_ds: S2Dataset) -> dict[str, float]:
        """Held-out resynthesis measures (``common.learning``) over the validation items.

        Prior path (as inference: tokens -> decode with the item's own reference): ``val/mel_l1``
        (mel L1 per frame over all items) and ``val/env_corr`` (mean energy-envelope correlation);
        posterior path (spectrogram -> ``enc_q`` -> decoder, the decoder's ceiling):
        ``val/posterior/mel_l1`` and ``val/posterior/env_corr``. Rank 0 only, unwrapped model in
        eval mode, a fixed noise seed; whole tokens only (an odd last frame has no token). Logs
        the first item's audio and mel images.
        """
        net, hop = self.net_g, self.cfg.data.hop_length
        net.eval()
        total, post_total, frames = 0.0, 0.0, 0
        corr, post_corr = [], []
        gen = torch.Generator(device=self.device).manual_seed(0)
        for i in range(len(val_ds)):
            ex = val_ds[i]
            ssl, spec, phones = ex.ssl.to(self.device), ex.spec.to(self.device), ex.phones.to(self.device)
            wav = s2_resynthesis(net, ssl, spec, phones, "prior", generator=gen)  # [n · hop]
            post = s2_resynthesis(net, ssl, spec, phones, "posterior", generator=gen)  # [n · hop]
            n = wav.numel() // hop
            mel_real = self.mel_of_spec(spec[None, :, :n])  # [1, n_mels, n]
            mel_fake = self.mel_of_wav(wav[None])
            total += float((mel_real - mel_fake).abs().mean(dim=1).sum())
            post_total += float((mel_real - self.mel_of_wav(post[None])).abs().mean(dim=1).sum())
            frames += n
            rec = ex.wav[: n * hop].numpy()
            corr.append(envelope_correlation(rec, wav.cpu().numpy(), hop))
            post_corr.append(envelope_correlation(rec, post.cpu().numpy(), hop))
            if i == 0:
                step = self.state.step
                self.board.audio("val/audio_generated", wav, step, self.cfg.data.sampling_rate)
                self.board.image("val/mel_generated", spectrogram_image(mel_fake[0].cpu().numpy()), step)
                if not self._real_logged:  # the reference side once per process
                    self.board.audio("val/audio_real", ex.wav[: n * hop], step, self.cfg.data.sampling_rate)
                    self.board.image("val/mel_real", spectrogram_image(mel_real[0].cpu().numpy()), step)
                    self._real_logged = True
        net.train()
        frames = max(frames, 1)
        return {"val/mel_l1": total / frames, "val/env_corr": mean(corr),
                "val/posterior/mel_l1": post_total / frames, "val/posterior/env_corr": mean(post_corr)}

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> None:
        """Write a checkpoint (rank 0); every rank must call it (the RNG states are gathered)."""
        states = all_gather_objects(rng_state(self.device))
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
                          extra={"batch_in_epoch": self.state.batch_in_epoch, "rng": states}
                          | spk.extra_of(self.speakers))
        self.log.info(f"saved {save_checkpoint(self.run_dir, ckpt, keep=self.cfg.train.keep_ckpts)}")

    def _validate_and_log(self, val_ds: S2Dataset) -> None:
        if self.info.is_main:
            val = self.validate(val_ds)
            self.board.scalars(val, self.state.step)
            self.board.flush()
            self.log.info(f"step {self.state.step}: validation mel L1 {val['val/mel_l1']:.4f}, envelope correlation "
                          f"{val['val/env_corr']:.3f} (posterior path: mel L1 {val['val/posterior/mel_l1']:.4f}, "
                          f"envelope correlation {val['val/posterior/env_corr']:.3f})")

    def _evaluate_and_save(self, val_ds: S2Dataset) -> None:
        self._validate_and_log(val_ds)
        self.save()
        barrier()

    def _log_interval(self, sums: Tensor, n_steps: int, frames: Tensor, seconds: float) -> None:
        """Tensorboard + log line with the means over the last ``n_steps`` steps and all ranks."""
        totals = all_reduce_sum_(torch.cat([sums, frames.reshape(1)]))
        means = (totals[:-1] / (n_steps * self.info.world_size)).tolist()
        values = dict(zip(STEP_KEYS, means))
        values |= {"lr": self.optim_g.param_groups[0]["lr"], "throughput/frames_per_s": float(totals[-1]) / seconds,
                   "throughput/steps_per_s": n_steps / seconds}
        self.board.scalars(values | {"train/skipped_nonfinite": self.guard.total_skipped}, self.state.step)
        shown = " ".join(f"{k.removeprefix('loss/')}={v:.4g}" for k, v in values.items()
                         if k.startswith("loss/") or k.startswith("throughput/frames"))
        self.log.info(f"step {self.state.step} epoch {self.state.epoch} | {shown}")

    # ------------------------------------------------------------------ loop

    def fit(self) -> None:
        tc = self.cfg.train
        loader, sampler, val_ds = self._loaders()
        max_steps = self.args.max_steps or tc.max_steps or math.inf
        self.log.info(f"S2 training on {self.device} x{self.info.world_size}, precision {self.precision}, "
                      f"{len(loader.dataset)} train / {len(val_ds)} val items, {len(sampler)} batches per epoch "
                      f"per rank; logs: {self.run_dir}")
        if self.state.step == 0 and not self.args.resume:
            self._validate_and_log(val_ds)  # the untrained baseline
            barrier()
        self.net_g.train()
        self.net_d.train()
        sums = torch.zeros(len(STEP_KEYS), device=self.device)
        frames = torch.zeros((), device=self.device)
        n_steps, t0 = 0, time.perf_counter()
        last_saved = self.state.step
        done = self.state.step >= max_steps
        while not done and self.state.epoch < tc.epochs:
            sampler.set_epoch(self.state.epoch, start=self.state.batch_in_epoch)
            for batch in loader:
                values = self.train_step(batch.to(self.device))
                self.state.batch_in_epoch += 1
                if values is None:
                    self.log.warning(f"step {self.state.step}: non-finite loss on some rank, batch skipped "
                                     f"({self.guard.total_skipped} skipped so far)")
                    continue
                self.state.step += 1
                sums += values
                frames += batch.spec_lengths.sum()
                n_steps += 1
                step = self.state.step
                if step % tc.log_interval == 0:
                    self._log_interval(sums, n_steps, frames, time.perf_counter() - t0)
                    sums.zero_()
                    frames.zero_()
                    n_steps, t0 = 0, time.perf_counter()
                if step % tc.eval_interval == 0 or step >= max_steps:
                    t_eval = time.perf_counter()
                    self._evaluate_and_save(val_ds)
                    t0 += time.perf_counter() - t_eval  # throughput counts training time only
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


def run(args: argparse.Namespace) -> None:
    """Train under ``distributed_stage``: a dead or hung rank is one line, the process group is always torn down."""
    with distributed_stage("train_s2", args.device, timeout_s=args.dist_timeout) as info:
        try:
            S2Trainer(args, info).fit()
            barrier()  # ranks leave together: gloo can abort a rank that tears down while its peer still works
        except (ConfigError, CheckpointError, ManifestError, S2DataError, TrainingError, OSError) as err:
            raise SystemExit(f"train_s2: {err}") from None
