"""Load, resample and save audio.

``load_audio`` accepts anything libsndfile reads (WAV in 8-bit unsigned, 16/24/32-bit
integer or float, FLAC, OGG, MP3, ...), at any sample rate and channel count, and returns
mono float32 in [-1, 1] at the requested rate (soxr, high quality). Every failure raises
``AudioError`` naming the file and the reason (``file not found``, ``broken symlink``, ``symlink
loop``, ``not a regular file``, ...), so a stage can report it and go on.
``save_wav`` writes 16-bit PCM through a temp file and an atomic rename: a killed writer
never leaves a partial wav under the final name.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from common.fileio import atomic_open

# Leading bytes of containers libsndfile reads; a file that starts like one of these but
# cannot be opened has a truncated or corrupt header rather than an unknown format.
_MAGICS = (b"RIFF", b"RIFX", b"RF64", b"FORM", b"fLaC", b"OggS", b"ID3", b".snd", b"caff")


class AudioError(ValueError):
    """An audio file that cannot be used; ``reason`` is short and groupable."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def _check_file(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        try:
            path.stat()
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise AudioError(path, "symlink loop: the link never reaches a file") from None
        raise AudioError(path, f"broken symlink: its target {os.readlink(path)} does not exist")
    if not path.exists():
        raise AudioError(path, "file not found")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(path, "zero-byte file")


def _open_error(path: Path, err: Exception) -> AudioError:
    with open(path, "rb") as f:
        head = f.read(4)
    detail = str(getattr(err, "error_string", "") or err).strip()
    if head.startswith(_MAGICS):
        return AudioError(path, f"truncated or corrupt header: {detail}")
    return AudioError(path, f"unreadable: not a recognised audio format ({detail})")


def audio_info(path: str | Path) -> AudioInfo:
    """Sample rate, frame count and channels from the header only (no decoding)."""
    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise _open_error(path, err) from err
    return AudioInfo(sample_rate=int(info.samplerate), frames=int(info.frames), channels=int(info.channels))


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono ``audio`` [T] with soxr (HQ); a no-op when the rates are equal."""
    if orig_sr == target_sr:
        return audio
    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | Path, target_sr: int, clip: bool = True) -> np.ndarray:
    """Read ``path`` as mono float32 [T] in [-1, 1] at ``target_sr`` Hz.

    Channels are averaged; the file is opened read-only. ``clip=False`` leaves resampling
    overshoot beyond [-1, 1] as it is (as ``librosa.load`` does). Raises ``AudioError`` for a
    missing, zero-byte, unreadable, truncated or empty file, or non-finite samples.
    """
    path = Path(path)
    _check_file(path)
    try:
        f = sf.SoundFile(str(path), mode="r")
    except (sf.LibsndfileError, RuntimeError) as err:
        raise _open_error(path, err) from err
    with f:
        sr = int(f.samplerate)
        try:
            data = f.read(dtype="float32", always_2d=True)  # [T, C]
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(path, f"unreadable: {err}") from err
    if data.shape[0] == 0:
        raise AudioError(path, "empty: no audio samples")
    if not np.isfinite(data).all():
        raise AudioError(path, "unreadable: non-finite samples (NaN or inf)")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # [T]
    mono = resample(np.ascontiguousarray(mono, dtype=np.float32), sr, target_sr)
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False) if clip else mono


def save_wav(path: str | Path, audio: np.ndarray, sr: int) -> None:
    """Write mono ``audio`` [T] (float in [-1, 1]) as 16-bit PCM WAV, atomically."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"save_wav {path}: expected mono audio [T], got shape {tuple(audio.shape)}")
    if not np.isfinite(audio).all():
        raise ValueError(f"save_wav {path}: audio has non-finite samples")
    pcm = np.clip(audio.astype(np.float32, copy=False), -1.0, 1.0)
    with atomic_open(path, "wb") as f:
        sf.write(f, pcm, sr, format="WAV", subtype="PCM_16")
