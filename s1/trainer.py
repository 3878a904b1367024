"""S1 training loop (used by train_s1.py): AdamW, warmup + cosine, exact accumulation, exact resume.

Optimizer and schedule
----------------------
AdamW replaces the original ScaledAdam (whose lr 0.01 is relative to each parameter's RMS and
has no AdamW equivalent). The learning rate is set before every optimizer step ``step``
(0-based, counted over the whole run, continued by ``--resume``): linear warmup from
``lr_init`` to ``learning_rate`` over ``warmup_steps``, cosine decay to ``lr_end`` at
``decay_steps``, constant ``lr_end`` after (``lr_at``). Weight decay applies to matrices and
embeddings only, not to biases, LayerNorm parameters or the positional ``alpha`` scalars.

Numbers (configs/*.json cannot hold comments, so they are explained here):

- full size (configs/s1.json, 12 post-LN layers, width 512): peak ``learning_rate`` 4e-4,
  ``warmup_steps`` 2000 from ``lr_init`` 1e-6, cosine to ``lr_end`` 4e-5 at ``decay_steps``
  40000, ``betas`` (0.9, 0.95), ``eps`` 1e-8, ``weight_decay`` 0.01, ``grad_clip`` 1.0.
  Why: post-LN stacks (this one, like the original) need a learning-rate warmup with
  Adam-type optimizers, so the AR schedule's 2000/40000-step shape is kept; 4e-4 is a
  conservative peak for a ~40M-parameter transformer with AdamW, leaving headroom for bf16
  and noisy small-data runs; beta2 0.95 (instead of 0.999) lets the second moment follow
  the gradient scale when batch composition changes (length-bucketed batches of very
  different token counts); clipping at 1.0 bounds outlier batches. The loss is a mean per
  supervised token, so these numbers do not depend on ``max_batch_tokens``. For fine-tuning
  a pretrained model use a lower peak (1e-4) with a short warmup (~200 steps). These
  full-size numbers are common practice, not tuned here (no full-size run is part of the
  tests); a CPU smoke run of this model on the synthetic tokens, at the 4e-4 peak after only
  10 warmup steps, went from loss 3.8 to 3.0 in 30 steps with the gradient norm falling
  (7.4 -> 0.8), no spikes. The tiny numbers below were measured.
- tiny (configs/tiny/s1.json, 2 layers, width 64, tests and demo): peak 8e-3 after 40 warmup
  steps from 1e-4, cosine to 8e-4 at 200 steps (= its ``max_steps``), batches of up to 48
  items (2 per epoch on the synthetic corpus), otherwise as above. A model this narrow
  tolerates a 20x higher rate; with these numbers it memorises the synthetic corpus
  (training top-1 accuracy about 0.93-0.98 by step 150, 0.985 at 200) in about 10 s of
  one CPU core (tests/test_train_s1.py checks >= 0.9 from the run's logs). Measured
  alternatives: batches of 16 items need 250-300 steps; peak 3e-3 twice the steps; 2e-3
  does not reach 0.9 in 300 steps.

Gradient accumulation and DDP
-----------------------------
An update uses ``grad_accum`` micro-batches per rank (``accumulate_step``). Each micro-batch
loss is the mean cross-entropy over its supervised positions (tokens + one EOS per item);
it is scaled by ``n_i * W / N`` (``n_i`` its supervised positions, ``N`` those of the whole
update summed over the ``W`` ranks; the ``W`` undoes DDP's gradient averaging), so the
gradient equals that of one batch holding every item of the update. Under DDP the gradient
all-reduce runs only on the last micro-batch (``no_sync`` before). A non-finite loss (or, in
fp32/bf16, a non-finite gradient norm) skips the update on every rank together;
``max_nonfinite_steps`` such updates in a row stop training.

Checkpoints and resume
----------------------
Every checkpoint holds the model, the optimizer, the step, the epoch and the position in it
(``extra["batch_in_epoch"]``), every rank's RNG state (``extra["rng"]``, so dropout continues
the same stream) and the token metadata ``extra["semantic"]`` (``s1.data.SemanticMeta``:
token rate, codebook size, EOS id, the S2 checkpoint behind the tokens), which inference
reads. The batch order depends only on ``train.seed`` and the epoch, so ``--resume`` with the
same world size continues exactly where the saved run was.

Speakers (``model.n_speakers > 0``): the speaker table is built from ``dump/manifest.tsv``
(``common.speakers``), saved in every checkpoint (``extra["speakers"]``) and must be the same
on ``--resume``. ``--init`` from a checkpoint without speakers (or with another table) starts
the speaker embedding fresh and says so in one log line.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from common import speakers as spk
from common.checkpoint import Checkpoint, CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from common.config import ConfigError, S1Config, S1TrainConfig, from_dict, to_dict
from common.dist import DistInfo, all_gather_objects, all_reduce_sum_, barrier, distributed_stage
from common.manifest import MANIFEST_NAME, ManifestError, read_manifest
from common.optim import adamw
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
from s1.concat import JOINS_NAME, item_speakers, read_joins
from s1.data import (
    S1_TRAIN_LIST,
    S1_VAL_LIST,
    SEMANTIC_JSON,
    S1Batch,
    S1DataError,
    S1Dataset,
    TokenBucketSampler,
    load_semantic_meta,
)
from s1.model import build_model
from text.symbols import SYMBOLS_MD5

VAL_BATCH = 8


def lr_at(step: int, tc: S1TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, cosine decay, constant tail."""
    if step < tc.warmup_steps:
        return tc.lr_init + (tc.learning_rate - tc.lr_init) * step / tc.warmup_steps
    if step >= tc.decay_steps:
        return tc.lr_end
    progress = (step - tc.warmup_steps) / (tc.decay_steps - tc.warmup_steps)
    return tc.lr_end + 0.5 * (1 + math.cos(math.pi * progress)) * (tc.learning_rate - tc.lr_end)


def make_optimizer(model: torch.nn.Module, tc: S1TrainConfig) -> torch.optim.AdamW:
    """AdamW (fused where it applies, ``common.optim``) with weight decay on matrices and embeddings; none on
    1-D parameters (biases, norms, alphas). ``model`` is on its training device."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return adamw([{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                 lr=lr_at(0, tc), betas=(tc.betas[0], tc.betas[1]), eps=tc.eps)


@dataclass
class StepStats:
    """Sums over one update's micro-batches on this rank (0-d fp32 tensors on the training device).

    loss_sum: summed cross-entropy over supervised positions; n_tokens: supervised positions
    (tokens + one EOS per item); hits / topk_hits: top-1 / top-k correct predictions over the
    scored positions (tokens, EOS excluded, as the accuracy is logged); n_scored: scored positions.
    """

    loss_sum: Tensor
    n_tokens: Tensor
    hits: Tensor
    topk_hits: Tensor
    n_scored: Tensor

    def stacked(self) -> Tensor:
        """``[5]``: the fields in order (for one all-reduce)."""
        return torch.stack([self.loss_sum, self.n_tokens, self.hits, self.topk_hits, self.n_scored])


def accumulate_step(model: torch.nn.Module, micro: list[S1Batch], world_size: int = 1, precision: str = "fp32",
                    top_k: int = 3, scaler: torch.amp.GradScaler | None = None) -> StepStats:
    """Forward + backward over the micro-batches of one update; gradients are left in ``.grad``.

    ``model`` is a ``Text2Semantic`` or a DDP wrapper of one (then the gradient all-reduce runs
    on the last micro-batch only). Each loss is weighted by its share of the update's supervised
    positions over all ranks, so the accumulated gradient is the gradient of the token-mean loss
    of one batch holding every item of the update (see the module docstring). The caller zeroes
    the gradients before, and clips and steps after.
    """
    if not micro:
        raise ValueError("accumulate_step: no micro-batches")
    device = micro[0].tokens.device
    n_local = sum((b.token_lens + 1).sum() for b in micro).float()  # supervised positions incl. one EOS per item
    n_total = all_reduce_sum_(n_local.reshape(1).clone())[0]
    zero = torch.zeros((), device=device)
    stats = StepStats(zero, zero, zero, zero, zero)
    for i, batch in enumerate(micro):
        last = i == len(micro) - 1
        ctx = model.no_sync() if isinstance(model, DDP) and not last else contextlib.nullcontext()
        with ctx:
            with autocast(precision, device):
                out = model(batch.phones, batch.phone_lens, batch.tokens, batch.token_lens, bert=batch.bert_rows,
                            top_k=top_k, speakers=batch.speakers)
            n_i = out.n_tokens.float()
            loss = out.loss * (n_i * world_size / n_total)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        scored = batch.token_lens.sum().float()
        stats = StepStats(loss_sum=stats.loss_sum + out.loss.detach().float() * n_i,
                          n_tokens=stats.n_tokens + n_i,
                          hits=stats.hits + out.acc.float() * scored,
                          topk_hits=stats.topk_hits + out.topk_acc.float() * scored,
                          n_scored=stats.n_scored + scored)
    return stats


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


class S1Trainer:
    """One S1 training run: setup from the command line (new run, ``--resume`` or ``--init``), ``fit``."""

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
            source = args.config or self.run_dir / "config.json"
            raise ConfigError(f"{source}: model.codebook_size is {self.cfg.model.codebook_size}, but the tokens in "
                              f"{self.dump} come from an S2 codebook of {self.meta.codebook_size} codes "
                              f"({self.dump / SEMANTIC_JSON}); set model.codebook_size to {self.meta.codebook_size}")
        tc = self.cfg.train
        self.device = info.device
        self.precision = resolve_precision(tc.precision, self.device)
        seed_everything(tc.seed + info.rank)
        self.speakers = self._speaker_table()
        self.raw = build_model(self.cfg).to(self.device)
        self.optim = make_optimizer(self.raw, tc)
        self.scaler = make_scaler(self.precision, self.device)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        if resume_from is not None:
            self._resume(resume_from)
        elif args.init:
            ckpt = load_checkpoint(args.init, stage="s1", symbols_md5=SYMBOLS_MD5, map_location=self.device)
            state, note = spk.init_state(ckpt.models["model"], ckpt.extra, self.speakers, ckpt.path)
            load_model_state(self.raw, state, ckpt.path, optional=("speaker_embedding.",))
            if note:
                self.log.info(note)
            self.log.info(f"initialised weights from {ckpt.path} (step {ckpt.step}); optimizer and step start fresh")
        self.guard = NonFiniteGuard(tc.max_nonfinite_steps)
        self.board = Board(self.run_dir, info.is_main)
        ddp_kw = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
        self.model = DDP(self.raw, **ddp_kw) if info.world_size > 1 else self.raw

    def _speaker_table(self) -> spk.SpeakerTable | None:
        """The run's speaker table (from the manifest) when the model has a speaker embedding."""
        try:
            return spk.run_speaker_table(self.cfg.model.n_speakers, self.dump / MANIFEST_NAME,
                                         self.args.config or self.run_dir / "config.json")
        except (spk.SpeakerError, ManifestError) as err:
            raise ConfigError(str(err)) from None

    def _resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path, stage="s1", symbols_md5=SYMBOLS_MD5, map_location=self.device)
        if to_dict(from_dict(S1Config, ckpt.config))["model"] != to_dict(self.cfg)["model"]:
            raise CheckpointError(f"{path}: its model config differs from the current one; resume with the run's "
                                  f"own config ({self.run_dir / 'config.json'}) or use --init to fine-tune")
        saved_sha = ckpt.extra.get("semantic", {}).get("s2_sha256")
        if saved_sha is not None and saved_sha != self.meta.s2_sha256:
            raise CheckpointError(f"{path}: this run was trained on tokens of another S2 checkpoint (sha256 "
                                  f"{saved_sha[:12]}) than the tokens now in {self.dump / SEMANTIC_JSON} "
                                  f"({self.meta.s2_sha256[:12]}); start a new run with --init to train on them")
        try:
            spk.check_resume(ckpt.extra, self.speakers, path, self.dump / MANIFEST_NAME)
        except spk.SpeakerError as err:
            raise CheckpointError(str(err)) from None
        load_model_state(self.raw, ckpt.models["model"], path)
        self.optim.load_state_dict(ckpt.optimizers["model"])
        if self.scaler is not None and ckpt.scaler:
            self.scaler.load_state_dict(ckpt.scaler)
        self.step, self.epoch = ckpt.step, ckpt.epoch
        self.batch_in_epoch = ckpt.extra.get("batch_in_epoch", 0)
        states = ckpt.extra.get("rng")
        if states is not None and len(states) == self.info.world_size:
            set_rng_state(states[self.info.rank], self.device)
        else:
            self.log.warning(f"{path}: saved by {len(states or [])} process(es), now {self.info.world_size}: "
                             "dropout masks and batch assignment will differ from an uninterrupted run")
        self.log.info(f"resuming from {path} at step {ckpt.step} (epoch {ckpt.epoch}, batch {self.batch_in_epoch})")

    def _val_dataset(self) -> S1Dataset | None:
        """The validation items, or None when the list has none (gen_filelist_s1.py --val-items 0)."""
        path = self.dump / S1_VAL_LIST
        if path.is_file() and not any(line.strip() for line in path.read_text(encoding="utf-8").splitlines()[1:]):
            self.log.info(f"{path} lists no items: training without validation")
            return None
        return S1Dataset(path, self.meta, self.cfg.model.bert_dim, speakers=self._item_speakers())

    def _item_speakers(self) -> dict[str, int] | None:
        """Item id -> speaker row for the lists of this dump (None without a speaker embedding)."""
        if self.speakers is None:
            return None
        try:
            manifest = {u.id: u.speaker for u in read_manifest(self.dump / MANIFEST_NAME)}
            return item_speakers(manifest, read_joins(self.dump / JOINS_NAME), self.speakers)
        except (spk.SpeakerError, ManifestError) as err:
            raise S1DataError(str(err)) from None

    def _loaders(self) -> tuple[DataLoader, TokenBucketSampler, S1Dataset | None]:
        tc = self.cfg.train
        train_ds = S1Dataset(self.dump / S1_TRAIN_LIST, self.meta, self.cfg.model.bert_dim,
                             speakers=self._item_speakers())
        val_ds = self._val_dataset()
        try:
            sampler = TokenBucketSampler(train_ds.lengths, tc.max_batch_tokens, tc.max_batch_size, shuffle=True,
                                         seed=tc.seed, rank=self.info.rank, world_size=self.info.world_size)
        except ValueError as err:  # e.g. items longer than the batch budget: a config/data mismatch
            raise S1DataError(f"{self.dump / S1_TRAIN_LIST}: {err}") from None
        # Its own generator: creating an iterator draws a worker seed, which must not move the global
        # RNG that dropout uses (a resumed run creates one more iterator than the original run did).
        loader = DataLoader(train_ds, batch_sampler=sampler, collate_fn=train_ds.collate, num_workers=tc.num_workers,
                            pin_memory=self.device.type == "cuda", persistent_workers=tc.num_workers > 0,
                            generator=torch.Generator().manual_seed(tc.seed))
        return loader, sampler, val_ds

    def update(self, micro: list[S1Batch]) -> Tensor | None:
        """One optimizer step over ``micro``: ``[loss_sum, n_tokens, hits, topk_hits, n_scored, grad_norm]``
        summed over ranks (grad norm as is), or None when skipped (non-finite loss or gradient)."""
        tc = self.cfg.train
        for group in self.optim.param_groups:
            group["lr"] = lr_at(self.step, tc)
        self.optim.zero_grad(set_to_none=True)
        stats = accumulate_step(self.model, micro, self.info.world_size, self.precision, tc.top_k_acc, self.scaler)
        totals = all_reduce_sum_(stats.stacked())  # the same on every rank, so every rank skips together
        if self.scaler is not None:
            self.scaler.unscale_(self.optim)
        params = [p for p in self.raw.parameters() if p.grad is not None]
        gnorm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip if tc.grad_clip > 0 else float("inf"))
        loss = totals[0] / totals[1]
        # fp16: inf gradients are the grad scaler's business (it skips the step and lowers the scale)
        checked = loss.reshape(1) if self.scaler is not None else torch.stack([loss, gnorm.to(loss)])
        if not self.guard.ok(checked, self.step):
            self.optim.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.update()
            return None
        if self.scaler is not None:
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            self.optim.step()
        return torch.cat([totals, gnorm.to(totals).reshape(1)]).detach()

    @torch.no_grad()
    def validate(self, val_ds: S1Dataset) -> dict[str, float]:
        """Teacher-forced loss and accuracy over the validation list (rank 0, unwrapped model)."""
        self.raw.eval()
        sums = torch.zeros(5, device=self.device)
        for start in range(0, len(val_ds), VAL_BATCH):
            items = [val_ds[i] for i in range(start, min(start + VAL_BATCH, len(val_ds)))]
            batch = val_ds.collate(items).to(self.device)
            with autocast(self.precision, self.device):
                out = self.raw(batch.phones, batch.phone_lens, batch.tokens, batch.token_lens, bert=batch.bert_rows,
                               top_k=self.cfg.train.top_k_acc, speakers=batch.speakers)
            n, scored = out.n_tokens.float(), batch.token_lens.sum().float()
            sums += torch.stack([out.loss.float() * n, n, out.acc.float() * scored, out.topk_acc.float() * scored,
                                 scored])
        self.raw.train()
        loss_sum, n, hits, topk_hits, scored = sums.tolist()
        k = self.cfg.train.top_k_acc
        return {"val/loss": loss_sum / max(n, 1.0), "val/acc_top1": hits / max(scored, 1.0),
                f"val/acc_top{k}": topk_hits / max(scored, 1.0)}

    def save(self) -> None:
        """Write a checkpoint (rank 0); every rank must call it (the RNG states are gathered)."""
        states = all_gather_objects(rng_state(self.device))
        if not self.info.is_main:
            return
        ckpt = Checkpoint(stage="s1", step=self.step, epoch=self.epoch, config=to_dict(self.cfg),
                          symbols_md5=SYMBOLS_MD5, models={"model": self.raw.state_dict()},
                          optimizers={"model": self.optim.state_dict()}, schedulers={},
                          scaler=self.scaler.state_dict() if self.scaler is not None else None,
                          extra={"batch_in_epoch": self.batch_in_epoch, "semantic": asdict(self.meta),
                                 "rng": states} | spk.extra_of(self.speakers))
        self.log.info(f"saved {save_checkpoint(self.run_dir, ckpt, keep=self.cfg.train.keep_ckpts)}")

    def _evaluate_and_save(self, val_ds: S1Dataset | None) -> None:
        if self.info.is_main and val_ds is not None:
            val = self.validate(val_ds)
            self.board.scalars(val, self.step)
            self.board.flush()
            self.log.info(f"step {self.step}: " + " ".join(f"{k}={v:.4f}" for k, v in val.items()))
        self.save()
        barrier()

    def _log_interval(self, sums: Tensor, n_updates: int, seconds: float) -> None:
        """Tensorboard + log line with the means over the last ``n_updates`` updates (all ranks)."""
        loss_sum, n, hits, topk_hits, scored, gnorm_sum = sums.tolist()
        k = self.cfg.train.top_k_acc
        values = {"loss/train": loss_sum / max(n, 1.0), "acc/top1": hits / max(scored, 1.0),
                  f"acc/top{k}": topk_hits / max(scored, 1.0), "grad_norm": gnorm_sum / n_updates,
                  "lr": self.optim.param_groups[0]["lr"], "throughput/tokens_per_s": n / seconds,
                  "throughput/steps_per_s": n_updates / seconds}
        self.board.scalars(values | {"train/skipped_nonfinite": self.guard.total_skipped}, self.step)
        self.log.info(f"step {self.step} epoch {self.epoch} | " + " ".join(f"{k}={v:.4g}" for k, v in values.items()))

    def fit(self) -> None:
        tc = self.cfg.train
        loader, sampler, val_ds = self._loaders()
        max_steps = self.args.max_steps or tc.max_steps or math.inf
        n_val = len(val_ds) if val_ds is not None else 0
        self.log.info(f"S1 training on {self.device} x{self.info.world_size}, precision {self.precision}, "
                      f"{len(loader.dataset)} train / {n_val} val items, {len(sampler)} batches per epoch "
                      f"per rank, accumulation {tc.grad_accum}; logs: {self.run_dir}")
        self.raw.train()
        sums, n_updates, t0 = torch.zeros(6, device=self.device), 0, time.perf_counter()
        last_saved = self.step
        done = self.step >= max_steps
        while not done and self.epoch < tc.epochs:
            sampler.set_epoch(self.epoch)
            batches = iter(loader)
            for _ in range(self.batch_in_epoch):  # mid-epoch resume: skip what the saved run consumed
                next(batches, None)
            micro: list[S1Batch] = []
            for batch in batches:
                micro.append(batch.to(self.device, non_blocking=True))
                self.batch_in_epoch += 1
                if len(micro) < tc.grad_accum and self.batch_in_epoch < len(sampler):
                    continue
                result = self.update(micro)
                micro = []
                if result is None:
                    self.log.warning(f"step {self.step}: non-finite loss or gradient, update skipped "
                                     f"({self.guard.total_skipped} skipped so far)")
                    continue
                self.step += 1
                sums += result
                n_updates += 1
                if self.step % tc.log_interval == 0:
                    self._log_interval(sums, n_updates, time.perf_counter() - t0)
                    sums, n_updates, t0 = torch.zeros_like(sums), 0, time.perf_counter()
                if self.step % tc.eval_interval == 0 or self.step >= max_steps:
                    t_eval = time.perf_counter()
                    self._evaluate_and_save(val_ds)
                    t0 += time.perf_counter() - t_eval  # throughput counts training time only
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
    """Train under ``distributed_stage``: a dead or hung rank is one line, the process group is always torn down."""
    with distributed_stage("train_s1.py", args.device, timeout_s=args.dist_timeout) as info:
        S1Trainer(args, info).fit()
        barrier()  # ranks leave together: gloo can abort a rank that tears down while its peer still works
