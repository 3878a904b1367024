"""The GPT-SoVITS v1 phone symbol table (322 symbols, spec §7.1), shared by every language.

The order is part of every checkpoint: the table is built exactly as v1 builds it,
``sorted(set(pad + initials + finals×tones + ja + punctuation + specials + ARPAbet))`` in
Python's code-point order, so ``!`` is id 0 (also the padding id) and ``_`` is id 95.
``SYMBOLS_MD5`` (md5 of the symbols joined by single spaces) identifies the table.
"""

from __future__ import annotations

import hashlib

from text.errors import TextFrontendError

PAD = "_"

# Mandarin initials; AA/EE/OO mark zero-initial syllables starting with a/e/o.
ZH_INITIALS = (
    "AA", "EE", "OO", "b", "c", "ch", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "q", "r", "s",
    "sh", "t", "w", "x", "y", "z", "zh",
)

# Mandarin finals (opencpop-strict): i0 is the apical i after z/c/s, ir after zh/ch/sh/r,
# E/En the finals of ye/yan.
ZH_FINALS = (
    "E", "En", "a", "ai", "an", "ang", "ao", "e", "ei", "en", "eng", "er", "i", "i0", "ia", "ian",
    "iang", "iao", "ie", "in", "ing", "iong", "ir", "iu", "o", "ong", "ou", "u", "ua", "uai", "uan",
    "uang", "ui", "un", "uo", "v", "van", "ve", "vn",
)

ZH_TONES = ("1", "2", "3", "4", "5")

JA_SYMBOLS = (
    "I", "N", "U", "a", "b", "by", "ch", "cl", "d", "dy", "e", "f", "g", "gy", "h", "hy", "i", "j", "k",
    "ky", "m", "my", "n", "ny", "o", "p", "py", "r", "ry", "s", "sh", "t", "ts", "u", "v", "w", "y", "z",
)

PUNCTUATION = ("!", "?", "…", ",", ".", "-")

# SP: pause; SP2/SP3: GS-v1 special pauses; UNK: unknown (never produced by this frontend).
SPECIAL_SYMBOLS = ("SP", "SP2", "SP3", "UNK")

# CMU ARPAbet: vowels with stress 0/1/2, consonants bare, plus ER and IH without stress.
_ARPA_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
_ARPA_CONSONANTS = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH", "T",
    "TH", "V", "W", "Y", "Z", "ZH",
)
ARPABET = frozenset([v + s for v in _ARPA_VOWELS for s in "012"] + [*_ARPA_CONSONANTS, "ER", "IH"])


def _build_symbols() -> tuple[str, ...]:
    finals_with_tones = [f + t for f in ZH_FINALS for t in ZH_TONES]
    everything = (
        [PAD, *ZH_INITIALS, *finals_with_tones, *JA_SYMBOLS]
        + list(PUNCTUATION) + list(SPECIAL_SYMBOLS) + sorted(ARPABET)
    )
    return tuple(sorted(set(everything)))


SYMBOLS: tuple[str, ...] = _build_symbols()
SYMBOL_TO_ID: dict[str, int] = {s: i for i, s in enumerate(SYMBOLS)}
SYMBOLS_MD5: str = hashlib.md5(" ".join(SYMBOLS).encode("utf-8")).hexdigest()
PAD_ID = 0  # id 0 is "!" — a real symbol; masks must make padding irrelevant (spec §10.18)


def phones_to_ids(phones: list[str]) -> list[int]:
    """Map phones to symbol ids; raises ``TextFrontendError`` naming the first phone not in the table."""
    ids = []
    for i, phone in enumerate(phones):
        idx = SYMBOL_TO_ID.get(phone)
        if idx is None:
            raise TextFrontendError(
                f"phone {phone!r} at position {i} is not in the v1 symbol table "
                f"({len(SYMBOLS)} symbols, md5 {SYMBOLS_MD5})"
            )
        ids.append(idx)
    return ids
