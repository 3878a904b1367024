"""Japanese grapheme-to-phoneme conversion through OpenJTalk (spec §7.4).

Needs the optional package ``pyopenjtalk-plus`` (imported on first use). The text is split into
runs of Japanese characters (kana, kanji, ASCII letters and digits, which OpenJTalk reads) and
the marks between them. Each run goes through ``pyopenjtalk.g2p``; its pause ``pau`` becomes
``,`` (not ``UNK`` as in v1), the silences ``sil`` are dropped, and the unvoiced vowels
``A E O`` (absent from the v1 table) become their voiced forms (``I`` and ``U`` exist in the
table and are kept), and the rare ``kw gw ty`` (クァ グァ テュ) become ``k w``, ``g w``, ``t y``, so
that every output phone is in the v1 Japanese phone set. Latin words are read by the English
frontend (``en`` parts of the result); digits stay with OpenJTalk, which reads them in Japanese.
Marks map to ``! ? … , . -``; quotes and brackets are dropped; anything else raises
``TextFrontendError``. ``word2ph`` has one entry per run, per English word and per mark.
"""

from __future__ import annotations

import re
from types import ModuleType

from text.english import g2p_english, normalize_en
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
# OpenJTalk phones outside the v1 table → phones of the table (v1 would write UNK)
_PHONE_MAP = {"pau": [","], "A": ["a"], "E": ["e"], "O": ["o"], "kw": ["k", "w"], "gw": ["g", "w"], "ty": ["t", "y"]}
_LATIN_WORD = re.compile(r"([A-Za-z]+(?:'[A-Za-z]+)*)")


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
        for mapped in _PHONE_MAP.get(ph, [ph]):
            if mapped not in SYMBOL_TO_ID:
                raise TextFrontendError(f"OpenJTalk phone {mapped!r} (from {run!r}) is not in the symbol table")
            phones.append(mapped)
    return phones


class _Chunks:
    """Japanese units gathered into one ``ja`` result between English words (``en`` results)."""

    def __init__(self) -> None:
        self.results: list[G2PResult] = []
        self.phones: list[str] = []
        self.word2ph: list[int] = []
        self.norm: list[str] = []

    def add(self, unit_text: str, unit_phones: list[str]) -> None:
        if unit_phones:
            self.phones += unit_phones
            self.word2ph.append(len(unit_phones))
            self.norm.append(unit_text)

    def flush(self) -> None:
        if self.phones:
            self.results.append(G2PResult(self.phones, self.word2ph, "".join(self.norm), "ja"))
        self.phones, self.word2ph, self.norm = [], [], []

    def add_english(self, word: str) -> None:
        self.flush()
        self.results.append(g2p_english(normalize_en(word), shouting=False, letter_names=True))


def g2p_japanese(text: str) -> G2PResult:
    """Phones of Japanese text; raises ``MissingDependencyError`` without pyopenjtalk.

    Latin words inside the text are read by the English frontend and become ``en`` parts."""
    openjtalk = _pyopenjtalk()
    text = text.replace("％", "パーセント").replace("%", "パーセント")
    chunks = _Chunks()
    unknown: list[str] = []
    for i, piece in enumerate(_RUN_RE.split(text)):  # odd indices: Japanese runs; even: marks
        if i % 2:
            for j, sub in enumerate(_LATIN_WORD.split(piece)):  # odd indices: Latin words
                if j % 2:
                    chunks.add_english(sub)
                elif sub:
                    chunks.add(sub, _run_phones(sub, openjtalk))
        else:
            unknown += [ch for ch in piece if ch not in _MARKS and ch not in _DROPPED]
            for ch in piece:
                if ch in _MARKS:
                    chunks.add(_MARKS[ch], [_MARKS[ch]])
    if unknown:
        raise TextFrontendError(f"no Japanese reading for {describe_chars(unknown)} in {text!r}")
    chunks.flush()
    if not chunks.results:
        return G2PResult(phones=[], word2ph=[], norm_text="", lang="ja")
    return G2PResult.concat(chunks.results, "ja")
