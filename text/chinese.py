"""Chinese grapheme-to-phoneme conversion (spec §7.2 steps 2–8).

Input is text already normalised by ``text.zh_normalize.normalize_zh`` with the Latin runs
removed: Chinese characters and the punctuation ``! ? … , . -`` only. Each run of Chinese
characters is segmented with jieba (POS tags), read with pypinyin's phrase dictionary (tone 5 =
neutral), corrected by the context rules of ``text.zh_polyphones`` (为 wéi/wèi, 还 huán, 只 zhī,
得 děi ...), merged into prosodic words and rewritten by the tone-sandhi rules of
``text.tone_sandhi`` (within words, then third tones across word boundaries of one clause); each
syllable becomes two phones (``text.pinyin_map``), each punctuation mark one phone.

jieba is imported and initialised on first use, with its log messages silenced.
"""

from __future__ import annotations

import functools
import logging

from text.errors import TextFrontendError, describe_chars
from text.pinyin_map import pinyin_to_phones
from text.result import G2PResult
from text.tone_sandhi import PRONOUNS, Word, apply_sandhi, cross_word_sandhi, pre_merge
from text.zh_normalize import ZH_PUNCTUATION, is_chinese_char
from text.zh_polyphones import context_reading, has_rules

# jieba words that glue a localiser to the next verb (桌子|上有|一本书): split so that 上 stays
# with its noun.
_SPLIT_WORDS = {"上有": (("上", "f"), ("有", "v")), "里有": (("里", "f"), ("有", "v"))}


@functools.lru_cache(maxsize=1)
def _jieba():
    """The jieba module, initialised once (first call ~1 s), without its banner on stderr."""
    import jieba
    import jieba.posseg  # noqa: F401  (registers jieba.posseg)

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def _pinyin(text: str) -> tuple[str, ...]:
    """One toned syllable per character (``"ni3"``, neutral = 5); error for a character without one."""
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(
        text, style=Style.TONE3, neutral_tone_with_five=True, errors=lambda chars: [""] * len(chars)
    )
    if len(syllables) != len(text) or any(not s or not s[-1].isdigit() for s in syllables):
        missing = [ch for ch, s in zip(text, syllables) if not s or not s[-1].isdigit()] or list(text)
        raise TextFrontendError(f"no pinyin for {describe_chars(missing)} in {text!r}")
    return tuple(syllables)


@functools.lru_cache(maxsize=4096)
def _base_tone(char: str) -> str:
    """Citation tone of a character: its first non-neutral reading (子 → 3, although pypinyin's
    default reading of 子 alone is zi5)."""
    from pypinyin import Style, pinyin

    readings = pinyin(char, style=Style.TONE3, heteronym=True, neutral_tone_with_five=True)[0]
    return next((r[-1] for r in readings if r[-1] in "1234"), "5")


def _split3(text: str) -> int:
    """Length of the first part of a three-character word: 2 for 展览|馆, 1 for 小|老虎."""
    freq = _jieba().dt.FREQ
    head, tail = freq.get(text[:2], 0), freq.get(text[1:], 0)
    return 1 if tail > head else 2


# Readings of single-character words that pypinyin's default gets wrong, chosen by the jieba POS
# tag or by the next word; used when no dictionary phrase settles the reading.
_POS_READINGS = {
    ("长", "a"): "chang2", ("长", "v"): "zhang3", ("为", "p"): "wei4", ("种", "q"): "zhong3",
    ("种", "v"): "zhong4", ("只", "q"): "zhi1", ("只", "d"): "zhi3", ("数", "v"): "shu3",
    ("处", "v"): "chu3", ("地", "n"): "di4", ("好", "a"): "hao3",
}
_NEXT_WORD_READINGS = {  # 长得很高, 长高了
    ("长", "得"): "zhang3", ("长", "高"): "zhang3", ("长", "大"): "zhang3", ("长", "胖"): "zhang3",
}


def _phrase_reading(phrase: str, index: int) -> str | None:
    """Toned reading of ``phrase[index]`` when pypinyin's phrase dictionary has ``phrase``."""
    from pypinyin.contrib.tone_convert import to_tone3
    from pypinyin.phrases_dict import phrases_dict

    readings = phrases_dict.get(phrase)
    return to_tone3(readings[index][0], neutral_tone_with_five=True) if readings else None


def _single_char_reading(pieces: list[tuple[str, str]], i: int) -> str:
    """Reading of the one-character word ``pieces[i]`` from its neighbours: a dictionary phrase
    made of it and a whole neighbouring word (jieba splits 还|钱, the phrase 还钱 reads huan2),
    then ``_NEXT_WORD_READINGS``, ``_POS_READINGS``, then pypinyin's default."""
    char, pos = pieces[i]
    nxt = pieces[i + 1][0] if i + 1 < len(pieces) else ""
    prev = pieces[i - 1][0] if i > 0 else ""
    reading = (nxt and _phrase_reading(char + nxt, 0)) or (prev and _phrase_reading(prev + char, len(prev)))
    if reading and reading[-1].isdigit():
        return reading
    return (
        _NEXT_WORD_READINGS.get((char, nxt[:1]))
        or _POS_READINGS.get((char, pos))
        or _pinyin(char)[0]
    )


def _contextual(word: str, pos: str, syllables: tuple[str, ...], sentence: str, start: int) -> Word:
    """The word with the readings of ``text.zh_polyphones`` rules that match in ``sentence``
    (``word`` starts at ``sentence[start]``), marked as fixed."""
    out = list(syllables)
    fixed = [False] * len(word)
    for i, ch in enumerate(word):
        reading = context_reading(sentence, start + i, alone=len(word) == 1) if has_rules(ch) else None
        if reading:
            out[i], fixed[i] = reading, True
    return Word(word, pos, tuple(out), fixed=tuple(fixed) if any(fixed) else ())


def _fix_segmentation(pieces: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Words of ``_SPLIT_WORDS`` split; reduplicated words jieba tags as particles (等等 "etc.")
    are verbs before a pronoun object or after 再/请/稍/你 (你再等等, 等等我)."""
    pieces = [p for piece in pieces for p in _SPLIT_WORDS.get(piece[0], (piece,))]
    out = list(pieces)
    for i, (word, pos) in enumerate(pieces):
        if len(word) == 2 and word[0] == word[1] and pos.startswith("u"):
            nxt = pieces[i + 1][0] if i + 1 < len(pieces) else ""
            prev = pieces[i - 1][0] if i > 0 else ""
            if nxt[:1] in PRONOUNS or prev[-1:] in "再请稍你":
                out[i] = (word, "v")
    return out


def _words(run: str, sentence: str, start: int) -> list[Word]:
    """jieba words of a run of Chinese characters (``sentence[start:start + len(run)]``), with
    their pinyin: a word of several characters is read by pypinyin with its phrase dictionary, a
    single character by ``_single_char_reading``; then the context rules of ``text.zh_polyphones``."""
    import jieba.posseg

    _jieba()
    pieces = _fix_segmentation([(piece.word, piece.flag) for piece in jieba.posseg.cut(run)])
    if "".join(word for word, _ in pieces) != run:
        raise TextFrontendError(f"jieba segmentation of {run!r} does not cover the text")
    words = []
    offset = start
    for i, (word, pos) in enumerate(pieces):
        syllables = (_single_char_reading(pieces, i),) if len(word) == 1 else _pinyin(word)
        words.append(_contextual(word, pos, syllables, sentence, offset))
        offset += len(word)
    return words


def _runs(text: str) -> list[str]:
    """Split into maximal runs of Chinese characters and single punctuation marks."""
    runs: list[str] = []
    unknown = [ch for ch in text if not is_chinese_char(ch) and ch not in ZH_PUNCTUATION]
    if unknown:
        raise TextFrontendError(f"Chinese g2p got characters it cannot read: {describe_chars(unknown)}")
    for ch in text:
        if is_chinese_char(ch) and runs and is_chinese_char(runs[-1][-1]):
            runs[-1] += ch
        else:
            runs.append(ch)
    return runs


def syllables_of(norm_text: str) -> list[str]:
    """Toned syllables after tone sandhi, one per Chinese character; punctuation kept as itself."""
    out: list[str] = []
    start = 0
    for run in _runs(norm_text):
        if run in ZH_PUNCTUATION:
            out.append(run)
        else:
            run_syllables = []
            for word in pre_merge(_words(run, norm_text, start)):
                run_syllables += apply_sandhi(word, _split3, _base_tone)
            out += cross_word_sandhi(run_syllables)
        start += len(run)
    return out


def g2p_chinese(norm_text: str) -> G2PResult:
    """Phones of normalised Chinese text: 2 per syllable, 1 per punctuation mark, so
    ``len(norm_text) == len(word2ph)``."""
    phones: list[str] = []
    word2ph: list[int] = []
    for unit in syllables_of(norm_text):
        unit_phones = [unit] if unit in ZH_PUNCTUATION else pinyin_to_phones(unit)
        phones += unit_phones
        word2ph.append(len(unit_phones))
    return G2PResult(phones=phones, word2ph=word2ph, norm_text=norm_text, lang="zh")
