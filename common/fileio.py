"""Atomic file writes: a temp file in the target directory, fsync, then ``os.replace``.

A reader (or a process killed mid-write) sees either the previous file or the new one,
never a partial file. Temp files are named ``.<name>.tmp-<pid>`` so they are never
mistaken for finished outputs and can be cleaned up by ``remove_stale_temps``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

TMP_MARK = ".tmp-"


def temp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temp file beside ``path``; on a clean exit it replaces ``path`` atomically.

    On any exception the temp file is removed and ``path`` is left untouched. An ``OSError``
    that names no file (e.g. a full disk while a writer fills the file object) is raised again
    with ``path`` as its file name, so the message says which output could not be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(err, OSError) and err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_with(path: str | Path, writer: Callable[[IO], None]) -> None:
    """Call ``writer(file)`` on a binary temp file, then move it into place."""
    with atomic_open(path, "wb") as f:
        writer(f)


def remove_stale_temps(directory: str | Path) -> int:
    """Delete temp files left by killed writers in ``directory``; return how many."""
    n = 0
    directory = Path(directory)
    if directory.is_dir():
        for p in directory.iterdir():
            if p.name.startswith(".") and TMP_MARK in p.name:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    n += 1
    return n
