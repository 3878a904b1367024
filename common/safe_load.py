"""Read ``.pt``/``.pth``/``.ckpt`` files without ever running code stored in them.

Every checkpoint is read with ``torch.load(weights_only=True)``: the unpickler builds only
tensors and plain containers, and refuses any other global a file names (``os.system``,
``builtins.exec``, a class's ``__reduce__`` ...) before calling it. One foreign class is
allowed: GPT-SoVITS pickles the ``config`` of its exported SoVITS weights as an instance of
its ``utils.HParams`` (a namespace of nested settings). That name is mapped to
``HParamsStandIn``, a class of our own whose only behaviour is to keep the attribute
dictionary it is given; ``safe_load`` then turns every stand-in into a plain nested ``dict``,
so callers never see it. GPT-SoVITS's own ``utils`` module is never imported.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

HPARAMS_GLOBAL = "utils.HParams"  # how GPT-SoVITS's pickles name their config class


class UnsafeFileError(RuntimeError):
    """A file cannot be read as plain weights (foreign code in its pickle, or not a torch file)."""


class HParamsStandIn:
    """Receives the state of a pickled GPT-SoVITS ``utils.HParams``; never used directly."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _plain(x: Any) -> Any:
    """Replace every ``HParamsStandIn`` inside ``x`` by a plain ``dict`` (recursively)."""
    if isinstance(x, HParamsStandIn):
        state = getattr(x, "state", {})
        if isinstance(state, tuple) and len(state) == 2:  # (dict_state, slot_state) form
            state = {**(state[0] or {}), **(state[1] or {})}
        return {k: _plain(v) for k, v in dict(state or {}).items()}
    if isinstance(x, dict):
        out = OrderedDict() if isinstance(x, OrderedDict) else {}
        for k, v in x.items():
            out[k] = _plain(v)
        return out
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_plain(v) for v in x)
    return x


def _refusal(path: Path, err: Exception) -> str:
    """A one-line reason for an unpickling refusal, naming the global the file asked for."""
    text = str(err)
    m = (re.search(r"GLOBAL (\S+)", text) or re.search(r"unrecognized function (\S+)", text)
         or re.search(r"but got (<[^>]+>)", text))
    what = f" ({m.group(1)})" if m else ""
    return (f"{path}: refused: its pickle asks to run or build something other than weights and plain data"
            f"{what}; nothing from it was executed. Only load files from sources you trust, and re-save them "
            "as plain weights")


_LEGACY_TORCH_HEAD = b"\x80\x02\x8a\x0a"  # pickle protocol 2, then torch's 10-byte magic number


def _not_torch(path: Path) -> str | None:
    """What ``path`` is when it is not a PyTorch file (zip with a ``data.pkl``, or the legacy format), else None."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                if any(n == "data.pkl" or n.endswith("/data.pkl") for n in z.namelist()):
                    return None
        except zipfile.BadZipFile:
            return None  # a torch zip cut short: torch.load names the damage
        return "a zip archive without PyTorch data, e.g. a NumPy .npz"
    if head.startswith(_LEGACY_TORCH_HEAD):
        return None
    if not head:
        return "an empty file"
    kinds = {b"RIFF": "a WAV (RIFF) file", b"\x93NUMPY": "a NumPy .npy array", b"\x80": "a Python pickle",
             b"\x89HDF": "an HDF5 file", b"fLaC": "a FLAC file", b"ID3": "an MP3 file", b"OggS": "an Ogg file"}
    for magic, kind in kinds.items():
        if head.startswith(magic):
            return kind
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "of an unknown format"


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` that also reads GPT-SoVITS's pickled HParams configs.

    Raises ``UnsafeFileError`` with a one-line message for a file that is not a PyTorch file at
    all (a wav, a text, a NumPy array: recognised by its first bytes, so torch's own advice to
    turn weights-only loading off is never shown), for a pickle that would run code (nothing
    of it runs) and for a damaged file; ``OSError`` subclasses for missing/unreadable files.
    """
    path = Path(path)
    kind = _not_torch(path)
    if kind is not None:
        raise UnsafeFileError(f"{path}: not a PyTorch checkpoint file ({kind})")
    try:
        with torch.serialization.safe_globals([(HParamsStandIn, HPARAMS_GLOBAL)]):
            raw = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeFileError(_refusal(path, err)) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, IndexError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeFileError(f"{path}: cannot read checkpoint file ({type(err).__name__}: {first})") from None
    return _plain(raw)
