"""The README's first command, in its reduced mode: the whole pipeline must keep working."""

import json
import subprocess
import sys
from pathlib import Path

import soundfile as sf
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_demo_quick_runs_every_stage_and_writes_a_wav(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "demo.py", "--quick", "--out", str(out), "--hubert", str(tmp_path / "hubert")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for n in range(1, 13):
        assert f"[{n}/12]" in proc.stdout
    wav, sr = sf.read(out / "demo.wav")
    # at least the 11 tokens (0.44 s) that S1 must generate before EOS is allowed; barely trained models stop early
    assert sr == 32000 and len(wav) >= 11 * 1280 and abs(wav).max() > 0
    assert list((out / "logs" / "s2" / "tb").glob("events.*")) and list((out / "logs" / "s1" / "tb").glob("events.*"))
    assert "reference used for style only" not in proc.stdout + proc.stderr  # the prompt path is exercised
    # the held-out measures, each beside the untrained model's, and the picture
    figures = json.loads((out / "measures.json").read_text(encoding="utf-8"))
    assert len(figures["held_out_ids"]) >= 1
    names = set(figures["measures"])
    for name in ("S2 resynthesis envelope correlation", "S1 teacher-forced top-1 accuracy",
                 "S1 generated / true token count", "TTS vs recording MCD-DTW (dB)"):
        assert name in names, names
        m = figures["measures"][name]
        assert isinstance(m["trained"], float) and isinstance(m["untrained"], float) and m["trained"] == m["trained"]
    assert "held-out measures" in proc.stdout and "untrained" in proc.stdout
    img = Image.open(out / "demo.png")
    assert img.format == "PNG" and img.width > 100 and img.height > 4 * 160
    assert sf.info(out / "resynth.wav").duration > 1.0
    # a rerun resumes: nothing is redone and training targets are already met
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "processed 0" in again.stdout + again.stderr
