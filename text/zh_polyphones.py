"""Polyphonic characters read from their context (the largest class of Chinese g2p errors).

Each rule says: character ``char`` reads ``reading`` when the text before it ends with ``left``
and the text after it starts with ``right`` (regular expressions over the normalised sentence,
punctuation included; empty = anything), optionally only when the character is a word of its
own in the segmentation (``alone``). Rules of one character are tried in order, the first match
wins; a character no rule matches keeps the reading from the dictionary (pypinyin's phrase
dictionary for the jieba word, then the POS rules of ``text.chinese``).

The rules describe constructions, not sentences: a verb before 为 (选为, 变为) makes it the copula
wéi; 还 before a returned thing, a pronoun or the end of a clause is huán; 只 after a numeral or a
demonstrative is the classifier zhī; a pronoun or adverb before a lone 得 that is not followed by
a complement makes it the modal děi; and so on (see ``RULES``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_PRONOUN = "我你他她它咱谁"
_END = r"(?:$|[,.!?…-])"
_NUMERAL = "一二三四五六七八九十两几每这那哪半某多"
# words that start with 一 but are not numbers (八点|一直, 三点|一起)
_YI_WORDS = "直|起|定|样|切|般|些|共|下|会|边|同|路|致|齐|旦|律|贯|概|向|再|生|连|道|身|心|面|时|点|刻"


@dataclass(frozen=True)
class Rule:
    char: str
    reading: str
    left: str = ""
    right: str = ""
    alone: bool = False


RULES = (
    # 为: copula / "become" after a verb (选为, 变为, 称为, 视为), 知之为知之
    Rule("为", "wei2", left=r"(?:选|评|称|视|改|变|化|转|分|列|定|立|封|推|任|聘|誉|奉|尊|拜|认|作|成|沦|划|合|译"
                            r"|命名|知之|不知|以[^,.!?]{1,4})$"),
    Rule("为", "wei2", left=r"[^我你他她它们咱谁,.!?…]$",
         right=r"(?:[零一二三四五六七八九十两幺负正约]|百分之|千分之)"),
    # 还: "give back" before what is returned, a pronoun, 给, or the end of a clause
    Rule("还", "huan2", right=r"(?:给|钱|书|债|款|清|贷|账|原|手|击|价|乡|礼|[" + _PRONOUN + "]|" + _END + ")",
         left=r"(?<!还)$"),
    # 数: the verb "count"
    Rule("数", "shu3", right=r"(?:一数|了数|数|钱|星星|不清|不过来|不胜数|到|着|一下|落)"),
    Rule("数", "shu3", left=r"数[一了]$"),  # 数一数, 数了数
    # 背: "carry on the back"
    Rule("背", "bei1", right=r"(?:着|起|上|书包|包|孩子|小孩|行李|篓|债|黑锅|不动)"),
    Rule("背", "bei1", left=r"把[^,.!?]*(?:包|孩子|小孩|行李|人)$"),
    # 转: "turn round, rotate"
    Rule("转", "zhuan4", left=r"(?:绕着|围着|绕|团团|打|在|直)$"),
    Rule("转", "zhuan4", right=r"(?:了|过)?[零一二三四五六七八九十两几百半]+(?:度|圈|周)"),  # 转了三十度
    Rule("转", "zhuan4", right=r"(?:圈|盘|悠|速|来转去|个不停|着|" + _END + ")", alone=True),
    # 尽: jìn "exhausted" at the end of a clause (白日依山尽)
    Rule("尽", "jin4", right=_END),
    # 只: classifier after a numeral or demonstrative, unless it starts 只是/只有...
    Rule("只", "zhi1", left=r"[" + _NUMERAL + r"]$", right=r"(?!是|有|要|能|会|好|想|不|在|得|剩|为|怕)"),
    # 落: là "leave behind" in 把 ... 落在/落下
    Rule("落", "la4", left=r"把[^,.!?]*$", right=r"(?:在|下)"),
    Rule("落", "luo4", alone=True),
    # 了: liǎo "manage to" in V不了, 不得了
    Rule("了", "liao3", left=r"(?:不得|[^,.!?…]不)$"),
    # classical 说 = 悦 in 不亦说乎
    Rule("说", "yue4", left=r"不亦$", right=r"乎"),
    # 地: the adverbial particle after a reduplicated form (慢慢地, 高高兴兴地)
    Rule("地", "de5", left=r"(.)\1$"),
    # 都: the adverb dōu before 会 (我都会), not 都会 "metropolis"
    Rule("都", "dou1", left=r"(?<!大)$", right=r"会"),
    # 得: modal děi after a pronoun or adverb, not before a complement or an object
    Rule("得", "dei3", left=r"(?:[" + _PRONOUN + r"们也还就都必总可])$",
         right=r"(?!了|过|到|奖|分|病|手|意|出|知|罪|逞|益|失|体|救|力|当|宠|胜|势|志|悉|以|很|太|多|不|非常|更|真|挺"
               r"|特别|好的|好了|" + _END + ")"),
    # 种: classifier zhǒng after a numeral/demonstrative; the verb zhòng before what is planted
    Rule("种", "zhong3", left=r"[" + _NUMERAL + r"各]$"),
    Rule("种", "zhong4", right=r"(?:树|花|菜|地|田|草|庄稼|粮|苗|豆|瓜|麦|稻|了|着|过)"),
    Rule("种", "zhong4", left=r"(?:要|在|去|来|能|会|想|没|不|先|再|就|都|也|还|得)$", alone=True),
    Rule("种", "zhong4", left=r"(?:接|栽|耕|移|复|抢|套)$"),  # 接种, 栽种
    # 干: gān "dry" after what dries or drains something
    Rule("干", "gan1", left=r"(?:已经|晒|晾|风|烘|吹|擦|喝|吸|榨|烤)$"),
    # 量: the verb liáng "measure"
    Rule("量", "liang2", left=r"(?:^|[,.!?…]|请|我|你|他|她|先|再|去|来|要|帮|给)$",
         right=r"(?:了|一下|一量|体温|身高|尺寸|血压)"),
    # 长: cháng "length" after 全/总/周/身
    Rule("长", "chang2", left=r"(?:全|总|周|身)$"),
    # 地道 / 大意 as adjectives: neutral second syllable after a degree adverb
    Rule("道", "dao5", left=r"(?:很|真|太|挺|非常|特别|最|更|够|不)地$"),
    Rule("意", "yi5", left=r"(?:太|很|真|挺|别|不能|不要|可|过于)大$"),
    # 一 in dates and weekdays and ordinals: 周一, 星期一, 一楼, 一年级
    Rule("一", "yi1", left=r"(?:周|星期|礼拜|初|第)$"),
    Rule("一", "yi1", left=r"[零二三四五六七八九十百千万亿两点比]$", right=r"(?!" + _YI_WORDS + ")"),  # 十一个, 二比一
    Rule("一", "yi1", right=r"比[零一二三四五六七八九十两]"),  # 一比一
    Rule("一", "yi1", right=r"点[零一二三四五六七八九](?!点)"),  # 一点五 (not 一点一点)
    Rule("一", "yi1", right=r"(?:楼|年级)"),
    # 过: a main verb (过马路, 过年) when it does not follow a verb
    Rule("过", "guo4", left=r"(?:^|[,.!?…]|一起|要|想|去|来|在|不|没|能|会|先|再|好好|怎么)$",
         right=r"(?:马路|年|节|河|桥|街|日子|生日|夜|关)"),
)


@functools.lru_cache(maxsize=1)
def _rules_by_char() -> dict[str, list[tuple[Rule, re.Pattern | None, re.Pattern | None]]]:
    table: dict[str, list] = {}
    for rule in RULES:
        left = re.compile(r"(?:" + rule.left + r")") if rule.left else None
        right = re.compile(rule.right) if rule.right else None
        table.setdefault(rule.char, []).append((rule, left, right))
    return table


def has_rules(char: str) -> bool:
    return char in _rules_by_char()


def context_reading(sentence: str, index: int, alone: bool) -> str | None:
    """Reading of ``sentence[index]`` given by the first matching rule, or None.

    ``alone``: the character is a one-character word of the segmentation."""
    for rule, left, right in _rules_by_char().get(sentence[index], ()):
        if rule.alone and not alone:
            continue
        if left is not None and not left.search(sentence, 0, index):
            continue
        if right is not None and not right.match(sentence, index + 1):
            continue
        return rule.reading
    return None
