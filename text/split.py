"""Split long text into sentence-sized pieces for inference (failure mode 7: long text unstable).

``split_sentences`` cuts after sentence punctuation (``。！？!?…；;``, a newline, and ``.`` when it
ends a sentence rather than a number, ``3.14``, or a title, ``Mr.``), keeping closing quotes and
brackets with their sentence. A piece longer than ``max_chars`` is re-cut after commas
(``，,、：:``) into chunks of at most ``max_chars``, and a clause still too long is cut into pieces
of similar length at a space, or between two characters that are not both ASCII letters/digits (never inside a
Latin word or a number). Pieces made only of punctuation and whitespace are dropped; every other
character of the input is kept, in order (whitespace at the ends of pieces is stripped).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable

_SENTENCE_END = set("。！？!?…；;\n")
_CLOSERS = set("”’\"'」』）)】》〉]")
_CLAUSE_END = set("，,、：:")
_TITLES = ("mr", "mrs", "ms", "dr", "st", "vs", "prof", "e.g", "i.e", "etc")


def _is_punctuation_or_space(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def _has_content(piece: str) -> bool:
    return not all(_is_punctuation_or_space(ch) for ch in piece)


def _ends_sentence(text: str, i: int) -> bool:
    ch = text[i]
    if ch in _SENTENCE_END:
        return True
    if ch != ".":
        return False
    nxt = text[i + 1:i + 2]
    if nxt and not (nxt.isspace() or nxt in _CLOSERS or not nxt.isascii()):
        return False  # 3.14, e.g, a.b, the first dots of "..."
    before = re.search(r"[A-Za-z.]*$", text[max(0, i - 8):i]).group(0)  # the word before the dot
    return before.lower() not in _TITLES


def _cut_after(text: str, is_end: Callable[[str, int], bool]) -> list[str]:
    """Cut ``text`` after every position where ``is_end(text, i)``, with trailing closers/marks."""
    pieces: list[str] = []
    start = 0
    i = 0
    while i < len(text):
        if is_end(text, i):
            j = i + 1
            while j < len(text) and (text[j] in _CLOSERS or is_end(text, j)):
                j += 1
            pieces.append(text[start:j])
            start = i = j
        else:
            i += 1
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _can_cut_between(a: str, b: str) -> bool:
    return not (a.isascii() and a.isalnum() and b.isascii() and b.isalnum())


def _cut_by_length(text: str, max_chars: int) -> list[str]:
    """Cut into about ``ceil(len / max_chars)`` pieces of similar length (no one-character tail)."""
    pieces: list[str] = []
    if len(text) > max_chars:
        max_chars = math.ceil(len(text) / math.ceil(len(text) / max_chars))
    while len(text) > max_chars:
        cut = text[:max_chars + 1].rfind(" ")
        if cut <= 0:
            ok = [k for k in range(1, len(text)) if _can_cut_between(text[k - 1], text[k])]
            cut = max((k for k in ok if k <= max_chars), default=min(ok, default=len(text)))
        pieces.append(text[:cut])
        text = text[cut:]
    if text:
        pieces.append(text)
    return pieces


def _pack(clauses: list[str], max_chars: int) -> list[str]:
    chunks: list[str] = []
    for clause in clauses:
        if chunks and len(chunks[-1]) + len(clause) <= max_chars:
            chunks[-1] += clause
        else:
            chunks.append(clause)
    return chunks


def split_sentences(text: str, max_chars: int = 50) -> list[str]:
    """Sentence-sized pieces of ``text``, each at most ``max_chars`` characters where possible.

    A single Latin word longer than ``max_chars`` stays whole.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    out: list[str] = []
    for sentence in _cut_after(text, _ends_sentence):
        sentence = sentence.strip()
        if not _has_content(sentence):
            continue
        if len(sentence) <= max_chars:
            out.append(sentence)
            continue
        clauses = _cut_after(sentence, lambda s, i: s[i] in _CLAUSE_END)
        pieces = [p for clause in clauses for p in _cut_by_length(clause, max_chars)]
        out += [p.strip() for p in _pack(pieces, max_chars) if _has_content(p)]
    return out
