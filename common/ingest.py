"""The one validation layer at ingest (resample.py): names, transcripts, paths and audio level.

Every dataset item goes through ``vet_items`` before its id is assigned and its audio read, and its
converted audio through ``fit_level`` before it is written. An item is either rejected with a reason
(a row of ``dump/rejected.tsv``) or kept, possibly changed on the way in with a note (a row of
``dump/adjusted.tsv``, same columns, the ``reason`` column saying what was changed). Reasons read
``category: detail``; the stage prints counts per category. Source files are only read.

- names: a speaker name must be non-empty and hold no ``|`` (the list separator), control character
  or line/paragraph separator (list readers split lines on those); else ``bad speaker name``.
- paths: an audio path with such a character cannot be written to the manifest (``bad file name``).
  The same recording reached through several paths (``a.wav`` and ``./a.wav``, a symlink, a hard
  link) is one utterance: the copy reached without a symlink is kept (the first in dataset order
  among equals) and the others are rejected as ``duplicate recording``. Dangling and looping
  symlinks are rejected by the audio reader (``broken symlink``, ``symlink loop``).
- transcripts: a transcript of several non-empty lines is rejected (``multi-line transcript``):
  joining them could pair one recording with two sentences, so the user decides. Markup entities
  (``&amp;``, ``&lt;``, ``&#x4E00;``, ``&#12290;``; only complete ones, with the semicolon) are decoded
  to the characters they stand for, noted as ``markup entities decoded``; a transcript left empty is
  rejected (``empty transcript``).
- audio level: audio whose peak exceeds full scale (float files can hold any value; resampling can
  overshoot) is scaled down to fit, never clipped, and noted as ``scaled down``.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from common.manifest import SourceItem, clean_field, unlistable_char

_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def name_problem(kind: str, value: str) -> str | None:
    """Why ``value`` cannot be a ``kind`` name (e.g. speaker) in the manifest and the lists, or None."""
    if not value.strip():
        return f"bad {kind} name: empty"
    if "|" in value:
        return f"bad {kind} name: {value!r} contains '|', the field separator of the lists"
    bad = unlistable_char(value)
    if bad is not None:
        return f"bad {kind} name: {value!r} contains the control or line-separator character U+{ord(bad):04X}"
    return None


def decode_entities(text: str) -> str:
    """``text`` with every complete markup entity replaced by the character it stands for."""
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)


def vet_text(text: str, where: str) -> tuple[str, str | None, str | None]:
    """(text, problem, note) for a transcript read from ``where`` (a file name or list line)."""
    lines = [line for line in _LINE_BREAK.split(text) if line.strip()]
    if len(lines) > 1:
        return "", f"multi-line transcript: {where} has {len(lines)} lines (one utterance per transcript)", None
    decoded = clean_field(decode_entities(text))
    note = None
    if decoded != clean_field(text):
        note = f"markup entities decoded: {_short(clean_field(text))} -> {_short(decoded)}"
    if not decoded:
        after = " once its markup entities are decoded" if note else ""
        return "", f"empty transcript: {where} has no text{after}", None
    return decoded, None, note


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[: n - 3] + "...")


def _recording_key(path: Path) -> tuple[object, ...]:
    """What identifies a recording on disk: device and inode, or the resolved path if it cannot be read."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))


def mark_duplicates(items: Iterable[SourceItem]) -> None:
    """Reject every item whose recording another item already holds (see the module docstring)."""
    candidates = [it for it in items if it.problem is None]
    keyed = [(_recording_key(it.audio), os.path.realpath(it.audio) != str(it.audio), i, it)
             for i, it in enumerate(candidates)]
    first: dict[tuple[object, ...], SourceItem] = {}
    for key, _, _, item in sorted(keyed, key=lambda k: (k[1], k[2])):
        if key in first:
            item.duplicate_of = first[key].origin
            item.problem = (f"duplicate recording: same file as {first[key].origin} "
                            f"({os.path.realpath(item.audio)})")
        else:
            first[key] = item


def vet_items(items: list[SourceItem]) -> None:
    """Check names, paths and transcripts of ``items`` in place: set ``problem`` or add ``notes``."""
    for item in items:
        if item.problem is not None:
            continue
        bad = unlistable_char(str(item.audio))
        problem = name_problem("speaker", item.speaker)
        if problem is None and bad is not None:
            problem = (f"bad file name: {str(item.audio)!r} contains the control or line-separator character "
                       f"U+{ord(bad):04X}, which the manifest cannot hold")
        if problem is None:
            where = item.audio.with_suffix(".lab").name if item.origin == str(item.audio) else item.origin
            item.text, problem, note = vet_text(item.text, where)
            if note:
                item.notes.append(note)
        item.problem = problem
    mark_duplicates(items)


def fit_level(audio: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``audio`` [T] scaled down to full scale when its peak exceeds it, and the note saying so (else None)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 1.0:
        return audio, None
    gain = 1.0 / peak
    note = (f"scaled down: peak {peak:.2f} ({20 * math.log10(peak):+.1f} dBFS) is above full scale; "
            f"gain {gain:.3f} ({20 * math.log10(gain):.1f} dB) instead of clipping")
    return (audio * np.float32(gain)).astype(np.float32, copy=False), note


def previous_notes(path: Path, stage: str) -> dict[str, list[str]]:
    """id -> notes of ``stage`` in an earlier run's ``adjusted.tsv``; empty if there is none or it is unreadable.

    A rerun that reuses a converted wav does not read its source again; its note comes from here.
    """
    notes: dict[str, list[str]] = {}
    if not path.is_file():
        return notes
    try:
        lines = path.read_text(encoding="utf-8").splitlines()[1:]
    except (OSError, UnicodeDecodeError):
        return notes
    for line in lines:
        cells = line.split("\t")
        if len(cells) == 4 and cells[0] == stage:
            notes.setdefault(cells[1], []).append(cells[3])
    return notes
