"""Kill and interrupt at run time: tts.py -o, convert_checkpoint.py and the trainers killed (SIGKILL) at
seeded random moments and during their writes, repeated; Ctrl-C (SIGINT) of tts.py, a trainer and an
extraction stage; ``--resume`` past a damaged newest checkpoint. All as a user runs the scripts.

What must hold after every kill: the output is either absent (or the previous one) or complete and equal to
the uninterrupted result, never partial; the next run removes the dead writer's temp file and finishes.
A fresh training run into a directory whose earlier run was killed before its first checkpoint does not
mix that run's logs into its own. After Ctrl-C: exit status 130, one line saying what was kept and how to
go on, no traceback. (Trainers killed during checkpoint writes and resumed, and extraction stages killed:
tests/test_reliability_kill.py, whose helpers are reused here.)
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.checkpoint import list_checkpoints, load_checkpoint
from tests.pipeline import REPO, S1Dump, S2Dump, script_env, write_config
from tests.small_dump import small_s2_dump
from tests.test_infer import TinyRuns, build_tiny_runs
from tests.test_reliability_kill import Proc, start_ssl_extraction, temps, train_cmd

SEED = 20261201


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    return build_tiny_runs(tmp_path_factory.mktemp("kill_runs"))


def tts_args(runs: TinyRuns, out: Path, *extra: object, s1: Path | None = None) -> list[object]:
    return ["--s1-ckpt", s1 or runs.s1, "--s2-ckpt", runs.s2, "--ref", runs.ref, "--ref-text", "你好。",
            "--text", "今天天气很好。明天早上八点开会。", "--ssl-model", runs.hubert, "--seed", 5, "-o", out, *extra]


def in_process(script: str, args: list[object], capsys: pytest.CaptureFixture) -> str:
    """Run ``script`` uninterrupted in this process (no start-up cost); return its stdout + stderr."""
    argv = [str(a) for a in args]
    if script == "tts.py":
        import tts

        assert tts.cli(argv) == 0
    else:
        import convert_checkpoint

        convert_checkpoint.main(convert_checkpoint.build_parser().parse_args(argv))
    out = capsys.readouterr()
    return out.out + out.err


def run_ok(script: str, args: list[object]) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO, env=script_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def writing(out: Path) -> list[str]:
    """Temp files of ``out`` (``.<name>.tmp-<pid>``) in its folder."""
    return [n for n in temps(out.parent) if n.startswith(f".{out.name}")]


def kill_at_write_or_random(proc: Proc, out: Path, moment: str, rng: random.Random) -> None:
    """SIGKILL ``proc`` when the temp file of ``out`` shows up ("write"), or after a random delay."""
    if moment == "write":
        while not writing(out) and proc.proc.poll() is None:
            time.sleep(0.0005)
    else:
        time.sleep(rng.uniform(0.5, 6.0))
    proc.kill()


@pytest.mark.parametrize("script", ["tts.py", "convert_checkpoint.py"])
def test_outputs_killed_at_random_moments(script: str, runs: TinyRuns, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    """Repeated kills: the output is absent or equal to the uninterrupted one; the next run cleans up."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / ("out.wav" if script == "tts.py" else "g.pth")
    args = (tts_args(runs, out) if script == "tts.py" else ["to-v1", runs.s2, "-o", out, "--any-shape"])
    in_process(script, args, capsys)
    reference = out.read_bytes()
    out.unlink()
    rng = random.Random(SEED)
    moments = ["random", "write"]
    i = 0
    while i < len(moments):
        proc = Proc(script, args, tmp_path / f"{i}.log")
        kill_at_write_or_random(proc, out, moments[i], rng)
        assert not out.exists() or out.read_bytes() == reference, f"kill {i} ({moments[i]}): a partial output"
        out.unlink(missing_ok=True)
        if moments[i] == "write" and not writing(out) and i < 6:
            moments.append("write")  # the write ended between two polls: aim again
        i += 1
    left = writing(out)
    assert left, "the last kill did not land inside the write"
    said = in_process(script, args, capsys)
    assert out.read_bytes() == reference
    assert not temps(out_dir), "the dead writers' temp files were left"
    assert "temp file(s) of killed runs" in said


def sigint(proc: Proc) -> str:
    """Ctrl-C ``proc``; return its output after it ended with status 130."""
    proc.proc.send_signal(signal.SIGINT)
    proc.proc.wait(timeout=120)
    out = proc.output()
    assert proc.proc.returncode == 130, out[-3000:]
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
    return out


def test_ctrl_c_of_tts(runs: TinyRuns, tmp_path: Path) -> None:
    out = tmp_path / "long.wav"
    text = "。".join(["今天天气很好"] * 8) + "。"
    args = tts_args(runs, out, "--batch-size", 1, s1=runs.s1_const)
    args[args.index("--text") + 1] = text
    proc = Proc("tts.py", args, tmp_path / "tts.log")
    proc.wait_for(r"piece\(s\) to synthesize")
    lines = sigint(proc).strip().splitlines()
    assert lines[-1] == f"tts.py: interrupted; {out} was not written (outputs are only put in place when complete)"
    assert not out.exists() and not temps(tmp_path)


def test_ctrl_c_of_an_extraction_stage(s2_dump: S2Dump, tmp_path: Path) -> None:
    proc, dump, _, _ = start_ssl_extraction(s2_dump, tmp_path, 2)
    out = sigint(proc)
    assert out.strip().splitlines()[-1] == ("ssl: interrupted; finished items are kept; run the same command "
                                            "again to do the rest")
    assert not temps(dump / "ssl")


def test_s1_ctrl_c_then_kill_before_a_checkpoint_then_resume_past_a_damaged_one(s1_dump: S1Dump,
                                                                               tmp_path: Path) -> None:
    """One run directory through the run-time failures of training, in order:

    1. a fresh run killed before its first checkpoint, then a fresh run again: the killed run's train.log,
       tb/ and config.json are removed first (one line), so the logs hold one run only;
    2. Ctrl-C after a checkpoint: status 130, one line naming it and the --resume command;
    3. the newest checkpoint damaged (cut short): --resume says so, keeps it as ``*.damaged``, resumes from
       the newest intact one and finishes (before: it stopped with "cannot read checkpoint").
    """
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "s1.json", base=s1_dump.config,
                          train={"eval_interval": 1000, "log_interval": 1})
    proc = Proc("train_s1.py", train_cmd(run_dir, s1_dump.dump, 10_000, config), tmp_path / "run0.log")
    proc.wait_for(r"step 2 ")
    proc.kill()
    assert not list_checkpoints(run_dir) and (run_dir / "train.log").is_file() and (run_dir / "tb").is_dir()

    config = write_config(tmp_path / "s1b.json", base=s1_dump.config, train={"eval_interval": 1, "log_interval": 1})
    proc = Proc("train_s1.py", train_cmd(run_dir, s1_dump.dump, 10_000, config), tmp_path / "run1.log")
    proc.wait_for(r"saved .*ckpt_00000003\.pt")
    out = sigint(proc)
    assert f"{run_dir}: removed train.log, tb, config.json of an earlier run that saved no checkpoint" in out
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert log.count("S1 training on") == 1, "the logs of two runs are mixed"
    assert len(list((run_dir / "tb").glob("events.*"))) == 1
    latest = list_checkpoints(run_dir)[-1]
    step = load_checkpoint(latest).step
    assert out.strip().splitlines()[-1] == (f"train_s1.py: interrupted; the latest checkpoint is {latest} "
                                            f"(step {step}); continue with: python train_s1.py -m {run_dir} --resume")

    intact = list_checkpoints(run_dir)[-2]
    intact_step = load_checkpoint(intact).step
    damaged = latest.read_bytes()[: latest.stat().st_size // 3]
    latest.write_bytes(damaged)
    res = run_ok("train_s1.py", train_cmd(run_dir, s1_dump.dump, step + 1))
    kept = latest.with_name(latest.name + ".damaged")
    assert f"{latest}: damaged checkpoint (" in res.stderr and f"kept as {kept.name}; using {intact.name}" in res.stderr
    assert re.search(re.escape(f"resuming from {intact} at step {intact_step} "), res.stderr)
    assert kept.read_bytes() == damaged
    assert load_checkpoint(run_dir, stage="s1").step == step + 1


def test_s2_output_dir_survives_repeated_kills_of_its_first_steps(s2_dump: S2Dump, tmp_path: Path) -> None:
    """S2 killed at random moments before and around its first checkpoints, repeatedly (fresh or resumed,
    whichever the directory calls for): every later run starts cleanly and the last one finishes."""
    dump = small_s2_dump(s2_dump, tmp_path / "dump").dump
    config = write_config(tmp_path / "s2.json", train={"batch_size": 2, "eval_interval": 2, "log_interval": 1})
    run_dir = tmp_path / "run"
    rng = random.Random(SEED)
    for i in range(3):
        resume = bool(list_checkpoints(run_dir))
        proc = Proc("train_s2.py", train_cmd(run_dir, dump, 10_000, None if resume else config), tmp_path / f"{i}.log")
        proc.wait_for(r"resuming from|S2 training on|training on")
        time.sleep(rng.uniform(0.2, 3.0))
        proc.kill()
    resume = bool(list_checkpoints(run_dir))
    target = (load_checkpoint(run_dir, stage="s2").step if resume else 0) + 2
    run_ok("train_s2.py", train_cmd(run_dir, dump, target, None if resume else config))
    assert load_checkpoint(run_dir, stage="s2").step == target
    assert not temps(run_dir)
    if not resume:  # every earlier run was killed before a checkpoint: one run's logs only
        assert len(list((run_dir / "tb").glob("events.*"))) == 1
