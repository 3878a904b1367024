"""Training faults, in process on the real trainers (tiny configs, CPU):

- a non-finite loss is detected, the step is skipped (no optimizer update), counted in the log and in
  tensorboard (``train/skipped_nonfinite``), and training goes on;
- ``train.max_nonfinite_steps`` non-finite steps in a row stop the run with a clear message (no
  traceback), for S1 and for S2 (whose generator loss can be non-finite while the discriminator's is fine);
- a disk that fills up while a checkpoint is written (a failing writer) stops the run with a message
  naming the checkpoint file, leaves the previous checkpoint intact and loadable, leaves no temp
  file, and ``--resume`` continues from the previous checkpoint.

NaN *features* in the data are a bad input, refused with the file's name: tests/test_bad_inputs.py.
The bare checkpoint writer is tested in tests/test_checkpoint.py (failing writer, kill during write).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import s2.trainer
import train_s1
import train_s2
from common.checkpoint import Checkpoint, list_checkpoints, load_checkpoint
from common.training import NonFiniteGuard, TrainingError, parse_training_args, training_arg_parser
from s1.model import Text2Semantic
from tests.pipeline import S1Dump, S2Dump, read_scalars, write_config
from tests.small_dump import small_s2_dump

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

NAN = float("nan")


@pytest.fixture(scope="module")
def s2_small(s2_dump: S2Dump, tmp_path_factory: pytest.TempPathFactory) -> S2Dump:
    """6 training items (3 batches of 2), 1 validation item."""
    return small_s2_dump(s2_dump, tmp_path_factory.mktemp("s2_small") / "dump")


def train(stage: str, dump: Path, run_dir: Path, config: Path | None, steps: int, *extra: str) -> None:
    """``train_<stage>.main`` with the command line a user would type (in this process)."""
    argv = ["-m", str(run_dir), "--dump", str(dump), "--device", "cpu", "--max-steps", str(steps), *extra]
    argv += ["-c", str(config)] if config else []
    args = parse_training_args(training_arg_parser("", stage, ""), argv)
    (train_s1 if stage == "s1" else train_s2).main(args)


def adam_steps(ckpt: Checkpoint, name: str) -> set[int]:
    return {int(s["step"]) for s in ckpt.optimizers[name]["state"].values()}


def log_of(run_dir: Path) -> str:
    return (run_dir / "train.log").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- the guard


def test_guard_counts_resets_and_stops() -> None:
    guard = NonFiniteGuard(max_consecutive=4)
    pattern = [1.0, NAN, math.inf, 2.0, NAN, NAN]
    assert [guard.ok(torch.tensor(v), step=i) for i, v in enumerate(pattern)] == [
        True, False, False, True, False, False]
    assert (guard.consecutive, guard.total_skipped) == (2, 4)
    assert guard.ok(torch.tensor([1.0, NAN]), step=6) is False  # any non-finite element counts
    with pytest.raises(TrainingError, match=r"non-finite for 4 steps in a row \(at step 7\)"):
        guard.ok(torch.tensor(-math.inf), step=7)


# ----------------------------------------------------------------------------- S1


def nan_s1_losses(monkeypatch: pytest.MonkeyPatch, bad: Callable[[int], bool]) -> list[int]:
    """Make the S1 training loss NaN on the training forwards (1-based) for which ``bad(n)``."""
    real = Text2Semantic.forward
    counter = itertools.count(1)
    poisoned: list[int] = []

    def forward(self: Text2Semantic, *args: object, **kwargs: object):
        out = real(self, *args, **kwargs)
        if self.training:
            n = next(counter)
            if bad(n):
                poisoned.append(n)
                out.loss = out.loss * NAN
        return out

    monkeypatch.setattr(Text2Semantic, "forward", forward)
    return poisoned


def test_s1_nonfinite_steps_are_skipped_and_counted(s1_dump: S1Dump, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "s1.json", base=s1_dump.config,
                          train={"log_interval": 1, "eval_interval": 100, "max_nonfinite_steps": 3})
    poisoned = nan_s1_losses(monkeypatch, lambda n: n in (3, 4))
    train("s1", s1_dump.dump, run_dir, config, 5)
    assert poisoned == [3, 4]
    ckpt = load_checkpoint(run_dir, stage="s1")
    assert ckpt.step == 5 and adam_steps(ckpt, "model") == {5}  # 7 updates tried, 2 skipped: 5 optimizer steps
    log = log_of(run_dir)
    assert "step 2: non-finite loss" in log and "(1 skipped so far)" in log and "(2 skipped so far)" in log
    skipped = dict(read_scalars(run_dir)["train/skipped_nonfinite"])
    assert (skipped[2], skipped[3], skipped[5]) == (0, 2, 2)
    assert all(torch.isfinite(v).all() for v in ckpt.models["model"].values())


def test_s1_stops_after_max_nonfinite_steps(s1_dump: S1Dump, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "s1.json", base=s1_dump.config,
                          train={"eval_interval": 2, "max_nonfinite_steps": 3})
    poisoned = nan_s1_losses(monkeypatch, lambda n: n > 2)
    with pytest.raises(SystemExit) as stop:
        train("s1", s1_dump.dump, run_dir, config, 50)
    assert poisoned == [3, 4, 5]
    assert str(stop.value).startswith("train_s1.py: the loss was non-finite for 3 steps in a row (at step 2)")
    assert load_checkpoint(run_dir, stage="s1").step == 2  # the last good checkpoint is kept


# ----------------------------------------------------------------------------- S2


def nan_s2_mel_losses(monkeypatch: pytest.MonkeyPatch, bad: Callable[[int], bool]) -> list[int]:
    """Make the S2 generator loss NaN (through its mel term) on the training steps (1-based) for which
    ``bad(n)``; the discriminator loss of those steps stays finite."""
    real = s2.trainer.mel_loss
    counter = itertools.count(1)
    poisoned: list[int] = []

    def mel_loss(*args: torch.Tensor) -> torch.Tensor:
        n = next(counter)
        loss = real(*args)
        if bad(n):
            poisoned.append(n)
            loss = loss * NAN
        return loss

    monkeypatch.setattr(s2.trainer, "mel_loss", mel_loss)
    return poisoned


def test_s2_nonfinite_steps_are_skipped_and_counted(s2_small: S2Dump, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "s2.json", train={"batch_size": 2, "log_interval": 1, "eval_interval": 100,
                                                       "max_nonfinite_steps": 3})
    poisoned = nan_s2_mel_losses(monkeypatch, lambda n: n in (2, 3))
    train("s2", s2_small.dump, run_dir, config, 3)
    assert poisoned == [2, 3]
    ckpt = load_checkpoint(run_dir, stage="s2")
    assert ckpt.step == 3 and adam_steps(ckpt, "generator") == {3}  # the two skipped steps did not update G
    log = log_of(run_dir)
    assert "step 1: non-finite loss" in log and "(2 skipped so far)" in log
    assert dict(read_scalars(run_dir)["train/skipped_nonfinite"])[3] == 2
    assert all(torch.isfinite(v).all() for v in ckpt.models["generator"].values() if v.is_floating_point())


def test_s2_stops_after_max_nonfinite_steps(s2_small: S2Dump, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The generator loss is NaN at every step while the discriminator's is finite: the run must stop after
    3 such steps, not count each finite discriminator loss as a recovery and go on forever (the run is
    limited to 2 epochs of 3 batches, so such a bug ends it without the error)."""
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "s2.json", train={"batch_size": 2, "epochs": 2, "max_nonfinite_steps": 3})
    poisoned = nan_s2_mel_losses(monkeypatch, lambda n: True)
    with pytest.raises(SystemExit) as stop:
        train("s2", s2_small.dump, run_dir, config, 50)
    assert "the loss was non-finite for 3 steps in a row (at step 0)" in str(stop.value)
    assert str(stop.value).startswith("train_s2")
    assert poisoned == [1, 2, 3]
    assert not list_checkpoints(run_dir)


# ----------------------------------------------------------------------------- disk full while saving


def fail_second_checkpoint_write(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``torch.save`` writes the first checkpoint, then fails like a full disk after writing a few bytes."""
    real = torch.save
    calls: list[int] = []

    def save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            return real(obj, f, *args, **kwargs)
        f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save)
    return calls


@pytest.mark.parametrize("stage", ["s1", "s2"])
def test_disk_full_while_saving_keeps_the_previous_checkpoint(stage: str, s1_dump: S1Dump, s2_small: S2Dump,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    if stage == "s1":
        dump = s1_dump.dump
        config = write_config(tmp_path / "c.json", base=s1_dump.config, train={"eval_interval": 2})
    else:
        dump = s2_small.dump
        config = write_config(tmp_path / "c.json", train={"batch_size": 2, "eval_interval": 1})
    interval = 2 if stage == "s1" else 1
    calls = fail_second_checkpoint_write(monkeypatch)
    with pytest.raises(SystemExit) as stop:
        train(stage, dump, run_dir, config, 4 * interval)
    monkeypatch.undo()
    assert len(calls) == 2
    message = str(stop.value)
    assert message.startswith(f"train_{stage}") and "No space left on device" in message
    assert f"ckpt_{2 * interval:08d}.pt" in message, message  # names the file it could not write
    assert [p.name for p in list_checkpoints(run_dir)] == [f"ckpt_{interval:08d}.pt"]
    assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name]
    assert load_checkpoint(run_dir, stage=stage).step == interval

    train(stage, dump, run_dir, None, 3 * interval, "--resume")
    assert "resuming from" in log_of(run_dir) and f"at step {interval} " in log_of(run_dir)
    assert load_checkpoint(run_dir, stage=stage).step == 3 * interval
