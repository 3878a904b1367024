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


def test_s1_trained_on_tokens_of_another_s2_is_retrained(tmp_path):
    """A demo rerun that extended S2 re-extracts the tokens; the old S1 run must not be resumed on them."""
    sys.path.insert(0, str(ROOT))
    import demo

    dump, run = tmp_path / "dump", tmp_path / "logs" / "s1"
    dump.mkdir()
    run.mkdir(parents=True)
    (dump / "semantic.json").write_text(json.dumps({"s2_sha256": "aaa"}), encoding="utf-8")
    demo.retire_stale_s1(run, dump)  # no checkpoint yet: nothing to retire
    assert run.is_dir()
    (run / "ckpt_00000010.pt").write_bytes(b"x")
    demo.write_token_source(run, dump)
    demo.retire_stale_s1(run, dump)  # same tokens: the run is resumed
    assert (run / "ckpt_00000010.pt").is_file()
    (dump / "semantic.json").write_text(json.dumps({"s2_sha256": "bbb"}), encoding="utf-8")
    demo.retire_stale_s1(run, dump)  # new S2 tokens: set aside, S1 starts again
    assert not run.exists() and (tmp_path / "logs" / "s1.old" / "ckpt_00000010.pt").is_file()
