"""Objective measures of learning, shared by the trainers' tensorboard logs, the demo and bench/learn.py.

Every measure compares a model's output on *held-out* utterances with the recording, and is
reported next to the same measure of an untrained model (same config, same seed), so that a
number is never read alone:

- S2 resynthesis (recording -> HuBERT -> S2 tokens -> decode with the item's phonemes and its
  own spectrogram as style): ``mel_l1``, the mean absolute difference of the natural-log mel
  spectrograms (lower is better), and ``env_corr``, the Pearson correlation of the frame
  energy envelopes in dB (higher is better; syllables and pauses are what make it high).
  ``path="posterior"`` decodes the posterior sample of the recording's spectrogram instead
  (no tokens, no prior, no flow): the decoder's own ceiling.
- S1: teacher-forced top-1 accuracy of the next semantic token, and the ratio of generated
  to true token counts for the held-out text (1 is right; an S1 that never stops gives its cap).
- Text to speech against the recording of the same text by the same voice:
  ``mcd``, mel-cepstral distortion in dB after DTW alignment (lower is better).

The signal measures take numpy waveforms at one sample rate; the model measures take the
objects the trainers and ``infer.loading`` already hold and import nothing at module level
beyond the spectrogram module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from modules.spectrogram import MelSpectrogram

ENERGY_FLOOR_DB = 50.0  # frame energies are floored this far below the signal's loudest frame
MCD_COEFFS = 24  # cepstral coefficients 1..24 (c0, the energy, left out)
MCD_N_MELS = 40
MCD_K = 10.0 / math.log(10.0) * math.sqrt(2.0)


# --------------------------------------------------------------------------- signal measures


def frame_energy_db(wav: np.ndarray, hop: int, floor_db: float = ENERGY_FLOOR_DB) -> np.ndarray:
    """wav: [N] -> [N // hop] frame RMS in dB, floored ``floor_db`` below the loudest frame."""
    n = len(wav) // hop
    if n == 0:
        return np.zeros(0)
    frames = np.asarray(wav[: n * hop], dtype=np.float64).reshape(n, hop)
    db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return np.maximum(db, db.max() - floor_db)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-length vectors; 0 when either is constant."""
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def envelope_correlation(ref: np.ndarray, test: np.ndarray, hop: int) -> float:
    """Correlation of the dB frame-energy envelopes of ``ref`` and ``test`` ([N] each), over the
    frames both have (a resynthesis matches its recording to within one token)."""
    e_ref, e_test = frame_energy_db(ref, hop), frame_energy_db(test, hop)
    n = min(len(e_ref), len(e_test))
    if n < 2:
        raise ValueError(f"need at least 2 frames of {hop} samples to correlate envelopes, got {n}")
    return pearson(e_ref[:n], e_test[:n])


def log_mel_l1(ref: np.ndarray, test: np.ndarray, mel: MelSpectrogram) -> float:
    """Mean |log-mel(ref) - log-mel(test)| over the frames both have (``mel`` as in training)."""
    pair = torch.from_numpy(np.stack([_fit(ref, len(ref)), _fit(test, len(ref))]))
    m = mel(pair.to(mel.spectrogram.window.device))  # [2, n_mels, T]
    n = min(len(ref), len(test)) // mel.spectrogram.hop_length
    return float((m[0, :, :n] - m[1, :, :n]).abs().mean())


def _fit(wav: np.ndarray, n: int) -> np.ndarray:
    """``wav`` cut or zero-padded to ``n`` samples (float32)."""
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, len(wav))] = wav[:n]
    return out


def mel_cepstra(wav: np.ndarray, sample_rate: int, top_db: float = 40.0) -> np.ndarray:
    """[T, MCD_COEFFS] cepstra (DCT of the natural-log mel magnitude, 25 ms / 5 ms frames, c1..c24)
    of ``wav`` with leading and trailing silence (``top_db`` below the peak) trimmed."""
    import librosa
    import scipy.fft

    wav = np.asarray(wav, dtype=np.float32)
    trimmed, _ = librosa.effects.trim(wav, top_db=top_db)
    if len(trimmed) >= sample_rate // 20:
        wav = trimmed
    n_fft, hop = int(0.025 * sample_rate), int(0.005 * sample_rate)
    spec = np.abs(librosa.stft(wav, n_fft=n_fft, hop_length=hop, win_length=n_fft, center=True))
    mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=MCD_N_MELS) @ spec  # [n_mels, T]
    cep = scipy.fft.dct(np.log(np.maximum(mel, 1e-5)), type=2, norm="ortho", axis=0)
    return cep[1: MCD_COEFFS + 1].T


def mcd_dtw(ref: np.ndarray, test: np.ndarray, sample_rate: int) -> float:
    """Mel-cepstral distortion (dB) between two renderings of one text, averaged over the DTW path."""
    import librosa

    a, b = mel_cepstra(ref, sample_rate), mel_cepstra(test, sample_rate)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("mcd_dtw: a signal is shorter than two frames")
    _, path = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
    diff = a[path[:, 0]] - b[path[:, 1]]
    return float(MCD_K * np.sqrt((diff**2).sum(axis=1)).mean())


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class Measure:
    """One figure of a trained model beside the same figure of the untrained one."""

    name: str
    trained: float
    untrained: float
    higher_is_better: bool
    target: float | None = None  # the ideal value when it is neither end of the scale (a ratio of 1)
    margin: float = 0.0  # the least gain that counts as learned (in the measure's units; |log| for a target)

    def distance(self, value: float) -> float:
        return abs(math.log(max(value, 1e-6) / self.target)) if self.target is not None else value

    @property
    def gain(self) -> float:
        """How much better the trained model is (negative: worse)."""
        if self.target is not None:
            return self.distance(self.untrained) - self.distance(self.trained)
        return self.trained - self.untrained if self.higher_is_better else self.untrained - self.trained

    @property
    def improved(self) -> bool:
        """Better than the untrained model by more than ``margin``."""
        return self.gain > self.margin

    def row(self) -> str:
        better = ("closer to 1" if self.target is not None
                  else "higher is better" if self.higher_is_better else "lower is better")
        verdict = ("learned" if self.improved else "worse than untrained" if self.gain < -self.margin
                   else "no clear change")
        return f"{self.name:<42} {self.trained:>9.3f} {self.untrained:>11.3f}   {better:<17} {verdict}"


def format_measures(measures: Sequence[Measure], title: str = "held-out measures") -> str:
    head = f"{title:<42} {'trained':>9} {'untrained':>11}"
    return "\n".join([head, "-" * len(head)] + [m.row() for m in measures])


def mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


# --------------------------------------------------------------------------- model measures


@torch.no_grad()
def s2_resynthesis(net: torch.nn.Module, ssl: Tensor, spec: Tensor, phones: Tensor, path: str = "prior",
                   noise_scale: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """One held-out item through an S2 generator in eval mode.

    ssl: [D, T] features; spec: [F, T] linear spectrogram (also the style reference); phones: [L]
    ids -> wav [T' · hop] with T' = T rounded down to whole tokens. ``path="prior"``: tokens ->
    prior -> flow⁻¹ -> decoder (what inference does); ``"posterior"``: the spectrogram's posterior
    sample -> decoder (needs ``enc_q``).
    """
    fpt = net.frames_per_token
    n = spec.size(1) // fpt * fpt
    ssl, spec = ssl[None, :, :n], spec[None, :, :n]  # [1, D, n], [1, F, n]
    if path == "prior":
        text = phones[None]
        codes = net.extract_codes(ssl)  # [1, n / fpt]
        return net.decode(codes, text, torch.tensor([text.size(1)], device=text.device), spec,
                          noise_scale=noise_scale, generator=generator)[0, 0]
    if path != "posterior":
        raise ValueError(f"path must be 'prior' or 'posterior', got {path!r}")
    mask = torch.ones(1, 1, n, device=spec.device)
    ge = net.ref_enc(spec, mask)
    z, _, _ = net.enc_q(spec, mask, g=ge, generator=generator)
    return net.dec(z, g=ge)[0, 0]


@torch.no_grad()
def s2_resynthesis_scores(net: torch.nn.Module, examples: Sequence, mel: MelSpectrogram, hop: int,
                          path: str = "prior", seed: int = 0) -> dict[str, float]:
    """Mean ``mel_l1`` and ``env_corr`` of the resynthesis of ``examples`` (``s2.data.S2Example``:
    ``wav [N]``, ``spec [F, T]``, ``ssl [D, T]``, ``phones [L]``) against their recordings."""
    device = next(net.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    l1, corr = [], []
    for ex in examples:
        wav = s2_resynthesis(net, ex.ssl.float().to(device), ex.spec.to(device), ex.phones.to(device), path,
                             generator=gen).cpu().numpy()
        rec = ex.wav.numpy()[: len(wav)]
        l1.append(log_mel_l1(rec, wav, mel))
        corr.append(envelope_correlation(rec, wav, hop))
    return {"mel_l1": mean(l1), "env_corr": mean(corr)}
