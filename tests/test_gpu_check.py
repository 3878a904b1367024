"""bench/gpu_check.sh without a usable CUDA device: one line on stderr, exit status 2, nothing else run."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_without_cuda_fails_loudly_in_one_line(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    work = tmp_path / "work"
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--work", str(work)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: bench.gpu_check needs a CUDA GPU: "), lines[0]
    assert "no CUDA device" in lines[0]
    assert proc.stdout == ""
    assert not work.exists()  # stopped before building anything
