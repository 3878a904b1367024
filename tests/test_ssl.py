"""HuBERT loading, feature extraction and extract_ssl_s2.py (single process and torchrun)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import extract_ssl_s2
from common.audio import load_audio, resample, save_wav
from common.manifest import Utterance, write_manifest
from modules.ssl import (
    NonFiniteFeatures,
    SSLError,
    align_frames,
    extract_features,
    load_features,
    load_ssl_model,
    save_features,
)
from tests.tiny_hubert import make_tiny_hubert

ROOT = Path(__file__).resolve().parents[1]
TINY_S2 = ROOT / "configs" / "tiny" / "s2.json"
FULL_S2 = ROOT / "configs" / "s2.json"
SR, HOP = 32000, 640
# Good items (id -> samples) and the bad ones: a corrupt wav and a wav that was never written.
GOOD = {"spk1_a": 19_200, "spk1_b": 25_659, "spk2_a": 32_000, "spk2_b": 41_000, "spk2_c": 28_805}
CORRUPT, MISSING = "spk3_corrupt", "spk3_missing"


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_hubert(tmp_path_factory.mktemp("hubert") / "tiny-hubert")


@pytest.fixture(scope="module")
def ssl_model(hubert_dir: Path):
    torch.set_num_threads(1)
    return load_ssl_model(str(hubert_dir), "cpu")


def _wave(n: int, seed: int) -> np.ndarray:
    """A speech-like test signal: a gliding tone plus a little noise, peak below 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 140 + 60 * np.sin(2 * np.pi * 1.5 * t)
    tone = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / SR)
    return (tone + 0.02 * rng.standard_normal(n)).astype(np.float32)


def make_dump(dump: Path) -> Path:
    """A dump directory with the manifest and 32 kHz wavs: the GOOD items, one corrupt wav, one missing wav."""
    wav_dir = dump / "wav32k"
    utts = []
    for i, (uid, n) in enumerate(GOOD.items()):
        save_wav(wav_dir / f"{uid}.wav", _wave(n, i), SR)
        utts.append(Utterance(uid, uid.split("_")[0], "zh", "你好", n / SR, f"/data/{uid}.wav"))
    (wav_dir / f"{CORRUPT}.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    for uid in (CORRUPT, MISSING):
        utts.append(Utterance(uid, "spk3", "zh", "你好", 1.0, f"/data/{uid}.wav"))
    write_manifest(dump / "manifest.tsv", utts)
    return dump


def _run(args: list[str], cwd: Path, torchrun: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(torchrun)]
    return subprocess.run([*launcher, str(ROOT / "extract_ssl_s2.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _args(dump: Path, hubert: Path, config: Path = TINY_S2, *extra: str) -> list[str]:
    return ["--dump", str(dump), "--config", str(config), "--ssl-model", str(hubert), "--device", "cpu", *extra]


def _rejected(dump: Path) -> dict[str, str]:
    lines = (dump / "rejected.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "stage\tid\tsource\treason"
    rows = [line.split("\t") for line in lines[1:]]
    ids = [r[1] for r in rows if r[0] == "ssl"]
    assert len(ids) == len(set(ids)), f"an item was rejected twice: {ids}"
    return {r[1]: r[3] for r in rows if r[0] == "ssl"}


# ----------------------------------------------------------------------------- the function


@pytest.mark.parametrize("n", [800, 1279, 6400, 6559, 6560, 6999, 32_000, 32_159, 32_160, 32_639])
def test_frame_count_is_spectrogram_frames(ssl_model, n: int) -> None:
    wav = _wave(n, n)
    feats = extract_features(ssl_model, wav, hop=HOP)
    assert feats.shape == (64, n // HOP) and feats.dtype == torch.float32
    # Equal to the plain model call on the soxr-resampled waveform, up to the aligned tail.
    with torch.no_grad():
        raw = ssl_model.model(torch.from_numpy(resample(wav, SR, 16000))[None]).last_hidden_state[0].T  # [D, T50]
    assert abs(raw.shape[1] - n // HOP) <= 1
    common = min(raw.shape[1], n // HOP)
    torch.testing.assert_close(feats[:, :common], raw[:, :common])
    if raw.shape[1] < n // HOP:  # N mod 640 < 160: the last frame is replicated
        torch.testing.assert_close(feats[:, -1], raw[:, -1])


def test_tensor_input_and_determinism(ssl_model) -> None:
    wav = _wave(20_000, 3)
    a = extract_features(ssl_model, wav)
    b = extract_features(ssl_model, torch.from_numpy(wav))
    assert torch.equal(a, b)  # eval mode: no dropout, no SpecAugment


def test_bad_inputs_are_errors(ssl_model) -> None:
    with pytest.raises(SSLError, match="too short"):
        extract_features(ssl_model, np.zeros(700, np.float32))
    with pytest.raises(SSLError, match="mono"):
        extract_features(ssl_model, np.zeros((2, 8000), np.float32))
    bad = _wave(8000, 0)
    bad[10] = np.nan
    with pytest.raises(SSLError, match="non-finite input"):
        extract_features(ssl_model, bad)
    with pytest.raises(SSLError, match="frame rate mismatch"):
        extract_features(ssl_model, _wave(8000, 0), hop=320)


def test_align_frames() -> None:
    x = torch.arange(12.0).reshape(2, 6)  # [D, T]
    padded = align_frames(x, 8)
    assert padded.shape == (2, 8) and torch.equal(padded[:, 6:], x[:, 5:6].expand(2, 2))
    assert torch.equal(align_frames(x, 5), x[:, :5])
    with pytest.raises(SSLError, match="frame mismatch"):
        align_frames(x, 9)


def test_nan_model_is_reported(tmp_path: Path) -> None:
    model = load_ssl_model(str(make_tiny_hubert(tmp_path / "nan", nan_weights=True)))
    with pytest.raises(NonFiniteFeatures, match="non-finite features"):
        extract_features(model, _wave(16_000, 0))


def test_save_load_round_trip_and_overflow(tmp_path: Path) -> None:
    feats = torch.randn(64, 7)
    written = save_features(tmp_path / "a.pt", feats)
    loaded = load_features(tmp_path / "a.pt")
    assert loaded.dtype == torch.float16 and torch.equal(loaded, written)
    torch.testing.assert_close(loaded.float(), feats, atol=1e-2, rtol=1e-3)
    with pytest.raises(NonFiniteFeatures, match="overflow"):
        save_features(tmp_path / "b.pt", torch.full((4, 3), 1e6))
    assert not (tmp_path / "b.pt").exists() and list(tmp_path.iterdir()) == [tmp_path / "a.pt"]
    (tmp_path / "c.pt").write_bytes(b"not a tensor file")
    with pytest.raises(SSLError, match="cannot read features"):
        load_features(tmp_path / "c.pt")


# ----------------------------------------------------------------------------- loading


def test_local_directory_loading(hubert_dir: Path, ssl_model) -> None:
    assert (ssl_model.hidden_size, ssl_model.samples_per_frame, ssl_model.receptive_field) == (64, 320, 400)
    assert not ssl_model.model.training
    again = load_ssl_model(str(hubert_dir), "cpu", fp16=True)
    assert again.fp16 and again.hidden_size == 64
    wav = _wave(16_000, 1)
    assert torch.equal(extract_features(again, wav, fp16=False), extract_features(ssl_model, wav))


def test_loading_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SSLError, match="directory not found"):
        load_ssl_model(str(tmp_path / "absent"))
    with pytest.raises(SSLError, match="no config.json"):
        load_ssl_model(str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SSLError) as err:
        load_ssl_model("ar-vits-tests/no-such-hubert")
    msg = str(err.value)
    assert "offline" in msg and "huggingface-cli download ar-vits-tests/no-such-hubert" in msg
    assert "--ssl-model" in msg and "local directory" in msg


# ----------------------------------------------------------------------------- the script


def test_script_end_to_end(tmp_path: Path, hubert_dir: Path, ssl_model, capsys) -> None:
    dump = make_dump(tmp_path / "dump")
    first = _run(_args(dump, hubert_dir), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"processed {len(GOOD)}, skipped 0 (already done), rejected 2" in first.stdout
    for uid, n in GOOD.items():
        feats = load_features(dump / "ssl" / f"{uid}.pt")
        assert feats.shape == (64, n // HOP)
        # One path: the script's file equals the function's output on the same wav (stored as fp16).
        expected = extract_features(ssl_model, load_audio(dump / "wav32k" / f"{uid}.wav", SR)).half()
        torch.testing.assert_close(feats, expected, atol=2e-3, rtol=2e-3)
    rejected = _rejected(dump)
    assert set(rejected) == {CORRUPT, MISSING}
    assert rejected[MISSING].startswith("file not found") and "corrupt" in rejected[CORRUPT]
    assert sorted(p.name for p in (dump / "ssl").iterdir()) == sorted(f"{u}.pt" for u in GOOD)

    # The rerun (in this process, to save a start-up) skips everything and keeps the report.
    mtimes = {p.name: p.stat().st_mtime_ns for p in (dump / "ssl").iterdir()}
    report = (dump / "rejected.tsv").read_bytes()
    (dump / "ssl" / ".spk1_a.pt.tmp-99999").write_bytes(b"partial")  # left by a killed run
    extract_ssl_s2.main(extract_ssl_s2.build_parser().parse_args(_args(dump, hubert_dir)))
    assert f"processed 0, skipped {len(GOOD)} (already done), rejected 2" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (dump / "ssl").iterdir()} == mtimes  # temp file removed
    assert (dump / "rejected.tsv").read_bytes() == report


def test_script_redoes_invalid_outputs_and_overwrite(tmp_path: Path, hubert_dir: Path, capsys) -> None:
    dump = make_dump(tmp_path / "dump")
    args = extract_ssl_s2.build_parser().parse_args(_args(dump, hubert_dir))
    extract_ssl_s2.main(args)
    torch.save(torch.zeros(64, 3, dtype=torch.float16), dump / "ssl" / "spk1_a.pt")  # wrong length
    (dump / "ssl" / "spk1_b.pt").write_bytes(b"junk")
    capsys.readouterr()
    extract_ssl_s2.main(args)
    assert f"processed 2, skipped {len(GOOD) - 2}" in capsys.readouterr().out
    assert load_features(dump / "ssl" / "spk1_a.pt").shape == (64, GOOD["spk1_a"] // HOP)
    extract_ssl_s2.main(extract_ssl_s2.build_parser().parse_args(_args(dump, hubert_dir, TINY_S2, "--overwrite")))
    assert f"processed {len(GOOD)}, skipped 0" in capsys.readouterr().out


def test_script_rejects_nan_and_wrong_dim(tmp_path: Path, hubert_dir: Path, capsys) -> None:
    dump = make_dump(tmp_path / "dump")
    nan_dir = make_tiny_hubert(tmp_path / "nan-hubert", nan_weights=True)
    with pytest.raises(SystemExit, match="no item has features"):
        extract_ssl_s2.main(extract_ssl_s2.build_parser().parse_args(_args(dump, nan_dir)))
    rejected = _rejected(dump)
    assert all(rejected[uid].startswith("non-finite features") for uid in GOOD)
    assert not list((dump / "ssl").glob("*.pt"))
    assert "non-finite features: 5" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="hidden size 64.*ssl_dim = 768"):
        extract_ssl_s2.main(extract_ssl_s2.build_parser().parse_args(_args(dump, hubert_dir, FULL_S2)))


def test_fp16_nan_is_retried_in_fp32(tmp_path: Path, hubert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In --fp16 mode a non-finite result is retried in fp32; only a second failure rejects the item."""
    dump = make_dump(tmp_path / "dump")
    real = extract_ssl_s2.extract_features
    calls = []

    def fp16_overflows(model, wav, hop, sample_rate, fp16=None):
        calls.append(fp16)
        if fp16 is None:
            raise NonFiniteFeatures("non-finite features: NaN or inf in the HuBERT output (fp16)")
        return real(model, wav, hop=hop, sample_rate=sample_rate, fp16=fp16)

    monkeypatch.setattr(extract_ssl_s2, "extract_features", fp16_overflows)
    from common.config import S2Config, load_config

    model = load_ssl_model(str(hubert_dir), fp16=True)
    outcome = extract_ssl_s2.process(model, load_config(TINY_S2, S2Config), dump, "spk2_a", overwrite=False)
    assert outcome.status == "processed" and outcome.retried_fp32 and calls == [None, False]
    assert load_features(dump / "ssl" / "spk2_a.pt").shape == (64, GOOD["spk2_a"] // HOP)


def test_torchrun_extracts_each_item_once(tmp_path: Path, hubert_dir: Path, ssl_model) -> None:
    dump = make_dump(tmp_path / "dump")
    two = _run(_args(dump, hubert_dir), cwd=tmp_path, torchrun=2)
    assert two.returncode == 0, two.stderr
    # Merged counts: every good item processed once in total, each bad one rejected once.
    assert f"processed {len(GOOD)}, skipped 0 (already done), rejected 2" in two.stdout
    assert two.stdout.count("processed") == 1  # only rank 0 prints
    assert set(_rejected(dump)) == {CORRUPT, MISSING}
    assert sorted(p.name for p in (dump / "ssl").iterdir()) == sorted(f"{u}.pt" for u in GOOD)
    for uid in GOOD:
        expected = extract_features(ssl_model, load_audio(dump / "wav32k" / f"{uid}.wav", SR)).half()
        torch.testing.assert_close(load_features(dump / "ssl" / f"{uid}.pt"), expected, atol=2e-3, rtol=2e-3)
