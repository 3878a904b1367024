"""The dump directory's tables and the two dataset input forms.

Tables (tab-separated, UTF-8, one header line, rows sorted by id, written atomically):

- ``dump/manifest.tsv``: ``id speaker lang text duration source`` (``Utterance``)
- ``dump/phonemes.tsv``: ``id phones word2ph norm_text`` with ``phones`` and ``word2ph``
  space-separated, ``sum(word2ph) == len(phones)`` (``PhonemeEntry``)

S2 lists (``dump/s2_train.list``, ``dump/s2_val.list``, written by gen_filelist_s2.py, read by
the S2 trainer): ``id|speaker|lang|n_frames`` per line, no header, sorted by id
(``S2ListItem``); ``n_frames`` is the spectrogram frame count of ``dump/wav32k/<id>.wav``.

A table whose content would not change is not rewritten. Readers validate every line
(column count, ids, duplicates, numbers) and raise ``ManifestError`` naming the file and
line. Free text has tabs and newlines replaced by spaces on write, so a row is one line.

Dataset input forms (``read_list``, ``scan_tree``) give ``SourceItem``s; ``assign_ids``
gives each a stable id: ``<speaker>_<stem>`` reduced to ``[A-Za-z0-9_.-]``, with a short
hash of the dataset-relative source path appended to every member of a colliding group.
The same dataset always gives the same ids, whatever order it is read in.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from common.fileio import OutputPathError, atomic_write_text, check_output_path, remove_stale_temps

WAV_DIR = "wav32k"  # dump/wav32k/<id>.wav: mono 32 kHz 16-bit
SSL_DIR = "ssl"  # dump/ssl/<id>.pt: fp16 [ssl_dim, n_frames] HuBERT features
WAV_SAMPLE_RATE = 32000
MANIFEST_NAME = "manifest.tsv"
PHONEMES_NAME = "phonemes.tsv"
REJECTED_NAME = "rejected.tsv"
ADJUSTED_NAME = "adjusted.tsv"  # kept items changed on the way in (common/ingest.py), same columns as rejected.tsv
S2_TRAIN_LIST = "s2_train.list"
S2_VAL_LIST = "s2_val.list"

MANIFEST_COLUMNS = ("id", "speaker", "lang", "text", "duration", "source")
PHONEME_COLUMNS = ("id", "phones", "word2ph", "norm_text")
LANGS = ("zh", "en", "ja")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")

_LANG_ALIASES = {
    "zh": "zh", "cn": "zh", "zh-cn": "zh", "zh_cn": "zh", "cmn": "zh", "chinese": "zh", "mandarin": "zh",
    "en": "en", "en-us": "en", "en_us": "en", "en-gb": "en", "en_gb": "en", "english": "en",
    "ja": "ja", "jp": "ja", "jpn": "ja", "japanese": "ja",
}  # fmt: skip
_ID_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


class ManifestError(ValueError):
    """A table or list file that cannot be used; the message names the file (and line)."""


def normalize_lang(code: str) -> str:
    """Map a language code as users write it (ZH, En, JP, ja, zh-cn, ...) to zh/en/ja."""
    lang = _LANG_ALIASES.get(code.strip().lower())
    if lang is None:
        raise ValueError(f"unknown language: {code!r} (expected one of {', '.join(LANGS)})")
    return lang


def clean_field(text: str) -> str:
    """Text safe for one TSV cell: tabs, CR and LF become spaces; outer blanks stripped."""
    return re.sub(r"[\t\r\n]+", " ", text).strip()


def unlistable_char(value: str) -> str | None:
    """The first character of ``value`` that a one-line record cannot hold (control characters, line and
    paragraph separators: ``str.splitlines`` splits on several of them), or None."""
    return next((c for c in value if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)


def sanitize_id(name: str) -> str:
    """Reduce ``name`` to ``[A-Za-z0-9_.-]`` (other characters become ``_``), not starting with . or -."""
    out = _ID_BAD_CHARS.sub("_", name)
    if not out or out[0] in ".-":
        out = "_" + out
    return out


def prepare_dump(dump: str | Path, stage: str) -> Path:
    """The dump directory of a stage that writes into it, checked before any work.

    Raises ``ManifestError`` naming it when it cannot be written (under a regular file, read-only);
    removes the temp files of killed writers in it, saying how many in one line.
    """
    try:
        path = check_output_path(dump, directory=True, what="--dump")
    except OutputPathError as err:
        raise ManifestError(str(err)) from None
    remove_stale_temps(path, report=lambda line: print(f"{stage}: {line}"))
    return path


# ----------------------------------------------------------------------------- tables


def write_text_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` atomically unless ``path`` already holds exactly it; True if written.

    Reruns that produce the same table leave the file untouched (bytes and mtime).
    """
    if path.is_file() and path.read_bytes() == text.encode("utf-8"):
        return False
    atomic_write_text(path, text)
    return True


@dataclass(frozen=True)
class Utterance:
    id: str
    speaker: str
    lang: str
    text: str
    duration: float  # seconds, of the 32 kHz wav
    source: str  # the original audio file


@dataclass(frozen=True)
class PhonemeEntry:
    id: str
    phones: list[str]
    word2ph: list[int]
    norm_text: str


def _write_table(path: Path, columns: tuple[str, ...], rows: Iterable[tuple[str, list[str]]]) -> None:
    lines = ["\t".join(columns)]
    seen: set[str] = set()
    for key, cells in sorted(rows, key=lambda r: r[0]):
        if key in seen:
            raise ManifestError(f"{path}: duplicate id {key!r} in rows to write")
        seen.add(key)
        lines.append("\t".join(cells))
    write_text_if_changed(path, "\n".join(lines) + "\n")


def _read_table(path: Path, columns: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """Rows as (line number, cells), after checking header, column count and ids."""
    if not path.is_file():
        raise ManifestError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: not valid UTF-8 ({err})") from err
    lines = text.split("\n")
    header = lines[0].rstrip("\r").split("\t") if lines else []
    if tuple(header) != columns:
        raise ManifestError(f"{path}:1: expected header {' '.join(columns)!r}, got {' '.join(header)!r}")
    rows: list[tuple[int, list[str]]] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(columns):
            raise ManifestError(f"{path}:{lineno}: expected {len(columns)} tab-separated columns, got {len(cells)}")
        key = cells[0]
        if not _ID_OK.match(key):
            raise ManifestError(f"{path}:{lineno}: bad id {key!r} (allowed characters: A-Za-z0-9_.-)")
        if key in seen:
            raise ManifestError(f"{path}:{lineno}: duplicate id {key!r} (first on line {seen[key]})")
        seen[key] = lineno
        rows.append((lineno, cells))
    return rows


def write_manifest(path: str | Path, utts: Iterable[Utterance]) -> None:
    """Write the manifest atomically, sorted by id."""
    rows = []
    for u in utts:
        if not _ID_OK.match(u.id):
            raise ManifestError(f"{path}: bad id {u.id!r}")
        cells = [u.id, clean_field(u.speaker), u.lang, clean_field(u.text), f"{u.duration:.3f}", clean_field(u.source)]
        rows.append((u.id, cells))
    _write_table(Path(path), MANIFEST_COLUMNS, rows)


def read_manifest(path: str | Path, allow_empty: bool = False) -> list[Utterance]:
    """Read and validate the manifest; an empty one is an error unless ``allow_empty``."""
    path = Path(path)
    utts = []
    for lineno, (uid, speaker, lang, text, duration, source) in _read_table(path, MANIFEST_COLUMNS):
        if lang not in LANGS:
            raise ManifestError(f"{path}:{lineno}: bad lang {lang!r} (expected one of {', '.join(LANGS)})")
        try:
            dur = float(duration)
        except ValueError:
            raise ManifestError(f"{path}:{lineno}: bad duration {duration!r}") from None
        if not math.isfinite(dur) or dur <= 0:
            raise ManifestError(f"{path}:{lineno}: bad duration {duration!r} (must be a positive number)")
        if not speaker or not text:
            raise ManifestError(f"{path}:{lineno}: empty speaker or text")
        utts.append(Utterance(uid, speaker, lang, text, dur, source))
    if not utts and not allow_empty:
        raise ManifestError(f"{path}: no utterances (did resample.py accept anything? see {REJECTED_NAME})")
    return utts


def write_phonemes(path: str | Path, entries: Iterable[PhonemeEntry]) -> None:
    """Write the phoneme table atomically, sorted by id."""
    rows = []
    for e in entries:
        if not e.phones or any(not p or p != p.strip() or " " in p or "\t" in p for p in e.phones):
            raise ManifestError(f"{path}: id {e.id!r}: phones must be non-empty tokens without spaces")
        if sum(e.word2ph) != len(e.phones) or any(n < 0 for n in e.word2ph):
            raise ManifestError(f"{path}: id {e.id!r}: word2ph {e.word2ph} does not split {len(e.phones)} phones")
        cells = [e.id, " ".join(e.phones), " ".join(str(int(n)) for n in e.word2ph), clean_field(e.norm_text)]
        rows.append((e.id, cells))
    _write_table(Path(path), PHONEME_COLUMNS, rows)


def read_phonemes(path: str | Path) -> list[PhonemeEntry]:
    """Read and validate the phoneme table."""
    path = Path(path)
    entries = []
    for lineno, (uid, phones, word2ph, norm_text) in _read_table(path, PHONEME_COLUMNS):
        ph = phones.split()
        if not ph:
            raise ManifestError(f"{path}:{lineno}: no phones for id {uid!r}")
        try:
            w2p = [int(n) for n in word2ph.split()]
        except ValueError:
            raise ManifestError(f"{path}:{lineno}: bad word2ph {word2ph!r} (expected integers)") from None
        if any(n < 0 for n in w2p):
            raise ManifestError(f"{path}:{lineno}: negative count in word2ph {word2ph!r}")
        if sum(w2p) != len(ph):
            raise ManifestError(f"{path}:{lineno}: word2ph sums to {sum(w2p)} but there are {len(ph)} phones")
        entries.append(PhonemeEntry(uid, ph, w2p, norm_text))
    return entries


# ----------------------------------------------------------------------------- S2 lists


@dataclass(frozen=True)
class S2ListItem:
    id: str
    speaker: str
    lang: str
    n_frames: int  # spectrogram frames = wav samples // hop

    def to_line(self) -> str:
        for name in ("id", "speaker", "lang"):
            value = getattr(self, name)
            if "|" in value or unlistable_char(value) is not None or not value:
                raise ManifestError(f"{self.id}: {name} {value!r} cannot be written to a list "
                                    "(empty, or has '|' or a control or line-separator character)")
        return f"{self.id}|{self.speaker}|{self.lang}|{self.n_frames}"


def write_s2_list(path: str | Path, items: Iterable[S2ListItem]) -> None:
    """Write an S2 list atomically, in the given order."""
    atomic_write_text(Path(path), "".join(it.to_line() + "\n" for it in items))


def read_s2_list(path: str | Path) -> list[S2ListItem]:
    """Read an S2 list; a missing or empty file and malformed lines are errors naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: list file not found (run gen_filelist_s2.py)")
    items = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 4 or not fields[3].isdigit() or not all(fields):
            raise ManifestError(f"{path}:{lineno}: expected id|speaker|lang|n_frames, got {line!r}")
        items.append(S2ListItem(fields[0], fields[1], fields[2], int(fields[3])))
    if not items:
        raise ManifestError(f"{path}: the list is empty (rerun gen_filelist_s2.py)")
    return items


# ----------------------------------------------------------------------------- dataset input


@dataclass
class SourceItem:
    audio: Path  # the audio file, absolute
    speaker: str
    lang: str  # as the dataset writes it; normalise with normalize_lang
    text: str  # transcript ('' when ``problem`` is set)
    origin: str  # where the item is declared, for reports: the audio path or "<list>:<line>"
    key: str  # dataset-relative name of the audio, hashed into the id on collisions
    problem: str | None = None  # why the item cannot be used, found while reading the dataset
    id: str = ""  # set by assign_ids
    notes: list[str] = field(default_factory=list)  # how the item was changed on the way in (common/ingest.py)
    duplicate_of: str = ""  # origin of the item holding the same recording (common/ingest.py)


@dataclass
class Dataset:
    items: list[SourceItem]
    bad_entries: list[tuple[str, str]]  # (origin, reason) of entries that have no speaker, hence no id


def _absolute(path: Path) -> Path:
    """Absolute and normalised (no ``..``), without resolving symlinks."""
    return Path(os.path.abspath(path))


def read_list(path: str | Path) -> Dataset:
    """Read a ``wav_path|speaker|lang|text`` list; relative paths resolve against the list's folder.

    Lines with the wrong field count, invalid UTF-8 or an empty speaker are returned in
    ``bad_entries`` with their line number; an empty transcript becomes an item problem. Names and
    text are checked further by ``common.ingest.vet_items``.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: list file not found")
    base = _absolute(path).parent
    items: list[SourceItem] = []
    bad: list[tuple[str, str]] = []
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        origin = f"{path}:{lineno}"
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as err:
            bad.append((origin, f"non-UTF-8 line: {err.reason} at byte {err.start}"))
            continue
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 4:
            bad.append((origin, f"bad list line: expected 4 fields wav_path|speaker|lang|text, got {len(fields)}"))
            continue
        wav, speaker, lang, text = (f.strip() for f in fields)
        if not wav or not speaker:
            bad.append((origin, "bad list line: empty wav path or speaker"))
            continue
        audio = _absolute(base / wav)
        problem = None if text else "empty transcript: no text on the list line"
        items.append(SourceItem(audio, speaker, lang, text, origin, key=wav, problem=problem))
    return Dataset(items, bad)


def read_transcript(lab: Path) -> tuple[str, str | None]:
    """(text, problem) for a ``.lab`` file: missing, non-UTF-8 and empty are problems.

    The text keeps its line breaks (only outer blanks are stripped): ``common.ingest.vet_items``
    rejects a transcript of several lines rather than joining them.
    """
    if not lab.is_file():
        if lab.exists() or lab.is_symlink():
            return "", f"unreadable .lab: {lab.name} is not a regular file (or a broken symlink)"
        return "", f"missing .lab: expected {lab.name} beside the audio"
    data = lab.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return "", f"non-UTF-8 transcript: {lab.name} has invalid byte 0x{data[err.start]:02x} at offset {err.start}"
    text = text.strip()
    if not text:
        return "", f"empty transcript: {lab.name} has no text"
    return text, None


def scan_tree(root: str | Path) -> Dataset:
    """Find ``<root>/<lang>/<speaker>/<name>.<audio ext>`` files, each with ``<name>.lab`` beside it.

    Audio files at any other depth are returned in ``bad_entries`` (misplaced). Entries named like
    audio that are not regular files (symlinks, dangling or looping; FIFOs; folders) are items too,
    so the audio reader rejects them with a reason instead of their being dropped unseen.
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: dataset folder not found")
    items: list[SourceItem] = []
    bad: list[tuple[str, str]] = []
    for audio in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        rel = audio.relative_to(root)
        if len(rel.parts) != 3:
            bad.append((str(_absolute(audio)), "misplaced: expected <root>/<lang>/<speaker>/<file>"))
            continue
        lang, speaker = rel.parts[0], rel.parts[1]
        text, problem = read_transcript(audio.with_suffix(".lab"))
        path = _absolute(audio)
        items.append(SourceItem(path, speaker, lang, text, str(path), rel.as_posix(), problem))
    return Dataset(items, bad)


def _short_hash(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]


def assign_ids(items: list[SourceItem]) -> None:
    """Set ``item.id`` for every item (see the module docstring); a repeated source becomes a problem.

    Items marked as another item's ``duplicate_of`` take no part in the collision groups (so they do
    not change the ids of the others) and always get the hashed form of their id.
    """
    groups: dict[str, list[SourceItem]] = defaultdict(list)
    for item in items:
        base = sanitize_id(f"{item.speaker}_{Path(item.key).stem}")
        if item.duplicate_of:
            item.id = f"{base}_{_short_hash(item.key)}"
        else:
            groups[base].append(item)
    first_by_id: dict[str, SourceItem] = {}
    for base, group in groups.items():
        for item in group:
            item.id = base if len(group) == 1 else f"{base}_{_short_hash(item.key)}"
    for item in items:
        first = first_by_id.setdefault(item.id, item)
        if first is not item and item.problem is None:
            item.problem = f"duplicate entry: id {item.id!r} already taken by {first.origin}"
