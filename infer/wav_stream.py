"""Progressive audio output for ``tts.py --stream``: a growing WAV file, or raw PCM (a file or stdout).

WAV: the 44-byte header is written first with the RIFF and data sizes set to 0xFFFFFFFF
("unknown", the streaming convention that players following a growing file accept), every
chunk is appended and flushed at once, and ``close`` writes the real sizes, so the finished
file is an ordinary 16-bit PCM WAV (the same bytes ``common.audio.save_wav`` writes). Raw:
the same 16-bit little-endian mono samples with no header,
e.g. ``tts.py --stream -o - ... | ffplay -f s16le -ar 32000 -ac 1 -``. With ``out_rate`` the
chunks are resampled as they come (``soxr.ResampleStream``, the resampler ``common.audio``
uses). A stream that fails part-way removes its unfinished file.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soxr

UNKNOWN_SIZE = 0xFFFFFFFF


def wav_header(sample_rate: int, data_bytes: int = UNKNOWN_SIZE) -> bytes:
    """44-byte header of a mono 16-bit PCM WAV with ``data_bytes`` of samples (0xFFFFFFFF: unknown)."""
    riff = UNKNOWN_SIZE if data_bytes == UNKNOWN_SIZE else 36 + data_bytes
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", riff, b"WAVE", b"fmt ", 16, 1, 1, sample_rate,
                       sample_rate * 2, 2, 16, b"data", data_bytes)


def to_pcm16(audio: np.ndarray) -> bytes:
    """float [n] in [-1, 1] -> little-endian int16 bytes, as libsndfile converts for ``save_wav``
    (``floor(x · 32768)``, clipped; tests/test_stream.py checks the bytes are the same)."""
    x = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    return np.clip(np.floor(x * 32768.0), -32768, 32767).astype("<i2").tobytes()


class StreamWriter:
    """Write audio chunks as they come to ``path`` ('-' = stdout, always raw) as WAV or raw PCM."""

    def __init__(self, path: str | Path, sample_rate: int, raw: bool = False, out_rate: int | None = None):
        self.to_stdout = str(path) == "-"
        self.raw = raw or self.to_stdout
        self.rate = out_rate or sample_rate
        self.resampler = (soxr.ResampleStream(sample_rate, self.rate, 1, dtype="float32", quality="HQ")
                          if self.rate != sample_rate else None)
        self.path = None if self.to_stdout else Path(path)
        self.f: BinaryIO = sys.stdout.buffer if self.to_stdout else open(self.path, "wb")  # noqa: SIM115
        self.data_bytes = 0
        if not self.raw:
            self.f.write(wav_header(self.rate))
            self.f.flush()

    @property
    def seconds(self) -> float:
        return self.data_bytes / 2 / self.rate

    def write(self, audio: np.ndarray, last: bool = False) -> None:
        """Append float samples [n] at the input rate and flush."""
        audio = np.asarray(audio, dtype=np.float32)
        if self.resampler is not None:
            audio = self.resampler.resample_chunk(audio, last=last)
        data = to_pcm16(audio)
        self.f.write(data)
        self.f.flush()
        self.data_bytes += len(data)

    def close(self) -> None:
        """Flush the resampler and, for a WAV file, write the real sizes into the header."""
        if self.resampler is not None:
            self.write(np.zeros(0, dtype=np.float32), last=True)
        if not self.raw:
            self.f.seek(0)
            self.f.write(wav_header(self.rate, self.data_bytes))
        if not self.to_stdout:
            self.f.close()

    def abort(self) -> None:
        """Close and remove an unfinished file (stdout is left as it is)."""
        if not self.to_stdout:
            self.f.close()
            self.path.unlink(missing_ok=True)
