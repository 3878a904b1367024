"""Text for synthesis -> sentence pieces with phoneme ids (failure modes 4 and 7).

Long text is split at sentence punctuation, then by length (``text.split.split_sentences``);
pieces made only of punctuation and spaces are dropped; every kept piece (and the prompt
transcript) gets final punctuation if its phones lack it (as GPT-SoVITS does, but also after a
closing quote or bracket, which the front end drops), and is converted to phones with
``text.cleaner.clean_text``. A piece the front end cannot read (unknown
characters, nothing pronounceable) is an error that names the piece.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from infer.errors import InferenceError
from text.cleaner import clean_text, normalize_lang
from text.errors import TextFrontendError
from text.result import G2PResult
from text.split import split_sentences
from text.symbols import PUNCTUATION, phones_to_ids

FINAL_PUNCTUATION = {"zh": "。", "ja": "。", "en": "."}


@dataclass
class TextPiece:
    """One piece of text as synthesized: its text (final punctuation added), phones and symbol ids,
    and the frontend's full result (its language parts give the BERT features)."""

    text: str
    phones: list[str]
    ids: list[int]
    g2p: G2PResult | None = None


def _is_punctuation_or_space(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def with_final_punctuation(text: str, lang: str, final_marks: Collection[str] | None = None) -> str:
    """``text`` stripped, with the language's full stop appended unless it already ends in punctuation.

    ``final_marks``: the characters that count as final punctuation (None: any Unicode punctuation).
    """
    text = text.strip()
    ends = (lambda ch: ch in final_marks) if final_marks is not None else _is_punctuation_or_space
    if text and not ends(text[-1]):
        text += FINAL_PUNCTUATION[normalize_lang(lang)]
    return text


def phonemize(text: str, lang: str, what: str, final_marks: Collection[str] | None = None) -> TextPiece:
    """Final punctuation (``with_final_punctuation``) + ``clean_text``; errors say ``what`` failed
    (e.g. "text piece 2 '...'").

    Without ``final_marks`` the check is made on the phones, as the model saw its training
    transcripts: text ending in a closing quote or bracket (``“再见”``, ``"Now"``, ``(world)``)
    ends in punctuation as a character but the front end drops the quote, so the full stop is
    appended after it when the phones do not end in a punctuation mark.
    """
    text = with_final_punctuation(text, lang, final_marks)
    try:
        result = clean_text(text, lang)
        if final_marks is None and result.phones[-1] not in PUNCTUATION:
            text += FINAL_PUNCTUATION[normalize_lang(lang)]
            result = clean_text(text, lang)
        ids = phones_to_ids(result.phones)
    except TextFrontendError as e:
        raise InferenceError(f"{what}: {e}") from None
    return TextPiece(text=text, phones=result.phones, ids=ids, g2p=result)


def split_text(text: str, lang: str, max_chars: int = 50) -> list[TextPiece]:
    """Pieces of ``text`` ready for S1; raises ``InferenceError`` if nothing pronounceable is left."""
    try:
        normalize_lang(lang)
    except TextFrontendError as e:
        raise InferenceError(f"--lang: {e}") from None
    if max_chars < 1:
        raise InferenceError(f"--max-chars must be >= 1, got {max_chars}")
    if not text.strip():
        raise InferenceError("the text to synthesize is empty")
    pieces = [p for p in split_sentences(text, max_chars) if not all(_is_punctuation_or_space(c) for c in p)]
    if not pieces:
        raise InferenceError(f"no pronounceable text in {text!r}: it holds only punctuation and spaces")
    if len(pieces) == 1:
        return [phonemize(pieces[0], lang, f"text {pieces[0]!r}")]
    return [phonemize(p, lang, f"text piece {i + 1} of {len(pieces)} {p!r}") for i, p in enumerate(pieces)]


def read_text(text: str | None, text_file: str | Path | None) -> str:
    """The text of ``--text`` or of the UTF-8 file ``--text-file`` (exactly one of them)."""
    if (text is None) == (text_file is None):
        raise InferenceError("give the text with exactly one of --text or --text-file")
    if text is not None:
        return text
    path = Path(text_file)
    if not path.is_file():
        raise InferenceError(f"{path}: text file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InferenceError(f"{path}: not UTF-8 text ({e})") from None
