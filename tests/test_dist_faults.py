"""Distributed faults with 2 gloo processes on CPU: a dead or hung rank ends the others with a clear
error within the timeout instead of a hang; a missing peer or master fails the start within the timeout;
the same for a real training run (train_s1.py) whose second rank is killed or frozen.

Workers (``tests/dist_fault_worker.py``) are launched by hand with RANK/WORLD_SIZE/MASTER_ADDR/
MASTER_PORT on a free port, like a static multi-node launch; they wait for a "go" line after their
imports, so a slow import on a loaded machine does not count against the timeout.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.dist import DistError, setup_dist
from tests.pipeline import S1Dump, script_env, write_config

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "dist_fault_worker.py"
OPS = ("all_reduce", "broadcast", "barrier", "all_gather")
OP_NAMES = {"all_reduce": "all_reduce", "broadcast": "broadcast", "barrier": "barrier",
            "all_gather": "all_gather_object"}
TIMEOUT_S = 4.0
SLACK_S = 4.0  # scheduling delay on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Group:
    procs: dict[int, subprocess.Popen]
    started: float = 0.0  # when the ranks were told to go

    def go(self) -> Group:
        for p in self.procs.values():
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        self.started = time.monotonic()
        for p in self.procs.values():
            p.stdin.write("go\n")
            p.stdin.flush()
        return self

    def finish(self, rank: int, limit_s: float) -> tuple[int, str, float]:
        """(exit code, stdout, seconds from go to exit) of ``rank``; it must exit within ``limit_s``."""
        p = self.procs[rank]
        try:
            out, err = p.communicate(timeout=limit_s + 30)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"rank {rank} hung (no exit within {limit_s + 30:.0f} s)")
        return p.returncode, out + err, time.monotonic() - self.started

    def kill(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
            p.communicate()


def launch(fault: str, op: str, ranks: tuple[int, ...] = (0, 1), timeout_s: float = TIMEOUT_S) -> Group:
    port = free_port()
    procs = {}
    for r in ranks:
        env = {**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
        procs[r] = subprocess.Popen([sys.executable, str(WORKER), fault, op, str(timeout_s)], cwd=REPO, env=env,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return Group(procs)


def result_line(out: str, kind: str) -> tuple[float, str]:
    line = next((ln for ln in out.splitlines() if ln.startswith(kind + " ")), None)
    assert line is not None, f"no '{kind}' line in the output:\n{out[-3000:]}"
    _, seconds, *message = line.split(" ", 2)
    return float(seconds), (message[0] if message else "")


def test_healthy_pair_runs_every_collective() -> None:
    """Control: without a fault every collective completes (so the fault tests below can fail)."""
    g = launch("none", "all").go()
    for r in (1, 0):
        code, out, _ = g.finish(r, TIMEOUT_S)
        assert code == 0, f"rank {r}:\n{out[-3000:]}"
    done = [line.split() for line in out.splitlines() if line.startswith("ok ")]
    assert [name for _, _, name in done] == list(OPS)
    assert all(float(seconds) < TIMEOUT_S for _, seconds, _ in done)


def test_dead_rank_makes_the_other_fail_fast() -> None:
    """Rank 1 exits abruptly (os._exit) before the collective: rank 0 gets a DistError naming the op, at once.

    (Every op under a hung peer, the slower case, is in the next test.)
    """
    groups = {op: launch("die", op) for op in ("all_reduce", "all_gather")}
    for g in groups.values():
        g.go()
    for op, g in groups.items():
        code1, _, _ = g.finish(1, TIMEOUT_S)
        assert code1 == 9
        code, out, wall = g.finish(0, TIMEOUT_S)
        assert code == 2, f"{op}:\n{out[-3000:]}"
        seconds, message = result_line(out, "error")
        assert message.startswith(f"rank 0 of 2: {OP_NAMES[op]} failed: another rank died"), message
        assert seconds < TIMEOUT_S, f"{op}: a dead peer took {seconds} s to notice (timeout {TIMEOUT_S})"
        assert wall < TIMEOUT_S + SLACK_S, f"{op}: rank 0 exited {wall:.1f} s after the start"
        assert "Traceback" not in out


def test_hung_rank_makes_the_other_fail_within_the_timeout() -> None:
    """Rank 1 stays alive but never joins the collective: rank 0 fails after the process-group timeout."""
    groups = {op: launch("hang", op) for op in OPS}
    for g in groups.values():
        g.go()
    try:
        for op, g in groups.items():
            code, out, wall = g.finish(0, TIMEOUT_S)
            assert code == 2, f"{op}:\n{out[-3000:]}"
            seconds, message = result_line(out, "error")
            assert message.startswith(f"rank 0 of 2: {OP_NAMES[op]} failed"), message
            assert TIMEOUT_S - 0.5 <= seconds <= TIMEOUT_S + SLACK_S, f"{op}: failed after {seconds} s"
            assert wall <= TIMEOUT_S + 2 * SLACK_S
    finally:
        for g in groups.values():
            g.kill()


def test_missing_peer_or_master_fails_the_start_within_the_timeout() -> None:
    timeout_s = 3.0
    alone_master = launch("none", "barrier", ranks=(0,), timeout_s=timeout_s).go()  # rank 1 never starts
    alone_client = launch("none", "barrier", ranks=(1,), timeout_s=timeout_s).go()  # rank 0 never starts
    for g, rank, expected in ((alone_master, 0, "rank 0 of 2: the gloo process group did not start within 3 s"),
                              (alone_client, 1, "rank 1: no rendezvous master at 127.0.0.1:")):
        code, out, wall = g.finish(rank, timeout_s)
        assert code == 3, out[-3000:]
        seconds, message = result_line(out, "init-error")
        assert message.startswith(expected), message
        assert timeout_s - 0.5 <= seconds <= timeout_s + SLACK_S, f"rank {rank}: start failed after {seconds} s"


def test_rank_without_master_address_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(DistError, match="MASTER_ADDR/MASTER_PORT are not"):
        setup_dist(timeout_s=1.0, device="cpu")


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])
def test_training_rank_that_dies_or_hangs_ends_the_other(fault: str, s1_dump: S1Dump, tmp_path: Path) -> None:
    """train_s1.py on 2 gloo ranks launched by hand; once training runs, rank 1 is killed (SIGKILL) or frozen
    (SIGSTOP: alive, never answers). Rank 0 exits with one clear line within --dist-timeout, no traceback."""
    timeout_s = 5.0
    config = write_config(tmp_path / "s1.json", base=s1_dump.config, train={"log_interval": 1,
                                                                         "eval_interval": 100_000})
    port = free_port()
    procs, logs = {}, {}
    for r in (0, 1):
        env = script_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                         MASTER_PORT=str(port))
        env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
        logs[r] = tmp_path / f"rank{r}.log"
        with open(logs[r], "w", encoding="utf-8") as out:
            procs[r] = subprocess.Popen(
                [sys.executable, str(REPO / "train_s1.py"), "-c", str(config), "-m", str(tmp_path / "run"),
                 "--dump", str(s1_dump.dump), "--device", "cpu", "--max-steps", "100000",
                 "--dist-timeout", str(timeout_s)], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "step 2 " not in logs[0].read_text(encoding="utf-8"):
            assert procs[0].poll() is None and time.monotonic() < deadline, logs[0].read_text(encoding="utf-8")
            time.sleep(0.05)
        os.kill(procs[1].pid, getattr(signal, fault))
        faulted = time.monotonic()
        procs[0].wait(timeout=timeout_s + 60)
        elapsed = time.monotonic() - faulted
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
    out = logs[0].read_text(encoding="utf-8")
    assert procs[0].returncode == 1, out[-3000:]
    assert elapsed < timeout_s + SLACK_S, f"rank 0 took {elapsed:.1f} s to give up (timeout {timeout_s} s)"
    assert "Traceback" not in out, out[-3000:]
    # The peer is noticed either inside DDP's backward ("communication with the other ranks failed") or in one
    # of the trainer's own collectives ("all_reduce failed"), whichever runs when the timeout hits.
    last = out.strip().splitlines()[-1]
    assert re.match(r"train_s1\.py: rank 0 of 2: (communication with the other ranks|\w+) failed: another rank "
                    r"died or did not (answer|reach)", last), out[-1000:]
