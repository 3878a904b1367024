"""HuBERT loading and the one feature-extraction function used by preprocessing and inference.

Conventions (spec §4, §3.2; the same everywhere so training and inference features match):

- Input: a mono waveform at 32 kHz, float in [-1, 1]. It is resampled to 16 kHz with soxr
  (``common.audio.resample``, the resampler of the whole pipeline) and fed to the model
  **as is**: no peak normalisation, no extra gain, no zero-mean/unit-variance
  normalisation (the GPT-SoVITS v1 convention: the feature extractor is bypassed). HuBERT
  base normalises each channel over time after its first conv, so the features depend
  only weakly on the input gain; callers must still not rescale audio on one path only.
- Output: ``last_hidden_state`` of the model in eval mode (no SpecAugment), as ``[D, T]``
  float32, with ``T = N // hop`` (the spectrogram frame count of the 32 kHz wav).
  HuBERT gives ``floor((N16 - 400) / 320) + 1`` frames, equal to ``N // 640`` or one
  fewer; the last frame is replicated to pad (or the sequence trimmed). A difference of
  more than ``MAX_FRAME_MISMATCH`` frames means a wrong model or hop and is an error.
- fp16 (optional) runs the model under autocast (weights stay fp32); outputs are always
  checked for NaN/inf, and a non-finite result raises ``NonFiniteFeatures`` so the caller
  can retry in fp32 or reject the item. Features are stored as fp16 (``save_features``),
  which refuses values that overflow it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from common.audio import resample
from common.manifest import SSL_DIR  # dump/ssl/<id>.pt: fp16 [D, T] features
from common.tensor_file import NonFiniteTensor, TensorFileError, load_fp16, save_fp16
from modules.pretrained import ModelKind, load_pretrained

if TYPE_CHECKING:
    from transformers import HubertModel

SSL_SAMPLE_RATE = 16000
MAX_FRAME_MISMATCH = 2
# Keys a HuBERT checkpoint may lack without harm in eval mode (the SpecAugment mask vector).
_OPTIONAL_KEYS = ("masked_spec_embed",)
SSL_KIND = ModelKind(role="SSL", arch="HuBERT", option="--ssl-model")


class SSLError(RuntimeError):
    """The SSL model cannot be loaded, or gave no usable features for an input."""


class NonFiniteFeatures(SSLError):
    """The model output has NaN or inf (typically fp16 overflow); retrying in fp32 may help."""


@dataclass
class SSLModel:
    model: HubertModel = field(repr=False)  # eval mode, fp32 weights
    device: torch.device
    fp16: bool  # run under fp16 autocast by default
    hidden_size: int  # feature dimension D
    samples_per_frame: int  # at 16 kHz: product of the conv strides (320 for 50 Hz)
    receptive_field: int  # at 16 kHz: samples needed for one frame (400)
    source: str  # the directory or hub id it was loaded from


def feature_path(dump: str | Path, uid: str) -> Path:
    """Where the features of utterance ``uid`` live in the dump directory."""
    return Path(dump) / SSL_DIR / f"{uid}.pt"


def save_features(path: str | Path, feats: torch.Tensor) -> torch.Tensor:
    """Write ``feats`` [D, T] as an fp16 CPU tensor, atomically; return what was written.

    Raises ``NonFiniteFeatures`` when the values do not fit fp16 (nothing is written).
    """
    try:
        return save_fp16(path, feats)
    except NonFiniteTensor as err:
        raise NonFiniteFeatures(str(err)) from None


def load_features(path: str | Path, mmap: bool = False) -> torch.Tensor:
    """Read a features file: fp16 [D, T]. ``mmap`` maps the data instead of reading it (cheap checks).

    Raises ``SSLError`` naming the file for a missing, unreadable or malformed file.
    """
    try:
        return load_fp16(path, mmap)
    except TensorFileError as err:
        raise SSLError(str(err)) from err


def load_ssl_model(name_or_path: str, device: str | torch.device = "cpu", fp16: bool = False) -> SSLModel:
    """Load a HuBERT ``HubertModel`` from a local directory (``save_pretrained`` layout) or a hub id.

    A hub id needs network access or the Hugging Face cache; without either the error says
    to download the model or pass a local directory. Weights stay fp32; ``fp16`` makes
    ``extract_features`` use fp16 autocast by default.
    """
    from transformers import HubertModel  # imported here: transformers takes seconds to import

    device = torch.device(device)
    (model, info), source = load_pretrained(
        lambda src, **kw: HubertModel.from_pretrained(src, output_loading_info=True, **kw),
        name_or_path, SSL_KIND, SSLError)
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith(_OPTIONAL_KEYS))
    if missing:
        raise SSLError(f"{source}: checkpoint does not fit HubertModel; {len(missing)} weight(s) missing "
                       f"(would be random): {', '.join(missing[:5])}")
    cfg = model.config
    stride = math.prod(cfg.conv_stride)
    span = 1
    for k, s in zip(reversed(cfg.conv_kernel), reversed(cfg.conv_stride)):
        span = (span - 1) * s + k
    model.eval().to(device)
    return SSLModel(model=model, device=device, fp16=fp16, hidden_size=int(cfg.hidden_size),
                    samples_per_frame=stride, receptive_field=span, source=source)


def _as_numpy(wav: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().to("cpu", torch.float32).numpy()
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise SSLError(f"expected a mono waveform [N], got shape {tuple(wav.shape)}")
    if not np.issubdtype(wav.dtype, np.floating):
        raise SSLError(f"expected a float waveform in [-1, 1], got dtype {wav.dtype}")
    if not np.isfinite(wav).all():
        raise SSLError("non-finite input: the waveform has NaN or inf samples")
    return np.ascontiguousarray(wav, dtype=np.float32)


def align_frames(feats: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Pad ``feats`` [D, T] by replicating its last frame, or trim it, to ``n_frames`` frames."""
    diff = n_frames - feats.shape[1]
    if abs(diff) > MAX_FRAME_MISMATCH:
        raise SSLError(f"frame mismatch: HuBERT gave {feats.shape[1]} frames where the spectrogram has {n_frames} "
                       f"(more than {MAX_FRAME_MISMATCH} apart: wrong model frame rate or hop length)")
    if diff > 0:
        return torch.cat([feats, feats[:, -1:].expand(-1, diff)], dim=1)
    return feats[:, :n_frames]


def extract_features(model: SSLModel, wav32k: np.ndarray | torch.Tensor, hop: int = 640,
                     sample_rate: int = 32000, fp16: bool | None = None) -> torch.Tensor:
    """HuBERT features of one waveform, aligned to its spectrogram frames.

    ``wav32k``: [N] float in [-1, 1] at ``sample_rate`` Hz. Returns [D, N // hop] float32 on
    ``model.device``. ``fp16=None`` uses the model's default. Raises ``SSLError`` (reason
    first, then detail) for a bad input, an input shorter than one HuBERT frame, a
    mismatched frame rate or non-finite features.
    """
    if hop * SSL_SAMPLE_RATE != model.samples_per_frame * sample_rate:
        raise SSLError(f"frame rate mismatch: hop {hop} at {sample_rate} Hz is not one HuBERT frame of "
                       f"{model.samples_per_frame} samples at {SSL_SAMPLE_RATE} Hz")
    wav = _as_numpy(wav32k)
    n_frames = len(wav) // hop
    wav16 = resample(wav, sample_rate, SSL_SAMPLE_RATE)  # [N16]
    if len(wav16) < model.receptive_field or n_frames == 0:
        raise SSLError(f"too short: {len(wav)} samples at {sample_rate} Hz is less than one HuBERT frame")
    use_fp16 = model.fp16 if fp16 is None else fp16
    x = torch.from_numpy(wav16).to(model.device).unsqueeze(0)  # [1, N16]
    with torch.no_grad(), torch.autocast(model.device.type, dtype=torch.float16, enabled=use_fp16):
        hidden = model.model(x).last_hidden_state  # [1, T50, D]
    feats = hidden[0].transpose(0, 1).float()  # [D, T50]
    if not torch.isfinite(feats).all():
        precision = "fp16" if use_fp16 else "fp32"
        raise NonFiniteFeatures(f"non-finite features: NaN or inf in the HuBERT output ({precision})")
    return align_frames(feats, n_frames)
