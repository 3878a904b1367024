"""Cheap views of the shared session dumps for the reliability tests (no pipeline rerun).

``view_dump`` makes a new dump directory whose big folders (``wav32k/``, ``ssl/``) are
symlinks to the shared dump's and whose tables are copies, so a test can damage or shorten
a table, or replace one file in a folder it asked to copy, without touching the shared
fixture. ``small_s2_dump`` also shortens the S2 lists so that a training step and a
checkpoint take about a second on a CPU.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from common.manifest import S2_TRAIN_LIST, S2_VAL_LIST, SSL_DIR, WAV_DIR, read_s2_list, write_s2_list
from tests.pipeline import S1Dump, S2Dump

BIG_DIRS = (WAV_DIR, SSL_DIR)


def view_dump(src: Path, dst: Path, copy_dirs: tuple[str, ...] = ()) -> Path:
    """``dst`` with every top-level file of ``src`` copied, ``wav32k/`` and ``ssl/`` symlinked.

    A folder named in ``copy_dirs`` becomes a real folder of per-file symlinks instead, so single
    files in it can be replaced (unlink, then write) while the rest stay shared.
    """
    dst.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.is_file():
            shutil.copy2(entry, dst / entry.name)
        elif entry.name in copy_dirs:
            (dst / entry.name).mkdir()
            for f in entry.iterdir():
                os.symlink(f.resolve(), dst / entry.name / f.name)
        elif entry.name in BIG_DIRS:
            os.symlink(entry.resolve(), dst / entry.name)
    return dst


def small_s2_dump(src: S2Dump, dst: Path, n_train: int = 6, n_val: int = 1, min_frames: int = 21,
                  copy_dirs: tuple[str, ...] = ()) -> S2Dump:
    """A view of ``src`` listing its ``n_train`` shortest training items of at least ``min_frames`` frames
    (the tiny config's first bucket starts above 20) and its ``n_val`` shortest validation items."""
    view_dump(src.dump, dst, copy_dirs)
    for name, n in ((S2_TRAIN_LIST, n_train), (S2_VAL_LIST, n_val)):
        items = sorted((it for it in read_s2_list(src.dump / name) if it.n_frames >= min_frames),
                       key=lambda it: (it.n_frames, it.id))[:n]
        write_s2_list(dst / name, sorted(items, key=lambda it: it.id))
    return S2Dump(dst, src.hubert, src.config)


def view_s1_dump(src: S1Dump, dst: Path, copy_dirs: tuple[str, ...] = ()) -> S1Dump:
    view_dump(src.dump, dst, copy_dirs)
    return S1Dump(dst, src.config, src.s2_checkpoint)
