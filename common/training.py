"""Pieces shared by the two training scripts: precision, logging, non-finite guard, seeding.

Device and precision are chosen once (``resolve_precision``), one autocast context is used
for every forward (``autocast``), and a grad scaler exists only for fp16.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import random
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from common.script import finite_float


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. the loss keeps being non-finite)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' → bf16 on a CUDA device that supports it, else fp32; half precisions on CPU → fp32."""
    if device.type == "cuda":
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    return "fp32"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def grad_norm(params: Iterable[torch.nn.Parameter]) -> float:
    """Total L2 norm of the gradients (for logging; does not clip)."""
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


class NonFiniteGuard:
    """Counts steps whose loss is not finite; they are skipped by the caller.

    Raises ``TrainingError`` after ``max_consecutive`` non-finite steps in a row.
    """

    def __init__(self, max_consecutive: int) -> None:
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total_skipped = 0

    def ok(self, loss: torch.Tensor, step: int) -> bool:
        if bool(torch.isfinite(loss.detach()).all()):
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.total_skipped += 1
        if self.consecutive >= self.max_consecutive:
            raise TrainingError(
                f"the loss was non-finite for {self.consecutive} steps in a row (at step {step}); stopping. "
                "Lower the learning rate, use precision fp32/bf16 instead of fp16, or check the data for NaN features.")
        return False


def setup_logging(run_dir: Path | None, is_main: bool, name: str) -> logging.Logger:
    """A logger printing to stderr on rank 0 and appending to ``<run_dir>/train.log``."""
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if run_dir is not None and is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


class Board:
    """Tensorboard writer on rank 0; every method is a no-op on other ranks."""

    def __init__(self, run_dir: Path, is_main: bool) -> None:
        self.writer = None
        if is_main:
            from torch.utils.tensorboard import SummaryWriter

            from common.checkpoint import latest_checkpoint

            # resumed: hide the events a killed run logged after the checkpoint it is resumed from (those
            # of the checkpoint's own step were logged before it was saved, and stay)
            latest = latest_checkpoint(run_dir)
            purge = _step_of(latest) + 1 if latest is not None else None
            self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                if v is not None and math.isfinite(float(v)):
                    self.writer.add_scalar(k, float(v), step)

    def image(self, tag: str, img_hwc: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, img_hwc, step, dataformats="HWC")

    def audio(self, tag: str, wav: torch.Tensor, step: int, sample_rate: int) -> None:
        if self.writer is not None:
            self.writer.add_audio(tag, wav.detach().float().clamp(-1, 1).cpu().reshape(1, -1), step,
                                  sample_rate=sample_rate)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def spectrogram_image(spec: np.ndarray) -> np.ndarray:
    """A [C, T] log-mel matrix → an [C, T, 3] uint8 image (low frequencies at the bottom), no matplotlib needed."""
    lo, hi = float(np.min(spec)), float(np.max(spec))
    norm = (spec - lo) / (hi - lo + 1e-8)
    norm = norm[::-1]
    # a simple perceptual colour ramp: dark blue → magenta → yellow
    r = np.clip(1.5 * norm, 0, 1)
    g = np.clip(2.0 * norm - 1.0, 0, 1)
    b = np.clip(0.6 - np.abs(norm - 0.4) * 1.5, 0, 1) + 0.2 * (1 - norm)
    return (np.stack([r, g, np.clip(b, 0, 1)], axis=-1) * 255).astype(np.uint8)


def check_run_dir(run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from, enforcing the run-directory rules.

    ``--resume`` with no checkpoint is an error, and resumes from the newest intact checkpoint
    (a damaged newer one is renamed ``*.damaged`` with a message); a fresh run into a directory
    that already holds checkpoints is refused (nothing is overwritten by accident).
    """
    from common.checkpoint import CheckpointError, latest_checkpoint, newest_intact_checkpoint
    from common.dist import rank

    latest = latest_checkpoint(run_dir)
    if resume and latest is None:
        raise CheckpointError(f"{run_dir}: --resume given but there is no checkpoint to resume from "
                              "(start without --resume for a fresh run)")
    if resume:  # a damaged newest checkpoint: resume from the newest intact one (rank 0 sets the damaged aside)
        latest = newest_intact_checkpoint(run_dir, quarantine=rank() == 0)
        if latest is None:
            raise CheckpointError(f"{run_dir}: --resume given but every checkpoint in it is damaged (kept as "
                                  "*.damaged); start a fresh run, or --init from a good copy")
    if not resume and latest is not None:
        raise CheckpointError(f"{run_dir} already holds checkpoints; pass --resume to continue that run, "
                              "or choose another -m directory")
    return latest if resume else None


def _step_of(ckpt: Path) -> int:
    return int(ckpt.stem.split("_")[1])


def resume_hint(script: str, run_dir: Path) -> str:
    """What an interrupted run leaves: the checkpoint to continue from and the command, or that there is none."""
    from common.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    if latest is None:
        return f"no checkpoint was saved in {run_dir}; start again (nothing to resume)"
    return (f"the latest checkpoint is {latest} (step {_step_of(latest)}); continue with: "
            f"python {script} -m {run_dir} --resume")


def _tree(run_dir: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in run_dir.rglob("*") if p.is_file()} if run_dir.is_dir() else {}


@contextlib.contextmanager
def tidy_run_dir(run_dir: Path, fresh: bool, is_main: bool = True) -> Iterator[None]:
    """The run directory's hygiene around a training run (rank 0 only; a no-op elsewhere).

    Before: temp files of killed writers are removed, and a fresh run into a directory whose
    earlier run was killed before its first checkpoint removes that run's ``train.log``, ``tb/``
    and ``config.json`` (so two runs' logs never mix); one line each. After a failure or Ctrl-C
    before this run saved a checkpoint: what the run created is removed and a ``config.json`` or
    ``train.log`` it changed is put back, so a failed start (bad config, bad path) leaves the
    directory as it was. Once a checkpoint exists everything is kept.
    """
    from common.checkpoint import DAMAGED, list_checkpoints
    from common.fileio import remove_stale_temps

    if not is_main:
        yield
        return
    remove_stale_temps(run_dir, report=say)
    leftovers = [run_dir / n for n in ("train.log", "tb", "config.json") if (run_dir / n).exists()]
    if fresh and _earlier_run(run_dir) and not list_checkpoints(run_dir) and not list(run_dir.glob(f"ckpt_*{DAMAGED}")):
        for p in leftovers:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        say(f"{run_dir}: removed {', '.join(p.name for p in leftovers)} of an earlier run that saved no checkpoint")
    existed = run_dir.is_dir()
    before = _tree(run_dir)
    ckpts_before = set(list_checkpoints(run_dir))
    config = run_dir / "config.json"
    config_bytes = config.read_bytes() if config.is_file() else None
    try:
        yield
    except BaseException:
        if not set(list_checkpoints(run_dir)) - ckpts_before:
            _undo(run_dir, existed, before, config, config_bytes)
        raise


def _earlier_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds the files of an earlier training run (its config.json is a stage config),
    so that a folder of other files given as ``-m`` is never cleaned."""
    import json

    try:
        saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and "model" in saved and set(saved) <= {"data", "model", "train", "inference"}


def say(line: str) -> None:
    """One message line on stderr (before the run's logger exists)."""
    print(line, file=sys.stderr, flush=True)


def _undo(run_dir: Path, existed: bool, before: dict[Path, int], config: Path, config_bytes: bytes | None) -> None:
    """Put ``run_dir`` back as ``before`` (file sizes) said, as far as this run changed it."""
    from common.checkpoint import DAMAGED

    for p in sorted(run_dir.rglob("*"), key=lambda q: len(q.parts), reverse=True) if run_dir.is_dir() else []:
        if p.name.endswith(DAMAGED):
            continue  # a damaged checkpoint set aside by --resume is kept, whatever happens
        if p.is_file() and p not in before:
            p.unlink()
        elif p.is_file() and p.name == "train.log" and p.stat().st_size > before[p]:
            with open(p, "r+b") as f:
                f.truncate(before[p])
        elif p.is_dir() and not any(p.iterdir()) and not any(q.is_relative_to(p) for q in before):
            p.rmdir()
    if config_bytes is not None and (not config.is_file() or config.read_bytes() != config_bytes):
        from common.fileio import atomic_write_bytes

        atomic_write_bytes(config, config_bytes)
    if not existed and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


def load_run_config(config: str | None, run_dir: Path, resume: bool, cls: type, is_main: bool, script: str):
    """The config of a run: ``-c FILE``, or the run's saved config.json when resuming without ``-c``.

    Rank 0 writes the resolved config into the run directory.
    """
    from common.config import ConfigError, load_config, save_config

    saved = run_dir / "config.json"
    if config is None:
        if not resume:
            raise SystemExit(f"{script}: -c/--config is required for a new run")
        if not saved.is_file():
            raise ConfigError(f"{run_dir}: --resume without -c needs {saved}")
        config = saved
    cfg = load_config(config, cls)
    if resume and saved.is_file() and Path(config).resolve() != saved.resolve():
        _check_same_model(cfg, saved, config, cls)  # before config.json is replaced by the new one
    if is_main:
        save_config(cfg, saved)
    return cfg


def _check_same_model(cfg: object, saved: Path, config: str | Path, cls: type) -> None:
    """Refuse to resume a run with ``-c`` of another model (its config.json would be overwritten first)."""
    from common.config import ConfigError, load_config, to_dict

    try:
        old = load_config(saved, cls)
    except ConfigError:  # an unreadable saved config is simply replaced; the checkpoint check still applies
        return
    if to_dict(old)["model"] != to_dict(cfg)["model"]:
        raise ConfigError(f"{config}: its model section differs from the run's {saved}; resume with the run's "
                          "own config (--resume without -c) or start a new run with --init to fine-tune")


def run_training(script: str, run: Callable[[argparse.Namespace], None], args: argparse.Namespace,
                 errors: tuple[type[Exception], ...] = ()) -> None:
    """The boundary of train_s1.py / train_s2.py around the trainer's ``run(args)``.

    The run directory (``-m``) is checked before any work (``check_output_path``); the directory's
    hygiene is ``tidy_run_dir``; Ctrl-C prints one line naming the checkpoint to continue from and
    exits with 130; ``errors`` (the user errors of the stage), an unavailable ``--device`` and
    ``OSError`` exit with one line ``<script>: <message>`` (status 1).
    """
    from common.dist import DeviceError
    from common.fileio import OutputPathError, check_output_path
    from common.script import exit_on_interrupt

    run_dir = Path(args.model_dir)
    try:
        check_output_path(run_dir, directory=True, what="-m")
    except OutputPathError as err:
        raise SystemExit(f"{script}: {err}") from None
    is_main = int(os.environ.get("RANK", "0")) == 0
    with exit_on_interrupt(script, lambda: resume_hint(script, run_dir)), \
            tidy_run_dir(run_dir, fresh=not args.resume, is_main=is_main):
        try:
            run(args)
        except (*errors, DeviceError, OSError) as err:
            raise SystemExit(f"{script}: {err}") from None


def training_arg_parser(doc: str, stage: str, data_files: str) -> argparse.ArgumentParser:
    """The command line shared by train_s1.py and train_s2.py."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", help=f"{stage.upper()} JSON config (required for a new run; --resume without "
                   "-c reuses the run's own config.json)")
    p.add_argument("-m", "--model-dir", default=f"logs/{stage}", help="run directory for checkpoints and logs")
    p.add_argument("--dump", default="dump", help=f"data directory holding {data_files}")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the run directory")
    p.add_argument("--init", help=f"fine-tune: start from this {stage.upper()} checkpoint's weights (file or run "
                   "directory, or a GPT-SoVITS v1 file); optimizer and step start fresh")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps in total (0: the config's)")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA if available, else CPU)")
    p.add_argument("--dist-timeout", type=finite_float, default=600.0,
                   help="seconds before a hung process-group start or collective fails instead of waiting forever")
    return p


def parse_training_args(p: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    args = p.parse_args(argv)
    if args.resume and args.init:
        p.error("--resume and --init exclude each other")
    return args
