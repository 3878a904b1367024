"""Mandarin tone sandhi on jieba words (spec §7.2 steps 4 and 6).

A ``Word`` carries its characters, its jieba POS tag and one toned pinyin syllable per character
(``"ni3"``). ``pre_merge`` joins words into prosodic words so that sandhi can see its context:
不/一 with the next word, V一V, a one-syllable pronoun object with its verb or preposition (给我,
请你), a degree adverb with its predicate (很好, 挺冷), decimals (三点五), localisers with their
noun (桌子上), third-tone groups of at most three syllables that never split those units, and 儿
with its stem. ``apply_sandhi`` rewrites the tones of one word, in the order 不 → 一 → neutral
tone → third tone (readings fixed by a context rule of ``text.zh_polyphones`` are kept);
``cross_word_sandhi`` then turns a third tone before a third tone across word boundaries into 2:

* 不: middle of a three-character ``X不Y`` word → 5 (对不起, 来不及); before a fourth tone → 2;
  otherwise 4.
* 一: tone 1 at the end of a word, after 第, next to a digit (一二三, 十一, 三点一四) and before
  月/号 (dates); ``V一V`` → 5 (看一看); before a fourth tone → 2 (一样, 一个); otherwise 4 (一天).
* neutral tone (5): second character of a reduplicated noun or verb (妈妈, 看看, 姐姐们;
  a third-tone verb doubled reads 2 + 5: 想想, 等等);
  final particles (吧 呢 啊 吗 ...); the structural particles 的/地/得 (read ``de5``); 了/着/过 as
  aspect particles; the erhua suffix 儿 (哪儿, not 女儿); 们/子 suffixes of pronouns and nouns;
  上/里 as localisers; 来/去 after a directional verb (出去, 回来); the measure word 个 (一个,
  这个, 多少个; not 个人, 整个); the words of ``zh_neutral_words.txt`` (also as the last two
  characters of a longer word, or before 们/儿). Full-tone words (男子, 电子) keep their tones,
  also inside longer words (电子邮件).
* third tone: 3+3 → 2+3 applied cyclically: three-character words split into 2+1 (展览|馆 →
  2 2 3) or 1+2 (小|老虎 → 3 2 3) with the dictionary, four-character words into 2+2; in
  longer words every third tone directly before a third tone becomes 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NEUTRAL_WORDS_FILE = Path(__file__).with_name("zh_neutral_words.txt")

NUMERAL_DIGITS = set("零一二三四五六七八九十幺两")
PRONOUNS = set("我你他她它")
_DIGIT_CHARS = set("零一二三四五六七八九十幺")  # 一 next to these is part of a number
_FINAL_PARTICLES = set("吧呢哈啊呐噻嘛吖嗨哦哒额滴哩哟喽啰耶喔诶吗呗")
_NOT_NEUTRAL = {
    # reduplications and 子 words that keep their full tones
    "人人", "天天", "个个", "家家", "处处", "年年", "时时", "事事", "样样", "刚刚", "常常", "往往",
    "渐渐", "仅仅", "偏偏", "纷纷", "默默", "虎虎", "男子", "女子", "分子", "原子", "量子", "粒子",
    "电子", "因子", "莲子", "石子", "瓜子", "君子", "王子", "太子", "弟子", "学子", "游子", "孝子",
    "才子", "赤子", "孔子", "孟子", "老子", "庄子", "天子", "臣子", "质子", "中子", "光子", "离子",
}
# words ending in a full-syllable 儿 (not the erhua suffix)
_FULL_ER = {
    "女儿", "婴儿", "孤儿", "幼儿", "健儿", "宠儿", "胎儿", "男儿", "少儿", "患儿", "弃儿",
    "新生儿", "混血儿", "育婴儿", "儿儿",
}
_LOCALISER_POS = {"s", "l", "f"}
_DIRECTIONAL_VERBS = set("上下进出回过起开")
_GE_BEFORE = set("几有两半多各整每做是这那哪") | NUMERAL_DIGITS
_ORDINAL_BEFORE_YI = set("第周期拜初")
_DEGREE_ADVERBS = {"很", "挺", "好"}
_CJK_START = frozenset(chr(c) for c in range(0x4E00, 0xA000))
_FULL_GE = {"整个", "各个", "个个"}


@dataclass(frozen=True)
class Word:
    text: str
    pos: str
    syllables: tuple[str, ...]  # one toned pinyin syllable per character, e.g. ("ni3", "hao3")
    tight: bool = False  # a prosodic word built by pre_merge (给我, 很好): never regrouped
    split: int = 0  # length of the first part of a tight word (its internal boundary), else 0
    fixed: tuple[bool, ...] = ()  # per syllable: reading set by a context rule, kept by 不/一/neutral rules

    def is_fixed(self, i: int) -> bool:
        return bool(self.fixed) and self.fixed[i]


def tone(syllable: str) -> str:
    return syllable[-1]


def with_tone(syllable: str, new_tone: str) -> str:
    return syllable[:-1] + new_tone


@functools.lru_cache(maxsize=1)
def neutral_words() -> frozenset[str]:
    lines = NEUTRAL_WORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


# ---------------------------------------------------------------- pre-merge (step 4)

def _fixed(w: Word) -> tuple[bool, ...]:
    return w.fixed or (False,) * len(w.text)


def _join(a: Word, b: Word, pos: str | None = None, tight: bool = False) -> Word:
    return Word(a.text + b.text, pos or b.pos, a.syllables + b.syllables, tight, len(a.text) if tight else 0,
                _fixed(a) + _fixed(b))


def _all_third(word: Word) -> bool:
    return all(tone(s) == "3" for s in word.syllables)


def _is_reduplication(text: str) -> bool:
    return len(text) == 2 and text[0] == text[1]


def pre_merge(words: list[Word]) -> list[Word]:
    """Merge jieba words into prosodic words so that sandhi sees 不/一 with their neighbours
    (一 after 周/星期/第 joins the word before it), reduplications, a one-syllable pronoun object
    with its one-syllable verb or preposition (给我, 请你), third-tone groups of at most three
    syllables (never splitting those units), and 儿 with its stem."""
    merged: list[Word] = []
    for w in words:  # 不 + next word; dangling 一 + next word (周一, 第一 stay with the word before)
        if w.text == "一" and merged and merged[-1].text[-1] in _ORDINAL_BEFORE_YI:
            merged[-1] = _join(merged[-1], w, merged[-1].pos)
        elif merged and merged[-1].text in ("不", "一"):
            merged[-1] = _join(merged[-1], w)
        else:
            merged.append(w)

    out: list[Word] = []
    for w in merged:  # V 一V → V一V, or V一 V → V一V
        if out and len(w.text) == 2 and w.text[0] == "一" and out[-1].text == w.text[1]:
            out[-1] = _join(out[-1], w, out[-1].pos)
        elif out and len(out[-1].text) == 2 and out[-1].text[1] == "一" and out[-1].text[0] == w.text:
            out[-1] = _join(out[-1], w, w.pos)
        elif out and out[-1].text == w.text and len(w.text) == 1:  # identical neighbours: 看 看
            out[-1] = _join(out[-1], w)
        elif (
            out and w.text in PRONOUNS and len(out[-1].text) == 1 and out[-1].pos[:1] in ("v", "p")
            and out[-1].text not in PRONOUNS
        ):  # verb/preposition + pronoun object: 给我, 请你
            out[-1] = _join(out[-1], w, out[-1].pos, tight=True)
        elif out and w.text in ("上", "里") and w.pos == "f" and out[-1].pos[:1] in ("n", "r", "s"):
            out[-1] = _join(out[-1], w, "f")  # localiser after a noun: 桌子上, 公园里
        elif out and out[-1].text in _DEGREE_ADVERBS and w.text[0] in _CJK_START:  # 很好, 挺冷
            out[-1] = _join(out[-1], w, w.pos, tight=True)
        elif (
            out and len(out[-1].text) >= 2 and out[-1].text[-1] == "点" and out[-1].text[-2] in NUMERAL_DIGITS
            and all(c in NUMERAL_DIGITS or c in "百千万亿" for c in w.text)
        ):  # 点 + digits of a decimal: 三点五
            out[-1] = _join(out[-1], w, out[-1].pos)
        else:
            out.append(w)

    for boundary_only in (False, True):
        grouped: list[Word] = []
        for w in out:
            prev = grouped[-1] if grouped else None
            if (
                prev is not None
                and len(prev.text) + len(w.text) <= 3
                and not (prev.tight or w.tight or _is_reduplication(prev.text) or _is_reduplication(w.text))
                and (
                    tone(prev.syllables[-1]) == "3" and tone(w.syllables[0]) == "3"
                    if boundary_only else _all_third(prev) and _all_third(w)
                )
            ):
                grouped[-1] = _join(prev, w, prev.pos)
            else:
                grouped.append(w)
        out = grouped

    final: list[Word] = []
    for w in out:
        if final and w.text == "儿":
            final[-1] = _join(final[-1], w, final[-1].pos)
        else:
            final.append(w)
    return final


# ---------------------------------------------------------------- sandhi (step 6)

def _bu_sandhi(text: str, tones: list[str]) -> None:
    for i, ch in enumerate(text):
        if ch != "不":
            continue
        if len(text) == 3 and i == 1:
            tones[i] = "5"
        elif i + 1 < len(text):
            tones[i] = "2" if tones[i + 1] == "4" else "4"


def _yi_sandhi(text: str, tones: list[str], base_tone: Callable[[str], str]) -> None:
    for i, ch in enumerate(text):
        if ch != "一":
            continue
        prev = text[i - 1] if i > 0 else ""
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if len(text) == 3 and i == 1 and text[0] == text[2]:
            tones[i] = "5"
        elif (
            not nxt or (prev and prev in _DIGIT_CHARS | _ORDINAL_BEFORE_YI)
            or nxt in _DIGIT_CHARS or nxt in "月号日"
            or (nxt == "点" and text[i + 2:i + 3] in _DIGIT_CHARS and text[i + 3:i + 4] != "点")
        ):
            tones[i] = "1"
        else:
            next_tone = tones[i + 1] if tones[i + 1] != "5" else base_tone(nxt)
            tones[i] = "2" if next_tone == "4" else "4"


def _neutral_sandhi(
    word: Word, tones: list[str], syllables: list[str], base_tone: Callable[[str], str]
) -> None:
    text, pos = word.text, word.pos
    last = len(text) - 1
    if text in _NOT_NEUTRAL:  # full tones even where pypinyin has a neutral one (男子 zi3)
        for i, ch in enumerate(text):
            if tones[i] == "5":
                tones[i] = base_tone(ch)
        return
    stem = text[:2] if len(text) == 2 or (len(text) == 3 and text[2] in "们儿") else ""
    if _is_reduplication(stem) and pos[:1] in ("n", "v") and stem[0] not in NUMERAL_DIGITS:
        if pos[:1] == "v" and tones[0] == "3":
            tones[0] = "2"  # 想想, 等等: a third-tone verb doubled reads 2 + 5
        tones[1] = "5"  # 妈妈, 看看, 姐姐们
    if len(text) > 1 and text[-1] in _FINAL_PARTICLES:
        tones[last] = "5"
    if text in ("的", "地", "得") and pos.startswith("u"):
        syllables[last], tones[last] = "de5", "5"
    elif text[-1] == "的" and syllables[last].startswith("de"):
        tones[last] = "5"
    elif len(text) == 3 and text[1] == "得" and text[0] != "不" and syllables[1].startswith("de"):
        tones[1] = "5"  # 跑得快, 来得及
    if len(text) > 1 and text[-1] == "儿" and text not in _FULL_ER and text[-2:] not in _FULL_ER:
        tones[last] = "5"  # erhua suffix: 哪儿, 一点儿, 小孩儿
    if text in ("了", "着", "过") and pos in ("ul", "uz", "ug"):
        tones[last] = "5"
    if len(text) > 1 and text[-1] in "们子" and pos[:1] in ("r", "n"):
        tones[last] = "5"
    if len(text) > 1 and text[-1] in "上里" and pos in _LOCALISER_POS:
        tones[last] = "5"
    if len(text) > 1 and text[-1] in "来去" and text[-2] in _DIRECTIONAL_VERBS:
        tones[last] = "5"
    for i, ch in enumerate(text):  # measure word 个: 一个, 这个, 多少个 (not 个人, 整个)
        if ch == "个" and text not in _FULL_GE and (i == last or (i > 0 and text[i - 1] in _GE_BEFORE)):
            tones[i] = "5"
    lexicon = neutral_words()
    if text in lexicon or text[-2:] in lexicon:
        tones[last] = "5"
    elif len(text) > 2 and text[-1] in "们儿" and text[-3:-1] in lexicon:
        tones[last - 1] = "5"
    for i in range(len(text) - 1):  # 电子邮件, 阿尔法粒子: a full-tone word inside a longer one
        if text[i:i + 2] in _NOT_NEUTRAL and tones[i + 1] == "5":
            tones[i + 1] = base_tone(text[i + 1])


def _third_sandhi(tones: list[str], text: str, split3: Callable[[str], int]) -> list[str]:
    n = len(tones)
    if n < 2:
        return tones
    if n == 2:
        return ["2", "3"] if tones == ["3", "3"] else tones
    if n <= 4:
        k = split3(text) if n == 3 else 2
        left = _third_sandhi(tones[:k], text[:k], split3)
        right = _third_sandhi(tones[k:], text[k:], split3)
        if left[-1] == "3" and right[0] == "3":
            left[-1] = "2"
        return left + right
    out = list(tones)
    for i in range(n - 1):  # long words: a third tone before a third tone becomes 2
        if tones[i] == "3" and tones[i + 1] == "3":
            out[i] = "2"
    return out


def apply_sandhi(
    word: Word, split3: Callable[[str], int], base_tone: Callable[[str], str]
) -> list[str]:
    """Toned syllables of ``word`` after sandhi.

    ``split3(text)`` gives the length (1 or 2) of the first part of a three-character word;
    ``base_tone(char)`` the citation tone of a character (for 一 before a neutral tone, and to
    undo pypinyin's neutral tone in words that keep full tones).
    """
    syllables = list(word.syllables)
    text = word.text
    if len(text) == 3 and text[1] == "一" and text[0] == text[2]:
        syllables[2] = syllables[0]  # V一V: both verbs read alike (数一数)
    tones = [tone(s) for s in syllables]
    _bu_sandhi(text, tones)
    _yi_sandhi(text, tones, base_tone)
    _neutral_sandhi(word, tones, syllables, base_tone)
    for i, s in enumerate(word.syllables):
        if word.is_fixed(i):
            syllables[i], tones[i] = s, tone(s)
    tones = _third_sandhi(tones, text, (lambda _: word.split) if word.split and len(text) == 3 else split3)
    return [with_tone(s, t) for s, t in zip(syllables, tones)]



def cross_word_sandhi(syllables: list[str]) -> list[str]:
    """Third tone before third tone across prosodic-word boundaries (one clause): the first → 2,
    left to right (老虎|跑了 → lao2 hu2 pao3 le5)."""
    out = list(syllables)
    for i in range(len(out) - 1):
        if tone(out[i]) == "3" and tone(out[i + 1]) == "3":
            out[i] = with_tone(out[i], "2")
    return out
