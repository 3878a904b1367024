"""Character classes shared by the normalisers: width folding, Latin folding, decoration."""

from __future__ import annotations

import unicodedata

# Latin letters that do not decompose into ASCII + accents.
_LATIN_SPECIAL = {
    "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D",
    "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH", "ł": "l", "Ł": "L", "ı": "i",
}
# Symbols (not Unicode punctuation) that carry no reading and are dropped like punctuation.
_DECORATIVE_SYMBOLS = set("|`^<>＜＞｜")


def to_half_width(text: str, keep: str = "") -> str:
    """Full-width ASCII (U+FF01–U+FF5E) and the ideographic space → ASCII, except chars in ``keep``."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E and ch not in keep:
            ch = chr(code - 0xFEE0)
        elif code == 0x3000:
            ch = " "
        out.append(ch)
    return "".join(out)


def fold_latin(text: str) -> str:
    """Accented and special Latin letters → ASCII (``café → cafe``, ``ß → ss``); others unchanged."""
    out = []
    for ch in text:
        if ch.isascii() or "LATIN" not in unicodedata.name(ch, ""):
            out.append(ch)
        elif ch in _LATIN_SPECIAL:
            out.append(_LATIN_SPECIAL[ch])
        else:
            out.append("".join(c for c in unicodedata.normalize("NFD", ch) if unicodedata.category(c) != "Mn"))
    return "".join(out)


def is_decoration(ch: str) -> bool:
    """Characters dropped without a trace: Unicode punctuation (quotes, brackets, ``* # _ @ •``...)
    not otherwise mapped, format characters (zero-width space), and a few symbols (``| ` ^ < >``).
    Callers map their meaningful punctuation first."""
    category = unicodedata.category(ch)
    return category.startswith("P") or category == "Cf" or ch in _DECORATIVE_SYMBOLS
