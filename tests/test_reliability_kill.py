"""Kill at any point: SIGKILL training runs and extraction stages at seeded random moments, then check
that what they leave behind is always usable and that a rerun finishes the job.

Training (S2 and S1, the real scripts as subprocesses, a checkpoint every step or two):

- killed while a checkpoint's temp file is being written, and at random moments after a resume:
  every finished checkpoint loads, the latest one is the resume point, the temp file of the dead
  writer never counts; ``--resume`` logs "resuming from <latest> at step X" with X its step,
  and a trainer built with ``--resume`` holds exactly the checkpoint's weights, optimizer and
  step; the last resume finishes at the requested total step count.
- S1 killed before its first checkpoint: ``--resume`` is a clear error, a fresh start works.

(Elsewhere: a bare ``save_checkpoint`` writer killed mid-write,
tests/test_checkpoint.py::test_kill_during_write_leaves_previous_loadable; --resume with nothing to
resume, tests/test_train_s1.py and tests/test_train_s2.py.)

Extraction: extract_ssl_s2.py killed after some features exist, then rerun: finished files are
untouched (bytes and mtime), the others are made, no temp file is left or counted.
extract_vq_s1.py killed at random moments: semantic.tsv/.json are either the previous ones or
complete (never partial), and the rerun gives the same tokens as an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import extract_ssl_s2
import extract_vq_s1
from common.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from common.dist import DistInfo
from common.fileio import TMP_MARK
from common.manifest import MANIFEST_NAME, read_manifest, write_manifest
from common.training import training_arg_parser
from modules.ssl import load_features
from s1.data import SEMANTIC_JSON, SEMANTIC_TSV, read_semantic_tsv, write_semantic_tsv
from tests.pipeline import REPO, S1Dump, S2Dump, script_env, write_config
from tests.small_dump import small_s2_dump, view_s1_dump

SEED = 20240611
CPU = DistInfo(0, 0, 1, torch.device("cpu"))


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, as in a terminal. An ignored SIGINT is inherited
    across exec and Python then installs no KeyboardInterrupt handler: pytest started as ``pytest &`` from a
    non-interactive shell (which ignores SIGINT in such jobs) made the Ctrl-C tests' children run to the end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """A pipeline script running in the background, its output going to a file we can poll."""

    def __init__(self, script: str, args: list[object], log: Path):
        self.log = log
        with open(log, "w", encoding="utf-8") as out:
            self.proc = subprocess.Popen([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO,
                                         env=script_env(), stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=_default_sigint)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, pattern: str, timeout: float = 180) -> re.Match:
        """Poll the output until ``pattern`` (a regex) shows up; fail if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output())
            if found:
                return found
            if self.proc.poll() is not None:
                pytest.fail(f"exited ({self.proc.returncode}) before {pattern!r} appeared:\n{self.output()[-3000:]}")
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"{pattern!r} did not appear within {timeout} s:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL (no cleanup handlers run), then reap."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def finish(self, timeout: float = 300) -> str:
        self.proc.wait(timeout=timeout)
        assert self.proc.returncode == 0, self.output()[-4000:]
        return self.output()


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TMP_MARK in p.name)


def kill_during_checkpoint_write(proc: Proc, run_dir: Path, timeout: float = 180) -> None:
    """SIGKILL ``proc`` as soon as a checkpoint temp file appears in ``run_dir`` next to a finished checkpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run_dir.is_dir():
            with os.scandir(run_dir) as entries:
                names = [e.name for e in entries]
            writing = any(n.startswith(".ckpt_") and TMP_MARK in n for n in names)
            if writing and any(n.startswith("ckpt_") for n in names):
                proc.kill()
                return
        if proc.proc.poll() is not None:
            pytest.fail(f"the run ended before writing a checkpoint:\n{proc.output()[-3000:]}")
        time.sleep(0.0005)
    proc.kill()
    pytest.fail("no checkpoint write was seen")


def same_state(a: object, b: object, where: str = "") -> None:
    """Recursive equality of (optimizer / model) state dicts: tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a.cpu(), b.cpu()), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)[:5]} vs {sorted(b)[:5]}"
        for k in a:
            same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def check_run_after_kill(run_dir: Path, stage: str) -> int:
    """Every finished checkpoint loads; return the latest one's step (the resume point)."""
    ckpts = list_checkpoints(run_dir)
    assert ckpts, f"no finished checkpoint in {run_dir}: {sorted(p.name for p in run_dir.iterdir())}"
    for path in ckpts:
        ckpt = load_checkpoint(path, stage=stage)
        assert path.name == f"ckpt_{ckpt.step:08d}.pt"
    latest = load_checkpoint(run_dir, stage=stage)
    assert latest.path == ckpts[-1]
    return latest.step


def resume_args(stage: str, run_dir: Path, dump: Path) -> object:
    parser = training_arg_parser("", stage, "")
    return parser.parse_args(["-m", str(run_dir), "--dump", str(dump), "--resume", "--device", "cpu"])


def close_trainer(trainer: object) -> None:
    trainer.board.close()
    for handler in trainer.log.handlers:
        handler.close()


def check_s2_resume_state(run_dir: Path, dump: Path) -> None:
    """A trainer built with --resume starts from exactly the latest checkpoint."""
    from s2.trainer import S2Trainer

    ckpt = load_checkpoint(run_dir, stage="s2")
    trainer = S2Trainer(resume_args("s2", run_dir, dump), CPU)
    try:
        assert trainer.state.step == ckpt.step and trainer.state.epoch == ckpt.epoch
        same_state(trainer.optim_g.state_dict(), ckpt.optimizers["generator"], "optim_g")
        same_state(trainer.optim_d.state_dict(), ckpt.optimizers["discriminator"], "optim_d")
        same_state(trainer.net_g.state_dict(), ckpt.models["generator"], "generator")
        same_state(trainer.net_d.state_dict(), ckpt.models["discriminator"], "discriminator")
    finally:
        close_trainer(trainer)


def check_s1_resume_state(run_dir: Path, dump: Path) -> None:
    from s1.trainer import S1Trainer

    ckpt = load_checkpoint(run_dir, stage="s1")
    trainer = S1Trainer(resume_args("s1", run_dir, dump), CPU)
    try:
        assert trainer.step == ckpt.step and trainer.epoch == ckpt.epoch
        same_state(trainer.optim.state_dict(), ckpt.optimizers["model"], "optim")
        same_state(trainer.raw.state_dict(), ckpt.models["model"], "model")
    finally:
        close_trainer(trainer)


def train_cmd(run_dir: Path, dump: Path, steps: int, config: Path | None = None) -> list[object]:
    args: list[object] = ["-m", run_dir, "--dump", dump, "--device", "cpu", "--max-steps", steps]
    return args + (["-c", config] if config else ["--resume"])


def kill_resume_cycle(script: str, stage: str, run_dir: Path, dump: Path, config: Path, tmp: Path,
                      n_random_kills: int, delay: tuple[float, float], check_state) -> None:
    """Fresh run killed mid checkpoint write, then ``n_random_kills`` resumes killed at random moments,
    then a resume that runs to the end; the checks of the module docstring after every kill."""
    rng = random.Random(SEED)
    proc = Proc(script, train_cmd(run_dir, dump, 10_000, config), tmp / "run0.log")
    kill_during_checkpoint_write(proc, run_dir)
    for attempt in range(3):  # a kill that comes just after the rename is fine too, but aim for one inside
        if temps(run_dir):
            break
        check_run_after_kill(run_dir, stage)
        proc = Proc(script, train_cmd(run_dir, dump, 10_000), tmp / f"retry{attempt}.log")
        kill_during_checkpoint_write(proc, run_dir)
    leftover = temps(run_dir)
    assert leftover, "no kill landed inside a checkpoint write"
    for i in range(n_random_kills + 1):
        step = check_run_after_kill(run_dir, stage)
        check_state(run_dir, dump)
        last = i == n_random_kills
        proc = Proc(script, train_cmd(run_dir, dump, step + 2 if last else 10_000), tmp / f"run{i + 1}.log")
        proc.wait_for(re.escape(f"resuming from {run_dir / f'ckpt_{step:08d}.pt'} at step {step} "))
        if last:
            proc.finish()
            break
        time.sleep(rng.uniform(*delay))
        proc.kill()
    final = load_checkpoint(run_dir, stage=stage)
    assert final.step == step + 2  # the resumed count continues, it does not restart
    assert not set(leftover) & set(temps(run_dir)), "the dead writer's temp file was not cleaned up"


def test_s2_training_survives_kills(s2_dump: S2Dump, tmp_path: Path) -> None:
    dump = small_s2_dump(s2_dump, tmp_path / "dump").dump
    config = write_config(tmp_path / "s2.json", train={"batch_size": 2, "eval_interval": 1, "log_interval": 1,
                                                       "keep_ckpts": 2})
    kill_resume_cycle("train_s2.py", "s2", tmp_path / "run", dump, config, tmp_path, n_random_kills=1,
                      delay=(1.0, 4.0), check_state=check_s2_resume_state)


def test_s1_training_survives_kills(s1_dump: S1Dump, tmp_path: Path) -> None:
    config = write_config(tmp_path / "s1.json", base=s1_dump.config,
                          train={"eval_interval": 2, "log_interval": 1, "keep_ckpts": 2})
    kill_resume_cycle("train_s1.py", "s1", tmp_path / "run", s1_dump.dump, config, tmp_path, n_random_kills=2,
                      delay=(0.2, 2.0), check_state=check_s1_resume_state)


def test_s1_killed_before_its_first_checkpoint(s1_dump: S1Dump, tmp_path: Path) -> None:
    """Nothing to resume: --resume says so (no traceback); a fresh start into the same directory works."""
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "s1.json", base=s1_dump.config, train={"eval_interval": 1000})
    proc = Proc("train_s1.py", train_cmd(run_dir, s1_dump.dump, 10_000, config), tmp_path / "run0.log")
    proc.wait_for(r"S1 training on")  # the run has started; its first checkpoint is 1000 steps away
    proc.kill()
    assert not list_checkpoints(run_dir)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(run_dir)
    again = subprocess.run([sys.executable, str(REPO / "train_s1.py"), *map(str, train_cmd(run_dir, s1_dump.dump, 2))],
                           cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "no checkpoint to resume from" in again.stderr
    assert "Traceback" not in again.stderr
    Proc("train_s1.py", train_cmd(run_dir, s1_dump.dump, 2, config), tmp_path / "run1.log").finish()
    assert load_checkpoint(run_dir, stage="s1").step == 2


# ----------------------------------------------------------------------------- extraction stages


def start_ssl_extraction(s2_dump: S2Dump, tmp_path: Path, n_done: int) -> tuple[Proc, Path, list, list]:
    """extract_ssl_s2.py on 16 items of a fresh view without features, running in the background until
    ``n_done`` feature files exist: (process, dump, its command line, the items)."""
    dump = tmp_path / "dump"
    view = small_s2_dump(s2_dump, dump)
    (dump / "ssl").unlink()  # start without features
    utts = sorted(read_manifest(s2_dump.dump / MANIFEST_NAME), key=lambda u: u.id)[:16]
    write_manifest(dump / MANIFEST_NAME, utts)
    args = ["--dump", dump, "--config", view.config, "--ssl-model", view.hubert, "--device", "cpu"]
    proc = Proc("extract_ssl_s2.py", args, tmp_path / "ssl.log")
    deadline = time.monotonic() + 180
    while len(list((dump / "ssl").glob("*.pt"))) < n_done:
        assert proc.proc.poll() is None, proc.output()[-3000:]
        assert time.monotonic() < deadline, "no features appeared"
        time.sleep(0.01)
    return proc, dump, args, utts


def test_extract_ssl_killed_midway_finishes_the_rest(s2_dump: S2Dump, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    proc, dump, args, utts = start_ssl_extraction(s2_dump, tmp_path, 4)
    proc.kill()
    done = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (dump / "ssl").glob("*.pt")}
    assert 4 <= len(done) < len(utts), "the kill did not land midway"
    for name in done:  # a final name always holds a complete file (partial writes live under temp names)
        assert load_features(dump / "ssl" / name).shape[0] == 64

    extract_ssl_s2.main(extract_ssl_s2.build_parser().parse_args(list(map(str, args))))
    out = capsys.readouterr().out
    assert f"processed {len(utts) - len(done)}, skipped {len(done)} (already done), rejected 0" in out
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (dump / "ssl").glob("*.pt")}
    assert sorted(after) == sorted(f"{u.id}.pt" for u in utts)
    assert {k: after[k] for k in done} == done  # finished items were not redone
    assert not temps(dump / "ssl")


def test_extract_vq_killed_at_random_moments(s1_dump: S1Dump, tmp_path: Path) -> None:
    """Start from a semantic.tsv holding half the items (an earlier run on part of the data). Each kill (two
    at random moments of the run, one while semantic.tsv's temp file exists) leaves either the previous
    tables or complete new ones; the rerun equals the uninterrupted extraction.

    The stage computes everything in memory and writes its tables once at the end (atomically), so on
    this tiny model most of a run is start-up: a kill almost always finds the previous tables.
    """
    view = view_s1_dump(s1_dump, tmp_path / "dump")
    dump = view.dump
    reference = {name: (s1_dump.dump / name).read_bytes() for name in (SEMANTIC_TSV, SEMANTIC_JSON)}
    full = read_semantic_tsv(s1_dump.dump / SEMANTIC_TSV)
    write_semantic_tsv(dump / SEMANTIC_TSV, dict(sorted(full.items())[::2]))
    previous = {name: (dump / name).read_bytes() for name in (SEMANTIC_TSV, SEMANTIC_JSON)}
    args = ["--dump", dump, "--s2-ckpt", view.s2_checkpoint, "--device", "cpu", "--num-workers", "0",
            "--batch-size", "2"]
    rng = random.Random(SEED)
    for i, moment in enumerate(["random", "random", "tsv write"]):
        proc = Proc("extract_vq_s1.py", args, tmp_path / f"vq{i}.log")
        if moment == "random":
            time.sleep(rng.uniform(0.3, 3.0))
        else:
            while not any(n.startswith(f".{SEMANTIC_TSV}") for n in temps(dump)) and proc.proc.poll() is None:
                time.sleep(0.0002)
        proc.kill()
        now = {name: (dump / name).read_bytes() for name in (SEMANTIC_TSV, SEMANTIC_JSON)}
        assert now[SEMANTIC_TSV] in (previous[SEMANTIC_TSV], reference[SEMANTIC_TSV]), f"kill {i}: partial table"
        if now[SEMANTIC_TSV] == reference[SEMANTIC_TSV]:
            previous = now  # the killed run got as far as its new table: it is the one to keep now
    extract_vq_s1.main(extract_vq_s1.build_parser().parse_args(list(map(str, args))))
    assert {name: (dump / name).read_bytes() for name in reference} == reference
    assert not list(dump.glob("semantic.part-*")) and not temps(dump)


def test_extract_vq_interrupted_between_its_two_tables(s1_dump: S1Dump, s2_run: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-extraction with another S2 checkpoint dies after writing semantic.tsv but before semantic.json
    (a kill, or a full disk). A later run with the first checkpoint must not take the new tokens for its
    own: it refuses with a clear message, and --overwrite restores the right tokens."""
    dump = view_s1_dump(s1_dump, tmp_path / "dump").dump
    older = s2_run / "ckpt_00000020.pt"
    assert older.is_file() and older != list_checkpoints(s2_run)[-1]
    args = ["--dump", str(dump), "--device", "cpu", "--num-workers", "0"]

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(extract_vq_s1, "save_semantic_meta", disk_full)
    with pytest.raises(OSError, match="No space"):
        extract_vq_s1.main(extract_vq_s1.build_parser().parse_args([*args, "--s2-ckpt", str(older), "--overwrite"]))
    monkeypatch.undo()
    assert (dump / SEMANTIC_TSV).read_bytes() != (s1_dump.dump / SEMANTIC_TSV).read_bytes()  # the new tokens
    with pytest.raises(SystemExit, match=r"semantic\.json does not.*--overwrite"):
        extract_vq_s1.main(extract_vq_s1.build_parser().parse_args([*args, "--s2-ckpt", str(s2_run)]))
    extract_vq_s1.main(extract_vq_s1.build_parser().parse_args([*args, "--s2-ckpt", str(s2_run), "--overwrite"]))
    assert (dump / SEMANTIC_TSV).read_bytes() == (s1_dump.dump / SEMANTIC_TSV).read_bytes()
