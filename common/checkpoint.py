"""One checkpoint format for both stages: atomic writes, keep-last-N, latest lookup.

A checkpoint is a ``torch.save`` dict::

    {"format": "ar-vits", "version": 1, "stage": "s1" | "s2", "step": int, "epoch": int,
     "config": <resolved config dict>, "symbols_md5": str,
     "models": {name: state_dict}, "optimizers": {name: state_dict},
     "schedulers": {name: state_dict}, "scaler": state_dict | None, "extra": dict}

Files are ``<run_dir>/ckpt_<step:08d>.pt``, written through a temp file and an atomic
rename, so a process killed while saving (or a full disk) leaves the previous
checkpoint as the latest loadable one. A checkpoint damaged later (cut short by a copy,
bit rot) is passed over: a run directory resolves to its newest *intact* checkpoint
(``newest_intact_checkpoint``, every zip member's CRC checked), with one line per damaged
file; ``--resume`` also renames the damaged file to ``<name>.damaged`` (kept, never deleted)
so that the new checkpoints of the resumed run do not rotate around it. Only plain containers and tensors are stored, so
loading uses ``weights_only=True`` (``common.safe_load``: a file whose pickle would run code
is refused and nothing of it runs).

``load_checkpoint`` also accepts GPT-SoVITS v1 files (S1 ``.ckpt``, S2 generator ``.pth``),
recognised by their content and converted in memory to this format (``common.gsv1``), so
every script that takes a checkpoint takes them too.
"""

from __future__ import annotations

import os
import re
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from common.fileio import atomic_write_with, remove_stale_temps

FORMAT = "ar-vits"
VERSION = 1
_NAME = re.compile(r"^ckpt_(\d{8,})\.pt$")
DAMAGED = ".damaged"


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit; the message names the file."""


@dataclass
class Checkpoint:
    stage: str
    step: int
    epoch: int
    config: dict
    symbols_md5: str
    models: dict[str, dict] = field(default_factory=dict)
    optimizers: dict[str, dict] = field(default_factory=dict)
    schedulers: dict[str, dict] = field(default_factory=dict)
    scaler: dict | None = None
    extra: dict = field(default_factory=dict)
    path: Path | None = None

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "stage": self.stage, "step": self.step,
                "epoch": self.epoch, "config": self.config, "symbols_md5": self.symbols_md5,
                "models": self.models, "optimizers": self.optimizers, "schedulers": self.schedulers,
                "scaler": self.scaler, "extra": self.extra}


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / f"ckpt_{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Finished checkpoints in ``run_dir``, oldest step first (temp files never match)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def checkpoint_damage(path: Path) -> str | None:
    """Why the file at ``path`` is not a whole checkpoint container (cut short, a failed CRC), or None.

    Reads the file once without unpickling anything (much cheaper than loading it).
    """
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return f"member {bad} fails its CRC check" if bad else None


def newest_intact_checkpoint(run_dir: str | Path, quarantine: bool = False,
                             report: Callable[[str], None] | None = None) -> Path | None:
    """The newest checkpoint in ``run_dir`` that is not damaged (``checkpoint_damage``), or None.

    Each damaged newer one is reported in one line (``report``, default: stderr); with
    ``quarantine`` it is renamed to ``<name>.damaged`` first, out of the ``ckpt_*.pt`` names.
    """
    report = report or _to_stderr
    damaged: list[str] = []
    for path in reversed(list_checkpoints(run_dir)):
        reason = checkpoint_damage(path)
        if reason is None:
            for note in damaged:
                report(f"{note}; using {path.name} instead")
            return path
        note = f"{path}: damaged checkpoint ({reason})"
        if quarantine:
            kept = path.with_name(path.name + DAMAGED)
            if kept.exists():
                kept = path.with_name(f"{path.name}.{os.getpid()}{DAMAGED}")
            os.replace(path, kept)
            note += f", kept as {kept.name}"
        damaged.append(note)
    for note in damaged:
        report(note)
    return None


def save_checkpoint(run_dir: str | Path, ckpt: Checkpoint, keep: int = 3) -> Path:
    """Write ``ckpt`` atomically as ``ckpt_<step>.pt``, then delete all but the newest ``keep``."""
    run_dir = Path(run_dir)
    path = checkpoint_path(run_dir, ckpt.step)
    payload = ckpt.to_dict()
    atomic_write_with(path, lambda f: torch.save(payload, f))
    remove_stale_temps(run_dir)
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, stage: str | None = None, symbols_md5: str | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint, checking its format, stage and symbol table.

    ``path`` may be a file or a run directory (its newest intact checkpoint is used).
    """
    path = Path(path)
    if path.is_dir():
        latest = newest_intact_checkpoint(path)
        if latest is None:
            n = len(list_checkpoints(path))
            raise CheckpointError(f"{path}: no checkpoint (ckpt_*.pt) in this directory" if n == 0 else
                                  f"{path}: all {n} checkpoint(s) in this directory are damaged")
        path = latest
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    raw = read_torch_file(path, map_location)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        from common.gsv1.files import checkpoint_from_v1, detect_v1

        v1_kind = detect_v1(raw)
        if v1_kind is None:
            raise CheckpointError(f"{path}: neither an AR-VITS checkpoint (no format tag {FORMAT!r}) nor a "
                                  "GPT-SoVITS v1 S1/S2 file")
        ckpt = checkpoint_from_v1(raw, path, v1_kind)
        raw = ckpt.to_dict()
    if raw.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {raw.get('version')} is not supported (need {VERSION})")
    if stage is not None and raw["stage"] != stage:
        raise CheckpointError(f"{path}: this is an {raw['stage'].upper()} checkpoint, but an {stage.upper()} "
                              "checkpoint is needed here")
    if symbols_md5 is not None and raw["symbols_md5"] != symbols_md5:
        raise CheckpointError(f"{path}: trained with a different phoneme symbol table (md5 {raw['symbols_md5']}, "
                              f"this code has {symbols_md5}); the text front end does not match this checkpoint")
    return Checkpoint(stage=raw["stage"], step=raw["step"], epoch=raw["epoch"], config=raw["config"],
                      symbols_md5=raw["symbols_md5"], models=raw["models"], optimizers=raw["optimizers"],
                      schedulers=raw["schedulers"], scaler=raw["scaler"], extra=raw["extra"], path=path)


def read_torch_file(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """The object in a torch file, loaded safely; every failure is a one-line ``CheckpointError``."""
    from common.safe_load import UnsafeFileError, safe_load

    try:
        return safe_load(path, map_location=map_location)
    except UnsafeFileError as e:
        raise CheckpointError(str(e)) from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None


def load_discriminator_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """S2 discriminator weights (our names, fp32) from a GPT-SoVITS v1 ``s2D*.pth`` or an S2 checkpoint."""
    path = Path(path)
    if path.is_file():
        raw = read_torch_file(path, map_location)
        from common.gsv1.files import V1_S2D, detect_v1, discriminator_from_v1

        if detect_v1(raw) == V1_S2D:
            return discriminator_from_v1(raw, path)[0]
    ckpt = load_checkpoint(path, stage="s2", map_location=map_location)
    if "discriminator" not in ckpt.models:
        raise CheckpointError(f"{ckpt.path}: holds no discriminator weights")
    return ckpt.models["discriminator"]


def load_model_state(model: torch.nn.Module, state: dict[str, Any], source: str | Path,
                     strict: bool = True, optional: tuple[str, ...] = ()) -> None:
    """``model.load_state_dict`` with a readable error listing missing, unexpected and mis-shaped keys.

    Keys starting with one of the ``optional`` prefixes may be missing from ``state`` (the
    model keeps its own values for them), e.g. ``enc_q.`` for S2 weights exported without
    the posterior encoder.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state and not (optional and k.startswith(optional))]
    unexpected = [k for k in state if k not in own]
    shape = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    problems = []
    if shape:
        problems.append(f"{len(shape)} shape mismatch(es): " + "; ".join(shape[:5]))
    if strict and missing:
        problems.append(f"{len(missing)} missing key(s): " + ", ".join(missing[:5]))
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(unexpected[:5]))
    if problems:
        raise CheckpointError(f"{source}: weights do not fit this model ({' | '.join(problems)}). "
                              "Was the checkpoint trained with a different config?")
    model.load_state_dict(state, strict=strict and not any(k not in state for k in own))
