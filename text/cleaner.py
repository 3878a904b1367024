"""Text → phones for one utterance: the single entry point of the text frontend.

    >>> " ".join(clean_text("我喜欢用Python写代码", "zh").phones)
    'w o2 x i3 h uan5 y ong4 P AY1 TH AA0 N x ie3 d ai4 m a3'

Letters inside Chinese text are read as English: words by the English rules (acronyms spelled),
single letters by their names (A股 → ``EY1 g u3``).

Languages: ``zh`` (Chinese; runs of Latin letters inside it are read as English), ``en``, ``ja``
(needs ``pyopenjtalk-plus``). Case-insensitive; ``jp`` is accepted for ``ja``.

Unknown characters: decoration (quotes, brackets, ``* # _ |``, whitespace) is dropped; every
other character without a reading (emoji, other scripts, stray symbols) raises
``TextFrontendError`` naming it — nothing ever becomes a silent ``UNK``. Text that yields no
phone other than punctuation raises ``TextFrontendError`` too.

English-only text shorter than 4 phones is left-padded with ``,`` (as GPT-SoVITS v1 does for its
training data, so that v1 weights see the inputs they were trained on); the padding also
prefixes ``norm_text`` and ``word2ph``.
"""

from __future__ import annotations

import re

from text.chinese import g2p_chinese
from text.english import g2p_english, normalize_en
from text.errors import MissingDependencyError, TextFrontendError
from text.japanese import g2p_japanese
from text.result import G2PResult
from text.symbols import PUNCTUATION
from text.zh_normalize import normalize_zh

__all__ = ["G2PResult", "MissingDependencyError", "TextFrontendError", "clean_text", "normalize_lang"]

LANGUAGES = ("zh", "en", "ja")
_ALIASES = {"zh": "zh", "en": "en", "ja": "ja", "jp": "ja"}
MIN_EN_PHONES = 4
_LATIN_RUN = re.compile(r"([A-Za-z]+(?:[' ][A-Za-z]+)*)")


def normalize_lang(lang: str) -> str:
    """``"ZH"/"zh" → "zh"``, ``"EN"/"En" → "en"``, ``"JA"/"JP"/"jp" → "ja"``; others raise."""
    key = lang.strip().lower() if isinstance(lang, str) else None
    if key not in _ALIASES:
        raise TextFrontendError(f"unknown language {lang!r}; expected one of zh, en, ja (or jp)")
    return _ALIASES[key]


def _clean_zh(text: str) -> G2PResult:
    norm = normalize_zh(text)
    parts = []
    for i, segment in enumerate(_LATIN_RUN.split(norm)):  # odd indices: English runs
        if not segment:
            continue
        if i % 2:
            parts.append(g2p_english(normalize_en(segment), shouting=False, letter_names=True))
        else:
            parts.append(g2p_chinese(segment))
    return G2PResult.concat(parts, "zh")  # English runs stay parts of their own (lang "en")


def _clean_en(text: str) -> G2PResult:
    result = g2p_english(normalize_en(text))
    missing = MIN_EN_PHONES - len(result.phones)
    if missing > 0 and result.phones:
        result = G2PResult(
            phones=[","] * missing + result.phones,
            word2ph=[1] * missing + result.word2ph,
            norm_text="," * missing + result.norm_text,
            lang="en",
        )
    return result


def clean_text(text: str, lang: str) -> G2PResult:
    """Normalise ``text`` and convert it to phones of the v1 symbol table.

    Raises ``TextFrontendError`` for an unknown language, characters without a reading, or text
    without any pronounceable content; ``MissingDependencyError`` for Japanese without pyopenjtalk.
    """
    if not isinstance(text, str):
        raise TextFrontendError(f"text must be a string, got {type(text).__name__}")
    code = normalize_lang(lang)
    if code == "zh":
        result = _clean_zh(text)
    elif code == "en":
        result = _clean_en(text)
    else:
        result = g2p_japanese(text)
    if all(p in PUNCTUATION for p in result.phones):
        raise TextFrontendError(f"no pronounceable text in {text!r} (lang {code})")
    return result
