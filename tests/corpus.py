"""Synthesize a small multi-speaker test corpus with espeak-ng (no downloads).

libespeak-ng and its data come from the ``espeakng-loader`` package and are driven
through ctypes in synchronous mode: a synth callback collects int16 samples at the
library's rate (22050 Hz). Speakers are voice variants with their own pitch and rate.
Output is deterministic (each speaker is synthesized in a fresh process) and the whole
corpus takes about a second.

Layouts written by ``make_corpus`` (``form``):

- ``"tree"``: ``<root>/<lang>/<speaker>/<nnn>.wav`` with ``<nnn>.lab`` beside each wav
- ``"list"``: the same wavs and ``<root>/data.list`` (``wav_path|speaker|lang|text``, relative paths)
- ``"both"``: both of the above

Used by the tests and by the demo; keep it free of pytest.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import wave
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader
import numpy as np
import soundfile as sf
import soxr

ZH_SENTENCES = (
    "今天天气很好。",
    "我想喝一杯热茶。",
    "明天早上八点开会。",
    "这本书一共有三百页。",
    "请把窗户关上。",
    "我们一起去吃午饭吧。",
    "他每天跑步五公里。",
    "火车下午三点出发。",
    "你的电话号码是多少？",
    "这件衣服一百二十块。",
    "周末我要去看电影。",
    "妈妈在厨房做饭。",
    "我家有两只小猫。",
    "这个问题很简单。",
    "图书馆九点关门。",
    "他今年二十五岁。",
    "外面在下雨，记得带伞。",
    "我们班有四十个学生。",
    "公交车来了，快上车！",
    "谢谢你的帮助。",
    "这条路很安静。",
    "会议推迟到十点半。",
    "我每天喝八杯水。",
    "这家店的面条很好吃。",
)
EN_SENTENCES = (
    "The weather is nice today.",
    "Please open the window.",
    "I have two brothers.",
    "See you at nine tomorrow.",
)

# Building blocks of ``demo_sentences``: subject + time + activity + ending, all distinct combinations.
_SUBJECTS = ("我", "你", "他", "她", "我们", "老师", "小王", "妈妈", "爸爸", "哥哥", "姐姐", "同学们",
             "医生", "司机", "奶奶", "这个孩子")
_TIMES = ("今天", "明天", "昨天", "早上", "晚上", "周末", "下午三点", "每天", "星期五", "中午", "后天",
          "八点半")
_ACTIVITIES = ("去商店买水果", "在家看书", "去公园跑步", "喝了一杯咖啡", "写了一封信", "给朋友打电话",
               "学习中文", "做晚饭", "听音乐", "坐火车去上海", "在图书馆学习", "骑自行车上班",
               "去医院看病", "洗衣服", "买了两张电影票", "在河边散步", "准备考试", "打扫房间",
               "吃面条", "参加会议", "开车去机场", "看足球比赛", "种了几棵树", "唱歌跳舞")
_ENDINGS = ("。", "，然后回家休息。", "，因为天气很好。", "，觉得很开心。", "，一共花了三个小时。",
            "，没有人知道。")

# (espeak voice variant, pitch 0-100, rate in words per minute, pitch range 0-100)
SPEAKER_STYLES = (
    ("", 45, 175, 50),
    ("+f3", 70, 165, 60),
    ("+m3", 30, 185, 40),
    ("+f2", 80, 195, 70),
    ("+m1", 40, 160, 30),
    ("+f4", 60, 180, 55),
)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class CorpusItem:
    wav: Path
    lab: Path | None  # None in the "list" form
    speaker: str
    lang: str
    text: str
    duration: float  # seconds


@dataclass(frozen=True)
class CorpusInfo:
    root: Path
    form: str
    sample_rate: int
    items: list[CorpusItem]
    list_path: Path | None  # the .list file, None in the "tree" form

    @property
    def speakers(self) -> list[str]:
        return sorted({it.speaker for it in self.items})


class Espeak:
    """One initialised libespeak-ng session; use through ``espeak_session``."""

    def __init__(self, lib: ctypes.CDLL, sample_rate: int):
        self.lib = lib
        self.sample_rate = sample_rate
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference while the library may call it
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), n: int, events: ctypes.c_void_p) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # continue synthesis

    def synth(self, text: str, voice: str, pitch: int, rate: int, pitch_range: int, seed: int = 0) -> np.ndarray:
        """int16 samples [T] of ``text`` spoken by ``voice`` (e.g. ``"cmn+f3"``); ``seed`` fixes espeak's jitter."""
        self.lib.espeak_ng_SetRandSeed(seed)
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng: unknown voice {voice!r}")
        for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
            self.lib.espeak_SetParameter(param, value, 0)
        data = text.encode("utf-8")
        self._chunks = []
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak-ng: synthesis of {text!r} failed with code {err}")
        if not self._chunks:
            raise RuntimeError(f"espeak-ng: no audio for {text!r}")
        return np.concatenate(self._chunks)


@contextmanager
def espeak_session() -> Iterator[Espeak]:
    """Initialise libespeak-ng (bundled by espeakng-loader) and terminate it afterwards."""
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if sr <= 0:
        raise RuntimeError(f"espeak-ng: initialisation failed (code {sr}) with data {espeakng_loader.get_data_path()}")
    try:
        yield Espeak(lib, sr)
    finally:
        lib.espeak_Terminate()


def write_wav_int16(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write int16 mono samples [T] as a plain 16-bit PCM WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(samples.astype("<i2").tobytes())


def demo_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct Mandarin sentences (subject, time, activity, ending), drawn with ``seed``."""
    import itertools
    import random

    combos = list(itertools.product(_SUBJECTS, _TIMES, _ACTIVITIES, _ENDINGS))
    if not 0 < n <= len(combos):
        raise ValueError(f"demo_sentences: n must be in 1..{len(combos)}, got {n}")
    picked = random.Random(seed).sample(combos, n)
    return [f"{s}{t}{a}{e}" for s, t, a, e in picked]


def corpus_plan(n_sentences: int, speakers: int, n_english: int,
                sentences: Sequence[str] | None = None) -> list[tuple[str, str, str, int]]:
    """(speaker, lang, text, style index) for every utterance, in file order.

    Without ``sentences`` every speaker reads ``n_sentences`` of the fixed test sentences; with
    them each sentence is read once, by speaker ``i % speakers`` (so no text is shared).
    """
    plan = []
    if sentences is not None:
        for s in range(speakers):
            plan += [(f"spk{s}", "zh", text, s) for text in sentences[s::speakers]]
        return plan
    for s in range(speakers):
        name = f"spk{s}"
        for i in range(n_sentences):  # each speaker starts at a different sentence
            plan.append((name, "zh", ZH_SENTENCES[(i + 5 * s) % len(ZH_SENTENCES)], s))
        if s < 2:  # the first two speakers also speak some English
            for i in range(n_english):
                plan.append((name, "en", EN_SENTENCES[(i + s) % len(EN_SENTENCES)], s))
    return plan


def _synthesize_speaker(jobs: list[tuple[str, str, int, int, int]]) -> tuple[int, list[np.ndarray]]:
    """Run in a fresh process: (sample rate, int16 samples [T] per (text, voice, pitch, rate, range) job)."""
    with espeak_session() as tts:
        return tts.sample_rate, [tts.synth(*job, seed=i) for i, job in enumerate(jobs)]


def make_corpus(
    root: Path, n_sentences: int = 20, speakers: int = 4, form: str = "tree", n_english: int = 2,
    sentences: Sequence[str] | None = None,
) -> CorpusInfo:
    """Synthesize ``speakers`` × ``n_sentences`` Mandarin utterances (plus ``n_english`` English
    ones for each of the first two speakers) under ``root`` in the given ``form``; or, with
    ``sentences``, each of them once, shared out over the speakers (``n_sentences`` and
    ``n_english`` unused).

    libespeak-ng keeps state across utterances that its API cannot reset (output depends
    on what was spoken before in the process), so each speaker is synthesized in a fresh
    process: the same arguments always give byte-identical files.
    """
    if form not in ("tree", "list", "both"):
        raise ValueError(f"form must be 'tree', 'list' or 'both', got {form!r}")
    if speakers < 1 or n_sentences < 1:
        raise ValueError(f"need at least one speaker and one sentence, got {speakers=} {n_sentences=}")
    root = Path(root)
    plan = corpus_plan(n_sentences, speakers, n_english, sentences)
    jobs: dict[str, list[tuple[str, str, int, int, int]]] = {}
    for speaker, lang, text, style_index in plan:
        variant, pitch, rate, pitch_range = SPEAKER_STYLES[style_index % len(SPEAKER_STYLES)]
        pitch = min(100, pitch + 7 * (style_index // len(SPEAKER_STYLES)))
        voice = ("cmn" if lang == "zh" else "en") + variant
        jobs.setdefault(speaker, []).append((text, voice, pitch, rate, pitch_range))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(2, len(jobs)), mp_context=ctx, max_tasks_per_child=1) as pool:
        results = dict(zip(jobs, pool.map(_synthesize_speaker, jobs.values())))
    sample_rate = next(iter(results.values()))[0]
    audio = {speaker: iter(samples) for speaker, (_, samples) in results.items()}

    items: list[CorpusItem] = []
    counters: dict[tuple[str, str], int] = {}
    for speaker, lang, text, _ in plan:
        samples = next(audio[speaker])
        n = counters.get((speaker, lang), 0)
        counters[(speaker, lang)] = n + 1
        stem = f"{n:03d}" if lang == "zh" else f"{lang}{n:03d}"
        wav = root / lang / speaker / f"{stem}.wav"
        write_wav_int16(wav, samples, sample_rate)
        lab = None
        if form in ("tree", "both"):
            lab = wav.with_suffix(".lab")
            lab.write_text(text + "\n", encoding="utf-8")
        items.append(CorpusItem(wav, lab, speaker, lang, text, len(samples) / sample_rate))
    list_path = None
    if form in ("list", "both"):
        list_path = root / "data.list"
        lines = [f"{it.wav.relative_to(root).as_posix()}|{it.speaker}|{it.lang}|{it.text}" for it in items]
        list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return CorpusInfo(root, form, sample_rate, items, list_path)


@dataclass(frozen=True)
class BrokenItems:
    """What ``add_broken_items`` wrote: expected outcomes by utterance id."""

    good: dict[str, str]  # id -> transcript of items that must be accepted (converted formats)
    resample_rejects: dict[str, str]  # id -> reason category resample.py must report
    g2p_rejects: dict[str, str]  # id -> reason category gen_phonemes.py must report
    misplaced: list[Path]  # audio files outside the <lang>/<speaker>/ layout (reported without id)


def add_broken_items(corpus: CorpusInfo, speaker: str = "odd") -> BrokenItems:
    """Add deliberately broken (and awkward but valid) items to a tree-form corpus.

    Broken: zero-byte file, truncated header, header without samples, 0.05 s clip, all-zero
    audio, missing / empty / non-UTF-8 ``.lab``, an unknown language folder, a misplaced
    file, and a transcript with an emoji (accepted by resample, rejected by the frontend).
    Valid but unusual: stereo 48 kHz 16-bit and 8-bit unsigned 22.05 kHz.
    """
    if corpus.form not in ("tree", "both"):
        raise ValueError("add_broken_items needs a tree-form corpus")
    base = next(it for it in corpus.items if it.lang == "zh")
    speech, sr = sf.read(base.wav, dtype="float32")  # [T]
    wav_bytes = base.wav.read_bytes()
    folder = corpus.root / "zh" / speaker
    folder.mkdir(parents=True, exist_ok=True)

    def put(name: str, text: str | bytes | None, lang_folder: Path = folder) -> Path:
        lang_folder.mkdir(parents=True, exist_ok=True)
        if isinstance(text, str):
            (lang_folder / f"{name}.lab").write_text(text, encoding="utf-8")
        elif isinstance(text, bytes):
            (lang_folder / f"{name}.lab").write_bytes(text)
        return lang_folder / f"{name}.wav"

    put("zero", base.text).write_bytes(b"")
    put("trunc", base.text).write_bytes(wav_bytes[:20])
    put("headeronly", base.text).write_bytes(wav_bytes[:44])
    sf.write(put("short", base.text), speech[: int(0.05 * sr)], sr, subtype="PCM_16")
    sf.write(put("silent", base.text), np.zeros(sr, np.float32), sr, subtype="PCM_16")
    put("nolab", None).write_bytes(wav_bytes)
    put("emptylab", " \n").write_bytes(wav_bytes)
    put("gbklab", base.text.encode("gbk")).write_bytes(wav_bytes)
    put("french", "Bonjour.", corpus.root / "fr" / speaker).write_bytes(wav_bytes)
    (corpus.root / "zh" / "stray.wav").write_bytes(wav_bytes)
    put("emoji", "你好😀").write_bytes(wav_bytes)

    speech48 = soxr.resample(speech, sr, 48000)  # the 48 kHz stereo item is the same speech
    sf.write(put("stereo48k", base.text), np.stack([speech48, 0.5 * speech48], axis=1), 48000, subtype="PCM_16")
    sf.write(put("u8_22k", base.text), speech, sr, subtype="PCM_U8")

    sid = speaker
    return BrokenItems(
        good={f"{sid}_stereo48k": base.text, f"{sid}_u8_22k": base.text, f"{sid}_emoji": "你好😀"},
        resample_rejects={
            f"{sid}_zero": "zero-byte file",
            f"{sid}_trunc": "truncated or corrupt header",
            f"{sid}_headeronly": "empty",
            f"{sid}_short": "too short",
            f"{sid}_silent": "silent",
            f"{sid}_nolab": "missing .lab",
            f"{sid}_emptylab": "empty transcript",
            f"{sid}_gbklab": "non-UTF-8 transcript",
            f"{sid}_french": "unknown language",
        },
        g2p_rejects={f"{sid}_emoji": "text"},
        misplaced=[corpus.root / "zh" / "stray.wav"],
    )
