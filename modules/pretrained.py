"""Loading Hugging Face models (HuBERT, BERT) from a local ``save_pretrained`` folder or a hub id.

One rule for every pretrained helper model: a name that exists on disk, starts with ``.``,
``/`` or ``~``, or has more than one ``/`` is a local folder (it must hold ``config.json``);
anything else is a hub id, fetched from the hub or read from the Hugging Face cache (only the
cache when ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set). Every failure is one
``error`` naming the model and saying what to do (download it once, point the option at it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ModelKind:
    """How messages name a model: ``role`` (``"SSL"``), ``arch`` (``"HuBERT"``), CLI ``option``."""

    role: str
    arch: str
    option: str


def is_local(name_or_path: str) -> bool:
    """Whether ``name_or_path`` should be a local directory rather than a hub id."""
    p = Path(name_or_path).expanduser()
    return (p.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
            or "\\" in name_or_path)


def offline() -> bool:
    """Offline mode as the environment says now (huggingface_hub reads it only once, at import)."""
    from huggingface_hub import constants

    env = any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
              for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return env or bool(constants.HF_HUB_OFFLINE)


def load_pretrained(load: Callable[..., T], name_or_path: str, kind: ModelKind,
                    error: type[Exception]) -> tuple[T, str]:
    """``load(source, **kwargs)`` (e.g. a ``from_pretrained`` call) with clear errors; returns (result, source).

    ``kwargs`` is ``{"local_files_only": True}`` for a local folder or in offline mode. The
    transformers progress bars are off during the call (one bar per rank for a one-second load
    is noise). Raises ``error`` for a missing folder, a folder without ``config.json``, files
    that do not load, or a hub id that can be neither fetched nor found in the cache.
    """
    from transformers.utils import logging as hf_logging

    local = is_local(name_or_path)
    if local:
        path = Path(name_or_path).expanduser()
        if not path.is_dir():
            raise error(f"{kind.role} model directory not found: {path}")
        if not (path / "config.json").is_file():
            raise error(f"{path}: not a {kind.arch} model directory (no config.json); it should hold a "
                        "save_pretrained() copy, e.g. from `huggingface-cli download <id> --local-dir <dir>`")
        source, kwargs = str(path), {"local_files_only": True}
    else:
        source, kwargs = name_or_path, ({"local_files_only": True} if offline() else {})
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load(source, **kwargs), source
    except Exception as err:  # transformers/safetensors/tokenizers raise many types for bad or absent files
        if local or not isinstance(err, (OSError, ValueError)):
            raise error(f"{source}: cannot load the {kind.arch} model ({type(err).__name__}: {err})") from err
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        how = ("offline mode is on (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE) and it is not in the local cache"
               if offline() else f"it could not be fetched from the Hugging Face hub ({first_line})")
        raise error(f"cannot load {kind.role} model {source!r}: no local directory of that name, and {how}. "
                    "Download it once "
                    f"(`huggingface-cli download {source} --local-dir pretrained/{source.split('/')[-1]}`) "
                    f"and point {kind.option} at that local directory") from err
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
