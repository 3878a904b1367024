"""common/audio.py: loading at any rate/channels/bit depth, errors, atomic 16-bit saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from common.audio import AudioError, audio_info, load_audio, resample, save_wav


def tone(sr: int, seconds: float = 0.5, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def interior(x: np.ndarray, margin: int = 200) -> np.ndarray:
    return x[margin:-margin]


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 32000, 44100, 48000])
def test_any_rate_becomes_target_rate(tmp_path: Path, sr: int) -> None:
    path = tmp_path / f"{sr}.wav"
    sf.write(path, tone(sr), sr, subtype="PCM_16")
    out = load_audio(path, 32000)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 16000) <= 1
    # same tone at the target rate, away from the edges (resampler transients)
    np.testing.assert_allclose(interior(out), interior(tone(32000)[: len(out)]), atol=2e-3)


def test_channels_are_averaged(tmp_path: Path) -> None:
    x = tone(32000)
    sf.write(tmp_path / "cancel.wav", np.stack([x, -x], axis=1), 32000, subtype="FLOAT")
    z = np.zeros_like(x)
    sf.write(tmp_path / "half.wav", np.stack([x, z, x, z], axis=1), 32000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "cancel.wav", 32000), 0.0, atol=1e-7)
    np.testing.assert_allclose(load_audio(tmp_path / "half.wav", 32000), x / 2, atol=1e-7)


def test_stereo_48k_is_resampled_and_mixed(tmp_path: Path) -> None:
    x = tone(48000, freq=300.0)
    sf.write(tmp_path / "st.wav", np.stack([x, 0.5 * x], axis=1), 48000, subtype="PCM_16")
    out = load_audio(tmp_path / "st.wav", 32000)
    np.testing.assert_allclose(interior(out), interior(0.75 * tone(32000, freq=300.0)[: len(out)]), atol=2e-3)


@pytest.mark.parametrize(
    ("subtype", "atol"),
    [("PCM_U8", 1 / 64), ("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-6), ("FLOAT", 1e-7), ("DOUBLE", 1e-7)],
)
def test_bit_depths(tmp_path: Path, subtype: str, atol: float) -> None:
    x = tone(22050)
    sf.write(tmp_path / "a.wav", x, 22050, subtype=subtype)
    out = load_audio(tmp_path / "a.wav", 22050)
    np.testing.assert_allclose(out, x, atol=atol)  # 8-bit unsigned is centred, not offset by 0.5


def test_flac_and_float_overs_are_clipped(tmp_path: Path) -> None:
    x = tone(16000, amp=1.5)
    sf.write(tmp_path / "loud.wav", x, 16000, subtype="FLOAT")
    out = load_audio(tmp_path / "loud.wav", 16000)
    assert out.max() <= 1.0 and out.min() >= -1.0 and out.max() > 0.99
    sf.write(tmp_path / "a.flac", tone(16000), 16000)
    np.testing.assert_allclose(load_audio(tmp_path / "a.flac", 16000), tone(16000), atol=1e-4)


def write_truncated(path: Path, src: Path, n_bytes: int) -> Path:
    path.write_bytes(src.read_bytes()[:n_bytes])
    return path


def test_errors_name_file_and_reason(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, tone(16000), 16000, subtype="PCM_16")
    (tmp_path / "zero.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio at all", encoding="utf-8")
    cases = {
        tmp_path / "missing.wav": "file not found",
        tmp_path / "zero.wav": "zero-byte file",
        write_truncated(tmp_path / "trunc.wav", good, 20): "truncated or corrupt header",
        write_truncated(tmp_path / "header_only.wav", good, 44): "empty",
        tmp_path / "text.wav": "unreadable",
        tmp_path: "not a regular file",
    }
    for path, reason in cases.items():
        with pytest.raises(AudioError) as info:
            load_audio(path, 32000)
        assert info.value.reason.startswith(reason), (path, info.value.reason)
        assert str(path) in str(info.value)
    with pytest.raises(AudioError, match="truncated or corrupt header"):
        audio_info(tmp_path / "trunc.wav")


def test_nan_samples_are_an_error(tmp_path: Path) -> None:
    x = tone(16000)
    x[100] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="non-finite"):
        load_audio(tmp_path / "nan.wav", 16000)


def test_audio_info_reads_the_header(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros((2205, 3), np.float32), 22050, subtype="PCM_24")
    info = audio_info(tmp_path / "a.wav")
    assert (info.sample_rate, info.frames, info.channels) == (22050, 2205, 3)
    assert info.duration == pytest.approx(0.1)


def test_save_wav_round_trip_is_16bit_and_atomic(tmp_path: Path) -> None:
    x = tone(32000, amp=0.9)
    out = tmp_path / "sub" / "o.wav"
    save_wav(out, x, 32000)
    save_wav(out, x[:1000], 32000)  # overwrite in place
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (32000, 1, 1000, "PCM_16")
    np.testing.assert_allclose(load_audio(out, 32000), x[:1000], atol=1 / 32767)
    assert sorted(p.name for p in out.parent.iterdir()) == ["o.wav"]  # no temp file left behind
    with pytest.raises(ValueError, match="mono"):
        save_wav(tmp_path / "bad.wav", np.zeros((10, 2), np.float32), 32000)
    with pytest.raises(ValueError, match="non-finite"):
        save_wav(tmp_path / "bad.wav", np.full(10, np.inf, np.float32), 32000)
    assert not (tmp_path / "bad.wav").exists()


def test_resample_same_rate_is_identity() -> None:
    x = tone(32000)
    assert resample(x, 32000, 32000) is x
    assert len(resample(x, 32000, 16000)) == len(x) // 2
