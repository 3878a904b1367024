"""The reference (prompt) audio: a usable window, its prompt tokens and its style spectrogram.

Spec §4 and §10.13, failure modes 5, 6 and 11:

- Any file libsndfile reads, any sample rate, any channel count: loaded as mono at the S2
  rate (``common.audio.load_audio``). An empty or silent file is an error.
- Usable length ``min_seconds``..``max_seconds`` (default 3-10 s, as GPT-SoVITS requires).
  A longer reference is cut to a window of at most ``max_seconds`` that starts and ends in
  pauses and holds the most speech; a reference shorter than ``min_seconds`` but at least
  ``shortest_seconds`` (1 s) is used whole; below that it is an error. In both the cut and
  the short case the transcript no longer describes a proper prompt, so the reference is
  used **for style only** (no prompt phonemes, no prompt tokens) and a message says so.
- Prompt tokens: ``silence_seconds`` (0.3 s) of zeros are appended to the window at the S2
  rate (so the last word is not cut, failure mode 6), HuBERT features come from
  ``modules.ssl.extract_features`` (the function preprocessing uses), and the S2 quantizer
  turns them into tokens (fp32). GPT-SoVITS appends 9600 zero samples at 16 kHz (0.6 s,
  a rate mix-up); we append the stated 0.3 s.
- Style spectrogram: the linear spectrogram of the same window (no silence added), as in training.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common.audio import load_audio
from infer.errors import InferenceError
from infer.loading import LoadedS2
from modules.ssl import SSLModel, extract_features

log = logging.getLogger(__name__)

SILENCE_PEAK = 1e-3  # -60 dBFS: a reference whose peak stays below this is silent
QUIET_DB = -30.0  # a 20 ms frame this far below the loudest frame counts as a pause
FRAME_SECONDS = 0.02


@dataclass(frozen=True)
class ReferenceOptions:
    """Length rules for the reference (seconds) and the silence appended for prompt tokens."""

    min_seconds: float = 3.0
    max_seconds: float = 10.0
    shortest_seconds: float = 1.0
    silence_seconds: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.shortest_seconds <= self.min_seconds < self.max_seconds:
            raise InferenceError(f"reference lengths must satisfy 0 < shortest ({self.shortest_seconds}) <= min "
                                 f"({self.min_seconds}) < max ({self.max_seconds}) seconds")
        if self.silence_seconds < 0:
            raise InferenceError(f"reference silence must be >= 0 s, got {self.silence_seconds}")


@dataclass
class ReferenceAudio:
    """The part of the reference that is used.

    wav: [N] float32 at ``sample_rate`` (the window); start/end: the window in samples of the
    whole file at ``sample_rate``; style_only: True when the transcript must not be used as a
    prompt (the window was cut, or the reference is shorter than ``min_seconds``).
    """

    path: Path
    wav: np.ndarray
    sample_rate: int
    start: int
    end: int
    total_seconds: float
    style_only: bool
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.wav) / self.sample_rate


def frame_rms(wav: np.ndarray, hop: int) -> np.ndarray:
    """RMS of consecutive ``hop``-sample frames: [N] -> [N // hop]."""
    n = len(wav) // hop
    frames = wav[: n * hop].reshape(n, hop).astype(np.float64)
    return np.sqrt((frames**2).mean(axis=1))


def choose_window(wav: np.ndarray, sample_rate: int, min_seconds: float, max_seconds: float) -> tuple[int, int]:
    """A window ``[start, end)`` (samples) of ``min_seconds``..``max_seconds`` with clean edges and the most speech.

    Frames of 20 ms more than 30 dB below the loudest frame are pauses; the file's first and
    last frames count as clean edges too. Windows are ranked by the number of clean edges
    (a window that starts and ends in pauses cuts no word), then by the number of non-pause
    frames, then by the earliest start. For each start the window ends on the last clean
    frame that keeps it within the length limits, or at the maximum length if there is none.
    """
    hop = max(1, int(round(FRAME_SECONDS * sample_rate)))
    rms = frame_rms(wav, hop)
    n = len(rms)
    max_w = int(max_seconds * sample_rate) // hop
    min_w = min(max_w, int(np.ceil(min_seconds * sample_rate / hop)))
    if n <= max_w:
        return 0, len(wav)
    quiet = rms <= rms.max() * 10 ** (QUIET_DB / 20)
    speech = np.concatenate([[0], np.cumsum(~quiet)])  # speech[i] = non-pause frames in [0, i)
    clean = quiet.copy()
    clean[0] = clean[-1] = True
    clean_idx = np.flatnonzero(clean)
    best: tuple[int, int, int, int] | None = None  # (clean edges, speech frames, -start, end frame) -> max
    for s in range(n - min_w + 1):
        lo, hi = s + min_w - 1, min(s + max_w - 1, n - 1)  # last frame e of the window [s, e]
        j = int(np.searchsorted(clean_idx, hi, side="right")) - 1
        e = int(clean_idx[j]) if j >= 0 and clean_idx[j] >= lo else hi
        cand = (int(clean[s]) + int(clean[e]), int(speech[e + 1] - speech[s]), -s, e + 1)
        if best is None or cand > best:
            best = cand
    assert best is not None
    return -best[2] * hop, best[3] * hop


def load_reference(path: str | Path, sample_rate: int, opts: ReferenceOptions | None = None) -> ReferenceAudio:
    """Load ``path`` at ``sample_rate`` and pick the part to use (see the module docstring)."""
    opts = opts or ReferenceOptions()
    path = Path(path)
    wav = load_audio(path, sample_rate)  # AudioError names the file: missing, empty, unreadable
    total = len(wav) / sample_rate
    peak = float(np.abs(wav).max())
    if peak < SILENCE_PEAK:
        level = f"peak {20 * np.log10(peak):.0f} dBFS" if peak > 0 else "all samples are zero"
        raise InferenceError(f"{path}: the reference is silent ({level}); give a recording of the voice")
    if total < opts.shortest_seconds:
        raise InferenceError(f"{path}: the reference is too short ({total:.2f} s); it needs at least "
                             f"{opts.shortest_seconds:g} s, and {opts.min_seconds:g}-{opts.max_seconds:g} s work best")
    notes: list[str] = []
    start, end = 0, len(wav)
    style_only = False
    if total > opts.max_seconds:
        start, end = choose_window(wav, sample_rate, opts.min_seconds, opts.max_seconds)
        style_only = True
        notes.append(f"reference {path} is {total:.1f} s, longer than {opts.max_seconds:g} s: using "
                     f"{start / sample_rate:.2f}-{end / sample_rate:.2f} s of it, for voice style only (its "
                     "transcript no longer matches, so no text/audio prompt is used)")
    elif total < opts.min_seconds:
        style_only = True
        notes.append(f"reference {path} is {total:.1f} s, shorter than {opts.min_seconds:g} s: using it for voice "
                     "style only (no text/audio prompt); a 3-10 s reference gives a closer voice")
    window = np.ascontiguousarray(wav[start:end])
    if float(np.abs(window).max()) < SILENCE_PEAK:
        raise InferenceError(f"{path}: the chosen reference window {start / sample_rate:.2f}-{end / sample_rate:.2f} s "
                             "is silent")
    for note in notes:
        log.info("%s", note)
    return ReferenceAudio(path=path, wav=window, sample_rate=sample_rate, start=start, end=end, total_seconds=total,
                          style_only=style_only, notes=notes)


@torch.inference_mode()
def reference_spectrogram(wav: np.ndarray, s2: LoadedS2) -> Tensor:
    """Linear spectrogram of the reference window: [N] at the S2 rate -> [1, F, N // hop] on S2's device."""
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)).to(s2.device)[None]  # [1, N]
    return s2.spectrogram()(x)


@torch.inference_mode()
def audio_tokens(wav: np.ndarray, ssl: SSLModel, s2: LoadedS2) -> Tensor:
    """Semantic tokens of a waveform [N] at the S2 rate: HuBERT -> S2 quantizer (fp32) -> CPU LongTensor [P]."""
    if ssl.hidden_size != s2.cfg.data.ssl_dim:
        raise InferenceError(f"SSL model {ssl.source} has hidden size {ssl.hidden_size}, but the S2 checkpoint "
                             f"{s2.path} expects data.ssl_dim = {s2.cfg.data.ssl_dim}: pass the HuBERT it was "
                             "trained with (--ssl-model)")
    feats = extract_features(ssl, wav, hop=s2.hop_length, sample_rate=s2.sample_rate, fp16=False)  # [D, T50]
    codes = s2.generator.extract_codes(feats[None].to(s2.device, torch.float32))  # [1, T50 // fpt]
    return codes[0].to("cpu", torch.long)


def prompt_tokens(ref: ReferenceAudio, ssl: SSLModel, s2: LoadedS2, silence_seconds: float = 0.3) -> Tensor:
    """Semantic tokens of the reference window + ``silence_seconds`` of zeros: CPU LongTensor [P]."""
    if ref.sample_rate != s2.sample_rate:
        raise InferenceError(f"{ref.path}: loaded at {ref.sample_rate} Hz but S2 works at {s2.sample_rate} Hz")
    pad = np.zeros(int(round(silence_seconds * ref.sample_rate)), dtype=np.float32)
    return audio_tokens(np.concatenate([ref.wav, pad]), ssl, s2)


def reference_meta(ref: ReferenceAudio, opts: ReferenceOptions, lang: str) -> dict:
    """Tokens-file metadata about the reference (s2_infer.py re-cuts the same window from it)."""
    return {"reference": str(ref.path), "reference_window": [ref.start, ref.end],
            "reference_options": asdict(opts), "style_only": ref.style_only, "lang": lang}

