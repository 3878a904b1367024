"""tts.py, s1_infer.py and s2_infer.py as a user runs them: outputs, equality of the two paths, errors.

One real subprocess run of each kind (success, on the S1/S2 runs trained by the pipeline
fixtures of conftest.py, and failure); the other cases call the scripts' ``cli(argv)`` in
process — what ``python tts.py ...`` runs after its imports — on the tiny random checkpoints
of test_infer.py.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import s1_infer
import s2_infer
import tts
from infer import cli as infer_cli
from infer.tokens_file import load_tokens_file
from tests.test_infer import CONST_TOKEN, SR, TinyRuns, build_tiny_runs, speechy

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

REPO = Path(__file__).resolve().parents[1]
SPT = 1280  # samples per token: 2 frames x hop 640 at 32 kHz
PAUSE = int(0.3 * SR)
LONG_TEXT = "今天天气很好！我喜欢用Python写代码。\n\nWe like it. 你呢？"
EXPECTED_PIECES = ["今天天气很好！", "我喜欢用Python写代码。", "We like it.", "你呢？"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    return build_tiny_runs(tmp_path_factory.mktemp("tts_runs"))


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def _args(runs: TinyRuns, out: Path, s1: Path | None = None, s2: Path | None = None, ref: Path | None = None,
          **extra: str) -> list[str]:
    argv = ["--s1-ckpt", str(s1 or runs.s1), "--s2-ckpt", str(s2 or runs.s2), "--ref", str(ref or runs.ref),
            "--ref-text", "参考音频的文字", "--device", "cpu", "-o", str(out)]
    for k, v in extra.items():
        argv += [f"--{k.replace('_', '-')}", v]
    return argv


def test_tts_with_the_trained_pipeline_runs_subprocess(s1_run: Path, s2_run: Path, s2_dump, corpus,
                                                       tmp_path: Path) -> None:
    """tts.py as a user runs it, on the S1/S2 runs the real pipeline trained (shared fixtures)."""
    ref = next(it for it in corpus.items if it.speaker == "spk1" and it.lang == "zh")
    out = tmp_path / "out.wav"
    argv = [sys.executable, str(REPO / "tts.py"), "--s1-ckpt", str(s1_run), "--s2-ckpt", str(s2_run),
            "--ref", str(corpus.root / ref.wav), "--ref-text", ref.text, "--ssl-model", str(s2_dump.hubert),
            "--text", "今天天气很好。明天早上八点开会。", "--preset", "stable", "--seed", "0",
            "--sample-rate", "16000", "-o", str(out)]
    r = subprocess.run(argv, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "2 piece(s) to synthesize" in r.stderr and "Traceback" not in r.stderr
    assert "warning" not in r.stderr  # S1's tokens came from exactly this S2 checkpoint
    assert r.stderr.count("stop: eos") == 2  # the trained S1 ends each sentence by itself
    wav, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and wav.ndim == 1 and np.abs(wav).max() > 0
    assert 2 * 0.5 + 0.3 <= len(wav) / sr <= 2 * 4.0 + 0.3  # the corpus sentences last about 2 s


def test_tts_mixed_text_any_output_rate(runs: TinyRuns, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out.wav"
    assert tts.cli(_args(runs, out, text=LONG_TEXT, seed="1", sample_rate="24000")) == 0
    assert "4 piece(s) to synthesize" in capsys.readouterr().err
    wav, sr = sf.read(out, dtype="float32")
    assert sr == 24000 and wav.ndim == 1 and np.abs(wav).max() > 0
    seconds = len(wav) / sr  # each piece: between min_new_tokens (11) and its cap; 3 pauses
    assert 4 * 11 / 25 + 3 * 0.3 <= seconds <= 60


def test_fast_cpu_formats(runs: TinyRuns, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--weights (S1 decoding weights, s1/weights.py) and --s2-precision (infer/decoder.py) reach the models."""
    plain, fast = tmp_path / "fp32.wav", tmp_path / "fast.wav"
    text = "今天天气很好！"
    assert tts.cli(_args(runs, plain, s1=runs.s1_const, text=text, seed="1")) == 0
    capsys.readouterr()
    assert tts.cli(_args(runs, fast, s1=runs.s1_const, text=text, seed="1", weights="int8", s2_precision="bf16")) == 0
    assert "S1 decoding weights: int8" in capsys.readouterr().err
    a, _ = sf.read(plain, dtype="float32")
    b, _ = sf.read(fast, dtype="float32")
    assert len(a) == len(b) > 0 and np.isfinite(b).all()  # the rigged S1 makes the same tokens in every format
    assert not np.array_equal(a, b)  # but S2 really ran in bf16
    capsys.readouterr()
    with pytest.raises(SystemExit):
        tts.cli(_args(runs, tmp_path / "x.wav", text=text, weights="fp8"))
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


def test_compile_flag_compiles_the_decode_step(runs: TinyRuns, tmp_path: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """--compile reaches s1.compiled (here with the aot_eager backend: no C++ build) and logs the compile time
    and the step's threads; the wav equals the eager run's (fp32, the same tokens)."""
    from s1 import compiled

    monkeypatch.setattr(infer_cli, "compile_decode_step",
                        lambda model: compiled.compile_decode_step(model, backend="aot_eager"))
    plain, comp = tmp_path / "plain.wav", tmp_path / "compiled.wav"
    assert tts.cli(_args(runs, plain, text="今天天气很好！", seed="2")) == 0
    capsys.readouterr()
    try:
        assert tts.cli(_args(runs, comp, text="今天天气很好！", seed="2") + ["--compile"]) == 0
    finally:
        torch._dynamo.reset()
    assert "S1 decode step compiled with torch.compile" in capsys.readouterr().err
    assert np.array_equal(sf.read(plain, dtype="float32")[0], sf.read(comp, dtype="float32")[0])


def test_errors_exit_cleanly_subprocess(runs: TinyRuns, tmp_path: Path) -> None:
    argv = [sys.executable, str(REPO / "tts.py"), *_args(runs, tmp_path / "x.wav", text="。，！")]
    r = subprocess.run(argv, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert r.returncode == 2
    assert r.stderr.startswith("error: no pronounceable text") and "Traceback" not in r.stderr
    assert not (tmp_path / "x.wav").exists()


def test_two_step_inference_gives_the_same_wav(runs: TinyRuns, tmp_path: Path) -> None:
    common = ["--text", LONG_TEXT, "--seed", "3", "--batch-size", "3", "--preset", "expressive"]
    assert tts.cli(_args(runs, tmp_path / "tts.wav") + common) == 0
    assert s1_infer.cli(_args(runs, tmp_path / "tokens.npz") + common) == 0
    assert s2_infer.cli(["--s2-ckpt", str(runs.s2), "--tokens", str(tmp_path / "tokens.npz"), "--ref", str(runs.ref),
                         "--device", "cpu", "-o", str(tmp_path / "two.wav")]) == 0
    a, sr_a = sf.read(tmp_path / "tts.wav", dtype="int16")
    b, sr_b = sf.read(tmp_path / "two.wav", dtype="int16")
    assert sr_a == sr_b == SR and len(a) > 0 and np.array_equal(a, b)
    tf = load_tokens_file(tmp_path / "tokens.npz")
    assert tf.meta["pieces"] == EXPECTED_PIECES and tf.meta["seed"] == 3
    assert tf.meta["sampling"]["top_k"] == 50 and tf.meta["s1_step"] == 20 and tf.meta["s2_step"] == 10
    assert tf.meta["reference"] == str(runs.ref) and tf.meta["prompt_text"] == "参考音频的文字。"
    assert len(a) == sum(len(t) for t in tf.tokens) * SPT + 3 * PAUSE
    # the reference recorded in the tokens file is the default, and several files decode into a directory
    assert s2_infer.cli(["--s2-ckpt", str(runs.s2), "--tokens", str(tmp_path / "tokens.npz"),
                         str(tmp_path / "tokens.npz"), "--device", "cpu", "-o", str(tmp_path / "outdir")]) == 2
    (tmp_path / "copy.npz").write_bytes((tmp_path / "tokens.npz").read_bytes())
    assert s2_infer.cli(["--s2-ckpt", str(runs.s2), "--tokens", str(tmp_path / "tokens.npz"),
                         str(tmp_path / "copy.npz"), "--device", "cpu", "-o", str(tmp_path / "outdir")]) == 0
    for name in ("tokens", "copy"):
        c, _ = sf.read(tmp_path / "outdir" / f"{name}.wav", dtype="int16")
        assert np.array_equal(a, c)


def test_long_text_is_split_batched_and_joined_with_pauses(runs: TinyRuns, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    extra = ["--text", LONG_TEXT, "--preset", "greedy", "--max-tokens-per-phoneme", "3"]
    assert s1_infer.cli(_args(runs, tmp_path / "t.npz", s1=runs.s1_const) + extra) == 0
    assert tts.cli(_args(runs, tmp_path / "t.wav", s1=runs.s1_const) + extra) == 0
    assert "4 piece(s) to synthesize" in capsys.readouterr().err
    tf = load_tokens_file(tmp_path / "t.npz")
    assert tf.meta["pieces"] == EXPECTED_PIECES
    lengths = [max(12, math.ceil(3 * len(p))) for p in tf.phones]  # cap from the target phonemes
    assert [t.tolist() for t in tf.tokens] == [[CONST_TOKEN] * n for n in lengths]
    wav, _ = sf.read(tmp_path / "t.wav", dtype="float32")
    assert len(wav) == sum(lengths) * SPT + 3 * PAUSE
    pos = 0
    for n in lengths[:-1]:
        pos += n * SPT
        assert not wav[pos:pos + PAUSE].any()  # silence between pieces
        pos += PAUSE


def test_mixed_language_and_stereo_44k_reference(runs: TinyRuns, tmp_path: Path) -> None:
    stereo = np.stack([speechy(4.0, 44100), speechy(4.0, 44100, seed=2)], axis=1)
    sf.write(tmp_path / "ref44.wav", stereo, 44100)
    out = tmp_path / "o.npz"
    assert s1_infer.cli(_args(runs, out, s1=runs.s1_const, ref=tmp_path / "ref44.wav",
                              text="我用Python写code。", preset="greedy")) == 0
    tf = load_tokens_file(out)
    from text.symbols import SYMBOL_TO_ID

    assert SYMBOL_TO_ID["K"] in tf.phones[0].tolist() and SYMBOL_TO_ID["x"] in tf.phones[0].tolist()
    assert tf.meta["prompt_tokens"] == (4 * SR + PAUSE) // SPT  # the 0.3 s of silence is part of the prompt


def test_resynthesis_keeps_the_input_length(runs: TinyRuns, tmp_path: Path) -> None:
    sf.write(tmp_path / "in.wav", speechy(2.5, 44100, seed=3), 44100)
    out = tmp_path / "re.wav"
    assert s2_infer.cli(["--s2-ckpt", str(runs.s2), "--resynth", str(tmp_path / "in.wav"), "--text", "你好世界",
                         "--ref", str(runs.ref), "--device", "cpu", "-o", str(out)]) == 0
    wav, sr = sf.read(out, dtype="float32")
    assert sr == SR and abs(len(wav) - 2.5 * SR) < SPT and np.abs(wav).max() > 0
    assert s2_infer.cli(["--s2-ckpt", str(runs.s2), "--resynth", str(tmp_path / "in.wav"), "--device", "cpu",
                         "-o", str(out)]) == 2


def test_long_reference_is_trimmed_with_a_message(runs: TinyRuns, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    sf.write(tmp_path / "long.wav", speechy(120.0, 16000), 16000)
    out = tmp_path / "o.npz"
    assert s1_infer.cli(_args(runs, out, ref=tmp_path / "long.wav", text="你好。")) == 0
    err = capsys.readouterr().err
    assert "is 120.0 s, longer than 10 s" in err and "style only" in err
    tf = load_tokens_file(out)
    assert tf.meta["style_only"] and tf.meta["prompt_tokens"] == 0 and tf.meta["prompt_text"] is None
    start, end = tf.meta["reference_window"]
    assert 0 < end - start <= 10 * SR


def _bad_runs(runs: TinyRuns, tmp_path: Path) -> dict[str, tuple[list[str], int, str]]:
    sf.write(tmp_path / "silent.wav", np.zeros(4 * SR, np.float32), SR)
    return {
        "silent reference": (_args(runs, tmp_path / "o.wav", ref=tmp_path / "silent.wav", text="你好。"), 2,
                             "silent.wav: the reference is silent"),
        "missing reference": (_args(runs, tmp_path / "o.wav", ref=tmp_path / "nope.wav", text="你好。"), 2,
                              "nope.wav: file not found"),
        "empty text": (_args(runs, tmp_path / "o.wav", text="  "), 2, "the text to synthesize is empty"),
        "punctuation only": (_args(runs, tmp_path / "o.wav", text="……！？"), 2, "only punctuation"),
        "unknown characters": (_args(runs, tmp_path / "o.wav", text="你好。🙂🙂！再见。"), 2,
                               "text piece 2 of 3 '🙂🙂！': no Chinese reading for '🙂'"),
        "missing checkpoint": (_args(runs, tmp_path / "o.wav", s1=tmp_path / "none", text="你好。"), 2,
                               "S1 checkpoint " + str(tmp_path / "none") + ": checkpoint file not found"),
        "S1 checkpoint as S2": (_args(runs, tmp_path / "o.wav", s2=runs.s1, text="你好。"), 2,
                                "this is an S1 checkpoint, but an S2 checkpoint is needed here"),
        "S1 stops at once": (_args(runs, tmp_path / "o.wav", s1=runs.s1_eos, text="你好。",
                                   min_new_tokens="0"), 1, "text piece 1 '你好。': S1 generated no tokens"),
    }


@pytest.mark.parametrize("case", ["silent reference", "missing reference", "empty text", "punctuation only",
                                  "unknown characters", "missing checkpoint", "S1 checkpoint as S2",
                                  "S1 stops at once"])
def test_bad_input_is_a_clear_error(case: str, runs: TinyRuns, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    argv, code, message = _bad_runs(runs, tmp_path)[case]
    assert tts.cli(argv) == code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and "Traceback" not in err
    assert not (tmp_path / "o.wav").exists()


def test_s2_infer_rejects_bad_tokens_files(runs: TinyRuns, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert s2_infer.cli(["--s2-ckpt", str(runs.s2), "--tokens", str(tmp_path / "bad.npz"), "-o",
                         str(tmp_path / "o.wav")]) == 2
    assert "bad.npz: not a tokens file" in capsys.readouterr().err
