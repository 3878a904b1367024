"""Atomic file writes: a temp file in the target directory, fsync, then ``os.replace``.

A reader (or a process killed mid-write) sees either the previous file or the new one,
never a partial file. Temp files are named ``.<name>.tmp-<pid>`` so they are never
mistaken for finished outputs and can be cleaned up by ``remove_stale_temps`` (only those of
writers that are no longer running). ``check_output_path`` is the check every script runs on
its output paths before any work: a path that cannot be written is one error naming it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

TMP_MARK = ".tmp-"
_TMP_PID = re.compile(r"^\..*\.tmp-(\d+)$")


class OutputPathError(OSError):
    """An output path that cannot be written (a directory where a file is meant, a file in the way,
    a read-only folder); the message names the path and the reason."""


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


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours: a temp file of this process that is not being written (called between writes)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_temps(directory: str | Path, report: Callable[[str], None] | None = None) -> int:
    """Delete temp files left in ``directory`` by writers that are no longer running; return how many.

    A temp file ``.<name>.tmp-<pid>`` is stale when no process ``pid`` runs (a killed writer);
    temp files of live processes (e.g. another rank still writing) are kept. With ``report``
    one line says how many files and bytes were removed (nothing is said when there were none).
    """
    n, size = 0, 0
    directory = Path(directory)
    if directory.is_dir():
        for p in directory.iterdir():
            m = _TMP_PID.match(p.name)
            if not p.name.startswith(".") or TMP_MARK not in p.name or (m and _writer_alive(int(m.group(1)))):
                continue
            with contextlib.suppress(FileNotFoundError):
                bytes_ = p.stat().st_size
                p.unlink()
                n, size = n + 1, size + bytes_
    if n and report is not None:
        report(f"removed {n} temp file(s) of killed runs ({size / 1e6:.1f} MB) in {directory}")
    return n


def check_output_path(path: str | Path, directory: bool = False, what: str = "output") -> Path:
    """Fail before any work when ``path`` cannot be written; return it as a ``Path``. Creates nothing.

    ``directory``: ``path`` is a folder to write into (it may exist), else a file (it must not be a
    folder). The nearest existing ancestor must be a folder in which a file can be created (tried
    with a temp file that is removed at once, so read-only folders and file systems are caught
    whoever runs). Raises ``OutputPathError`` naming ``what`` (e.g. ``-o``), the path and the reason.
    """
    path = Path(path)

    def fail(reason: str) -> None:
        raise OutputPathError(f"{what} {path}: {reason}")

    if directory and path.exists() and not path.is_dir():
        fail("exists and is not a directory")
    if not directory and path.is_dir():
        fail("is a directory; give a file name")
    folder = path if directory else path.parent
    existing = folder
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        fail(f"{existing} is {'a dangling link' if existing.is_symlink() else 'a file'}, not a directory")
    probe = existing / f".write-check{TMP_MARK}{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        fail(f"cannot create files in {existing} ({err.strerror or err})")
    os.close(fd)
    probe.unlink()
    return path
