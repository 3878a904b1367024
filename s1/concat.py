"""Same-speaker concatenation of S1 training items (``data.concat_max_seconds > 0``).

Long inputs are rare in a corpus of single sentences, so S1 seldom sees one and drifts on
long text. ``gen_filelist_s1.py`` can join consecutive utterances of one speaker (in id order,
which is recording order for ``resample.py``'s ids) into longer items::

    joined phones = a.phones + [SP] + b.phones + [SP] + c.phones
    joined tokens = a.tokens + [s]*k + b.tokens + [s]*k + c.tokens
    joined BERT   = a.bert | zeros(D, 1) | b.bert | zeros(D, 1) | c.bert        ([D, L] each)

with ``k = data.concat_pause_tokens`` copies of the corpus's silence token ``s`` (the most
common first/last token of its utterances: recordings start and end in silence) and the pause
phone ``SP``. Groups are cut greedily: for each group a target length is drawn uniformly in
``(0, max_tokens]`` with ``random.Random(seed)``, and utterances are added while the joined item
stays within the target, ``max_phones`` and ``max_tokens`` (a group always takes at least one
utterance, so item lengths spread from single sentences to the cap). The same rows, speakers
and seed give the same groups. A joined item's id is ``<first id>+<number of parts>`` (``+``
never occurs in utterance ids); ``Joined`` records its parts and where each part starts.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from common.fileio import atomic_write_text
from common.speakers import SpeakerTable
from s1.data import S1DataError, S1ListRow

PAUSE_PHONE = "SP"
JOINS_NAME = "s1_joins.tsv"  # dump/s1_joins.tsv: id, parts, phone_starts, token_starts (space-separated)
JOINS_COLUMNS = ("id", "parts", "phone_starts", "token_starts")


@dataclass(frozen=True)
class Joined:
    """One concatenated item: ``row`` and where each of its ``parts`` (utterance ids) starts."""

    row: S1ListRow
    parts: tuple[str, ...]
    phone_starts: tuple[int, ...]
    token_starts: tuple[int, ...]


def silence_token(tokens: Sequence[Sequence[int]]) -> int:
    """The most common first or last token of the utterances (smallest id on a tie)."""
    edges = Counter(t for seq in tokens if seq for t in (seq[0], seq[-1]))
    if not edges:
        raise S1DataError("no tokens to find the silence token in")
    best = max(edges.values())
    return min(t for t, n in edges.items() if n == best)


def join_rows(parts: Sequence[S1ListRow], pause_token: int, pause_tokens: int) -> Joined:
    """Join ``parts`` (one speaker, in order) with a pause (``SP`` and ``pause_tokens`` silence tokens)."""
    if not parts:
        raise ValueError("join_rows: no parts")
    phones: list[str] = []
    tokens: list[int] = []
    phone_starts, token_starts = [], []
    for i, part in enumerate(parts):
        if i:
            phones.append(PAUSE_PHONE)
            tokens.extend([pause_token] * pause_tokens)
        phone_starts.append(len(phones))
        token_starts.append(len(tokens))
        phones.extend(part.phones)
        tokens.extend(part.tokens)
    uid = parts[0].id if len(parts) == 1 else f"{parts[0].id}+{len(parts)}"
    return Joined(S1ListRow(uid, phones, tokens), tuple(p.id for p in parts), tuple(phone_starts),
                  tuple(token_starts))


def join_bert(features: Sequence[Tensor], joined: Joined) -> Tensor:
    """BERT features ``[D, L_i]`` of the parts -> ``[D, L]`` of ``joined`` (zeros on the pause phones)."""
    dim = features[0].shape[0]
    out = features[0].new_zeros(dim, len(joined.row.phones))
    for feats, start in zip(features, joined.phone_starts):
        out[:, start:start + feats.shape[1]] = feats
    return out


def plan_groups(rows: Sequence[S1ListRow], speakers: dict[str, str], max_tokens: int, max_phones: int,
                pause_tokens: int, seed: int) -> list[list[S1ListRow]]:
    """Consecutive same-speaker runs of ``rows`` (sorted by id per speaker) within the limits; see the
    module docstring. Every row is in exactly one group."""
    by_speaker: dict[str, list[S1ListRow]] = {}
    for row in sorted(rows, key=lambda r: r.id):
        if row.id not in speakers:
            raise S1DataError(f"item {row.id!r} has no speaker in the manifest")
        by_speaker.setdefault(speakers[row.id], []).append(row)
    rng = random.Random(seed)
    groups: list[list[S1ListRow]] = []
    for speaker in sorted(by_speaker):
        group: list[S1ListRow] = []
        n_tok = n_ph = 0
        target = 0.0
        for row in by_speaker[speaker]:
            add_tok = len(row.tokens) + (pause_tokens if group else 0)
            add_ph = len(row.phones) + (1 if group else 0)
            if group and (n_tok + add_tok > min(target, max_tokens) or n_ph + add_ph > max_phones):
                groups.append(group)
                group, n_tok, n_ph = [], 0, 0
                add_tok, add_ph = len(row.tokens), len(row.phones)
            if not group:
                target = rng.uniform(0.0, 1.0) * max_tokens
            group.append(row)
            n_tok += add_tok
            n_ph += add_ph
        if group:
            groups.append(group)
    return groups


def write_joins(path: str | Path, joined: Sequence[Joined]) -> None:
    """Write the join points of the multi-part items (sorted by id) atomically."""
    lines = ["\t".join(JOINS_COLUMNS)]
    for j in sorted(joined, key=lambda j: j.row.id):
        if len(j.parts) > 1:
            lines.append("\t".join([j.row.id, " ".join(j.parts), " ".join(map(str, j.phone_starts)),
                                    " ".join(map(str, j.token_starts))]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_joins(path: str | Path) -> dict[str, tuple[str, ...]]:
    """``joined id -> part ids`` from ``s1_joins.tsv`` (an absent file: no joined items)."""
    path = Path(path)
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != JOINS_COLUMNS:
        raise S1DataError(f"{path}:1: expected header {' '.join(JOINS_COLUMNS)!r}")
    out = {}
    for lineno, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(JOINS_COLUMNS) or not cells[1].split():
            raise S1DataError(f"{path}:{lineno}: expected {len(JOINS_COLUMNS)} tab-separated columns with parts")
        out[cells[0]] = tuple(cells[1].split())
    return out


def item_speakers(manifest_speakers: dict[str, str], joins: dict[str, tuple[str, ...]],
                  table: SpeakerTable) -> dict[str, int]:
    """``item id -> speaker row`` for utterances and joined items (a joined item: its first part's speaker)."""
    rows = {uid: table.index(name) for uid, name in manifest_speakers.items()}
    rows.update({uid: rows[parts[0]] for uid, parts in joins.items() if parts[0] in rows})
    return rows
