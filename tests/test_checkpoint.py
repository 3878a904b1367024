import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from common.checkpoint import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)


def _ckpt(step, model, opt=None):
    return Checkpoint(stage="s1", step=step, epoch=1, config={"a": 1}, symbols_md5="abc",
                      models={"model": model.state_dict()},
                      optimizers={"opt": opt.state_dict()} if opt else {})


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path, _ckpt(7, model, opt))
    loaded = load_checkpoint(path, stage="s1", symbols_md5="abc")
    clone = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    load_model_state(clone, loaded.models["model"], path)
    x = torch.randn(5, 4)
    assert torch.equal(clone(x), model(x))
    opt2 = torch.optim.AdamW(clone.parameters(), lr=1e-3)
    opt2.load_state_dict(loaded.optimizers["opt"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert loaded.step == 7 and loaded.config == {"a": 1}


def test_keep_last_n_and_latest(tmp_path):
    model = torch.nn.Linear(2, 2)
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, _ckpt(step, model), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_00000030.pt", "ckpt_00000040.pt"]
    assert latest_checkpoint(tmp_path).name == "ckpt_00000040.pt"
    assert load_checkpoint(tmp_path).step == 40  # a run directory resolves to its latest


def test_readable_errors(tmp_path):
    model = torch.nn.Linear(2, 2)
    path = save_checkpoint(tmp_path, _ckpt(1, model))
    with pytest.raises(CheckpointError, match="S1 checkpoint, but an S2"):
        load_checkpoint(path, stage="s2")
    with pytest.raises(CheckpointError, match="symbol table"):
        load_checkpoint(path, symbols_md5="other")
    with pytest.raises(CheckpointError, match="shape mismatch.*weight"):
        load_model_state(torch.nn.Linear(3, 2), load_checkpoint(path).models["model"], path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "empty")
    truncated = tmp_path / "ckpt_00000002.pt"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(truncated)


def test_failing_writer_leaves_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path, _ckpt(1, model))

    def disk_full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, _ckpt(2, model))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt_00000001.pt"]
    assert load_checkpoint(tmp_path).step == 1


def test_kill_during_write_leaves_previous_loadable(tmp_path):
    """SIGKILL a process while it writes a large checkpoint: the previous one stays the latest, loadable."""
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {os.getcwd()!r})
        from common.checkpoint import Checkpoint, save_checkpoint
        m = torch.nn.Linear(2, 2)
        save_checkpoint({str(tmp_path)!r}, Checkpoint("s2", 1, 0, {{}}, "x", models={{"m": m.state_dict()}}))
        print("saved", flush=True)
        big = {{"w": torch.zeros(64, 1024, 1024)}}
        for step in range(2, 1000):
            save_checkpoint({str(tmp_path)!r}, Checkpoint("s2", step, 0, {{}}, "x", models={{"m": big}}), keep=0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saved"
    # wait until the temp file of the big write exists, then kill mid-write
    deadline = time.monotonic() + 60
    while not any(".tmp-" in p.name for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.002)
    assert any(".tmp-" in p.name for p in tmp_path.iterdir()), "the writer never started a checkpoint write"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    ckpt = load_checkpoint(tmp_path)  # the temp file never counts as a checkpoint
    assert leftovers and ckpt.stage == "s2" and ckpt.step >= 1
