"""Chinese text normalisation (spec §7.2 step 1): numbers, symbols and punctuation → readable text.

``normalize_zh`` returns text made only of Chinese characters, the six punctuation symbols
``! ? … , . -``, and Latin words (ASCII letters, inner apostrophes, single spaces between Latin
words) that the caller hands to the English frontend. In order:

1. traditional → simplified (OpenCC ``t2s``), circled and Roman numerals, superscript powers,
   vulgar fractions (``text.zh_verbalize.before_nfkc``), Unicode NFKC (full-width
   letters, digits, currency and punctuation → ASCII, ``℃ → °C``, ``㎡ → m2``), accents stripped
   from Latin letters, ``嗯→恩``, ``呣→母``, ``〇→零``;
2. numbers, signs and units in context (``text.zh_verbalize``);
3. punctuation mapped to ``! ? … , . -`` (see ``_PUNCT_MAP``), Greek letters and math symbols
   read by ``text.zh_verbalize.SYMBOL_WORDS``, runs of one mark collapsed;
4. decoration (``text.chars.is_decoration``: unmapped punctuation such as quotes, brackets,
   ``* # _ @ •``, zero-width characters, ``| ` ^ < >``) and whitespace between Chinese characters
   dropped; every other character without a reading (emoji, other scripts, symbols such as
   ``★ © ♥``) raises ``TextFrontendError`` naming it.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from text.chars import fold_latin, is_decoration, to_half_width
from text.english import join_hyphenated
from text.errors import TextFrontendError, describe_chars
from text.zh_verbalize import SYMBOL_WORDS, before_nfkc, verbalize

ZH_PUNCTUATION = "!?…,.-"

_PUNCT_MAP = {
    "，": ",", ",": ",", "、": ",", "；": ",", ";": ",", "：": ",", ":": ",", "·": ",", "/": ",",
    "。": ".", ".": ".", "\n": ".", "！": "!", "!": "!", "？": "?", "?": "?",
    "…": "…", "⋯": "…", "~": "…", "～": "…",
    "-": "-", "—": "-", "–": "-", "―": "-", "─": "-", "－": "-",
}


@functools.lru_cache(maxsize=1)
def _t2s():
    from opencc import OpenCC  # opencc-python-reimplemented

    return OpenCC("t2s")


def is_chinese_char(ch: str) -> bool:
    """CJK unified ideographs (basic block, extensions A–F) and compatibility ideographs."""
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x2EBEF
    )


def _is_latin(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _map_symbols(text: str) -> str:
    """Punctuation → the six symbols, decoration dropped, unknown characters rejected."""
    out: list[str] = []
    unknown: list[str] = []
    for i, ch in enumerate(text):
        if is_chinese_char(ch) or _is_latin(ch):
            out.append(ch)
        elif ch in ("'", "’") and 0 < i < len(text) - 1 and _is_latin(text[i - 1]) and _is_latin(text[i + 1]):
            out.append("'")  # apostrophe inside a Latin word: it's, Tom's
        elif ch in _PUNCT_MAP:
            out.append(_PUNCT_MAP[ch])
        elif ch in SYMBOL_WORDS:
            out.append(SYMBOL_WORDS[ch])
        elif ch.isspace() or is_decoration(ch):
            out.append(" ")
        else:
            unknown.append(ch)
    if unknown:
        raise TextFrontendError(f"no Chinese reading for {describe_chars(unknown)} in {text!r}")
    return "".join(out)


def _tidy_spaces_and_punctuation(text: str) -> str:
    text = re.sub(r"\.{3,}", "…", text)
    text = re.sub(r"([!?…,.\-])\1+", r"\1", text)             # "!!!" → "!", "——" → "-"
    text = re.sub(r" +", " ", text)
    text = re.sub(r"(?<![A-Za-z']) | (?![A-Za-z'])", "", text)  # keep spaces only between Latin words
    return text.strip()


def normalize_zh(text: str) -> str:
    """Normalise Chinese (possibly mixed with English) text; see the module docstring."""
    text = before_nfkc(_t2s().convert(text))
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = to_half_width(text)
    text = fold_latin(text).replace("嗯", "恩").replace("呣", "母").replace("〇", "零")
    text = re.sub(r"\n\s*\n+", "\n", text.strip())
    text = join_hyphenated(verbalize(text))
    text = _map_symbols(text)
    return _tidy_spaces_and_punctuation(text)
