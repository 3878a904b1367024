"""Japanese grapheme-to-phoneme conversion through OpenJTalk (spec §7.4).

Needs the optional package ``pyopenjtalk-plus`` (imported on first use). The text is split into
runs of Japanese characters (kana, kanji, ASCII letters and digits, which OpenJTalk reads) and
the marks between them. Each run goes through ``pyopenjtalk.g2p``; its pause ``pau`` becomes
``,`` (not ``UNK`` as in v1), the silences ``sil`` are dropped, and the unvoiced vowels
``A E O`` (absent from the v1 table) become their voiced forms (``I`` and ``U`` exist in the
table and are kept). Marks map to ``! ? … , . -``; quotes and brackets are dropped; anything else
raises ``TextFrontendError``. ``word2ph`` has one entry per run and per mark.
"""

from __future__ import annotations

import re
from types import ModuleType

from text.errors import MissingDependencyError, TextFrontendError, describe_chars
from text.result import G2PResult
from text.symbols import SYMBOL_TO_ID

INSTALL_HINT = "Japanese text needs pyopenjtalk: pip install pyopenjtalk-plus"

_RUN_RE = re.compile(
    r"([\u3040-\u309f\u30a0-\u30ff\u4e00-\u9fff\u3400-\u4dbf\uff66-\uff9fA-Za-z0-9ー々〆〇]+)"
)
_MARKS = {
    "。": ".", "．": ".", ".": ".", "、": ",", "，": ",", ",": ",", "・": ",", "：": ",", ":": ",",
    "；": ",", ";": ",", "！": "!", "!": "!", "？": "?", "?": "?", "…": "…", "‥": "…",
    "ー": "-", "―": "-", "—": "-", "-": "-", "〜": "-", "～": "-", "~": "-",
}
_DROPPED = set(" \u3000\t\n「」『』（）()【】〈〉《》\"'“”‘’")
_PHONE_MAP = {"pau": ",", "A": "a", "E": "e", "O": "o"}


def _pyopenjtalk() -> ModuleType:
    try:
        import pyopenjtalk
    except ImportError as exc:
        raise MissingDependencyError(INSTALL_HINT) from exc
    return pyopenjtalk


def _run_phones(run: str, openjtalk: ModuleType) -> list[str]:
    phones = []
    for ph in openjtalk.g2p(run).split():
        if ph == "sil":
            continue
        ph = _PHONE_MAP.get(ph, ph)
        if ph not in SYMBOL_TO_ID:
            raise TextFrontendError(f"OpenJTalk phone {ph!r} (from {run!r}) is not in the symbol table")
        phones.append(ph)
    return phones


def g2p_japanese(text: str) -> G2PResult:
    """Phones of Japanese text; raises ``MissingDependencyError`` without pyopenjtalk."""
    openjtalk = _pyopenjtalk()
    text = text.replace("％", "パーセント").replace("%", "パーセント")
    phones: list[str] = []
    word2ph: list[int] = []
    norm: list[str] = []
    unknown: list[str] = []
    for i, piece in enumerate(_RUN_RE.split(text)):  # odd indices: Japanese runs; even: marks
        if i % 2:
            units = [(piece, _run_phones(piece, openjtalk))]
        else:
            unknown += [ch for ch in piece if ch not in _MARKS and ch not in _DROPPED]
            units = [(_MARKS[ch], [_MARKS[ch]]) for ch in piece if ch in _MARKS]
        for unit_text, unit_phones in units:
            if unit_phones:
                phones += unit_phones
                word2ph.append(len(unit_phones))
                norm.append(unit_text)
    if unknown:
        raise TextFrontendError(f"no Japanese reading for {describe_chars(unknown)} in {text!r}")
    return G2PResult(phones=phones, word2ph=word2ph, norm_text="".join(norm), lang="ja")
