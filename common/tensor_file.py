"""Per-utterance feature files: one fp16 ``[D, T]`` CPU tensor per file, written atomically.

Used for ``dump/ssl/<id>.pt`` (HuBERT features, ``modules.ssl``) and ``dump/bert/<id>.pt``
(BERT word features, ``modules.bert``); those modules wrap these errors in their own.
"""

from __future__ import annotations

from pathlib import Path

import torch

from common.fileio import atomic_write_with


class TensorFileError(ValueError):
    """A feature file that is missing, unreadable or not an fp16 ``[D, T]`` tensor; names the file."""


class NonFiniteTensor(TensorFileError):
    """Values that do not fit fp16 storage (NaN, inf, or beyond ±65504)."""


def save_fp16(path: str | Path, feats: torch.Tensor) -> torch.Tensor:
    """Write ``feats`` [D, T] as an fp16 CPU tensor, atomically; return what was written.

    Raises ``NonFiniteTensor`` when the values do not fit fp16 (nothing is written).
    """
    half = feats.detach().to("cpu", torch.float16).contiguous()  # [D, T]
    if not torch.isfinite(half).all():
        raise NonFiniteTensor("non-finite features: values overflow fp16 storage")
    atomic_write_with(path, lambda f: torch.save(half, f))
    return half


def load_fp16(path: str | Path, mmap: bool = False) -> torch.Tensor:
    """Read a feature file: fp16 [D, T]. ``mmap`` maps the data instead of reading it (cheap checks)."""
    path = Path(path)
    if not path.is_file():
        raise TensorFileError(f"{path}: features file not found")
    try:
        feats = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise TensorFileError(f"{path}: cannot read features ({type(err).__name__}: {err})") from err
    if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or feats.dtype != torch.float16:
        what = f"{feats.dtype} tensor of shape {tuple(feats.shape)}" if isinstance(feats, torch.Tensor) else type(feats)
        raise TensorFileError(f"{path}: expected an fp16 [D, T] tensor, got {what}")
    return feats
