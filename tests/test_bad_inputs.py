"""Bad input at every stage: one table of malformed inputs per pipeline script and the expected outcome.

Each row damages a copy of the shared session dump (tests/small_dump.py views), runs the script's
``main`` in this process with the command line a user would type, and expects either

- ``Error(reason)``: the script exits (SystemExit) with a message naming the bad file and matching
  ``reason`` — any other exception escaping ``main`` is a raw traceback, i.e. a bug, and fails the row;
- ``Skip(stage, reason)``: the item is left out, reported in ``dump/rejected.tsv`` with that reason,
  and the stage still succeeds on the good items;
- ``Counted(text)``: the item is left out and counted by reason on stdout (gen_filelist_s2.py).

Rows already covered elsewhere are listed in comments, not repeated:
- resample.py: zero-byte, truncated-header, header-only, too-short and silent wavs, missing / empty /
  non-UTF-8 ``.lab``, unknown language folder, misplaced file, emoji transcript
  (tests/test_resample.py::test_broken_corpus_through_resample_and_gen_phonemes); list lines with
  unknown language, a missing wav, a wrong field count (::test_list_problems_are_reported_by_line);
  nothing accepted, missing dataset folder, dump inside the dataset (::test_nothing_accepted_is_an_error)
- extract_ssl_s2.py: corrupt and missing wavs (tests/test_ssl.py::test_script_end_to_end), a NaN-producing
  model and an ssl_dim that does not match the model (::test_script_rejects_nan_and_wrong_dim),
  truncated / wrong-length feature files redone (::test_script_redoes_invalid_outputs_and_overwrite)
- gen_filelist_s2.py: missing phonemes / ssl / wav, stale ssl, too short / long
  (tests/test_gen_filelist_s2.py::test_lists_are_reproducible_and_complete), empty dump
  (::test_empty_dump_is_an_error), malformed list lines (::test_bad_list_lines_are_errors)
- extract_vq_s1.py: feature files of the wrong dimension, with NaN, too short, unreadable; a checkpoint
  other than the one behind semantic.tsv; an untrained codebook
  (tests/test_extract_vq_s1.py::test_rejections_resume_and_checkpoint_mismatch)
- gen_filelist_s1.py: unknown phone, too few tokens, too long, too many phones, phone rate; another
  symbol table in semantic.json; model.codebook_size mismatch (tests/test_gen_filelist_s1.py); missing
  BERT features (tests/test_bert_pipeline.py::test_lists_leave_out_items_without_bert_features)
- extract_bert_s1.py: BERT model missing, its width differs from model.bert_dim
  (tests/test_bert.py::test_stage_setup_errors_are_one_line); phonemes.tsv out of date, texts that do not
  line up with the tokenizer (::test_stage_checks_phones_and_rejects_misaligned_texts)
- train_s1.py / train_s2.py: --resume without a checkpoint, a fresh run into a used run directory,
  codebook size of the config vs the tokens, BERT features missing, a frozen untrained codebook (tests/test_train_s1.py,
  tests/test_train_s2.py); checkpoint files: wrong stage, other symbol table, truncated, shape
  mismatch (tests/test_checkpoint.py::test_readable_errors)
- inference inputs (empty / punctuation-only text, references, missing checkpoints): the inference tests.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from common.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from common.config import S1Config, load_config, to_dict
from common.manifest import (
    MANIFEST_NAME,
    PHONEMES_NAME,
    REJECTED_NAME,
    S2_TRAIN_LIST,
    PhonemeEntry,
    read_manifest,
    read_phonemes,
    read_s2_list,
    write_manifest,
    write_phonemes,
)
from common.training import parse_training_args, training_arg_parser
from s1.data import S1_TRAIN_LIST, S1_VAL_LIST, SEMANTIC_JSON, SEMANTIC_TSV
from s1.model import build_model as build_s1
from tests.pipeline import TINY_S1, TINY_S2, S1Dump, S2Dump, write_config
from tests.small_dump import small_s2_dump, view_dump, view_s1_dump
from text.symbols import SYMBOLS_MD5

# ----------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Error:
    reason: str  # regex; the message must also contain the bad file's path


@dataclass(frozen=True)
class Skip:
    stage: str  # stage column of rejected.tsv
    reason: str  # the reason must start with this


@dataclass(frozen=True)
class Counted:
    text: str  # printed on stdout or stderr
    names_file: bool = True  # the printed line names the bad file (gen_filelist_s2.py prints counts only)


@dataclass
class Setup:
    argv: list[object]
    bad: Path  # the file (or folder) the message must name
    uid: str = ""  # the item a Skip is about
    dump: Path | None = None  # where rejected.tsv is


class Ctx:
    """What a row's setup may use: a fresh folder and the shared fixtures (built only when asked for)."""

    def __init__(self, request: pytest.FixtureRequest, tmp: Path):
        self.request, self.tmp = request, tmp

    @property
    def s2_dump(self) -> S2Dump:
        return self.request.getfixturevalue("s2_dump")

    @property
    def s1_dump(self) -> S1Dump:
        return self.request.getfixturevalue("s1_dump")

    @property
    def s2_ckpt(self) -> Path:
        return sorted(self.request.getfixturevalue("s2_run").glob("ckpt_*.pt"))[-1]

    @property
    def s1_ckpt(self) -> Path:
        return self.request.getfixturevalue("s1_checkpoint")

    def s2_view(self, copy_dirs: tuple[str, ...] = ("ssl", "wav32k"), n_train: int = 2) -> Path:
        return small_s2_dump(self.s2_dump, self.tmp / "dump", n_train=n_train, copy_dirs=copy_dirs).dump

    def s1_view(self) -> Path:
        return view_s1_dump(self.s1_dump, self.tmp / "dump").dump


@pytest.fixture(scope="module")
def s1_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny S1 checkpoint (random weights) to hand to the S2 stages as "a checkpoint from the other stage"."""
    cfg = load_config(TINY_S1, S1Config)
    torch.manual_seed(0)
    model = build_s1(cfg)
    ckpt = Checkpoint(stage="s1", step=3, epoch=0, config=to_dict(cfg), symbols_md5=SYMBOLS_MD5,
                      models={"model": model.state_dict()})
    return save_checkpoint(tmp_path_factory.mktemp("s1_ckpt"), ckpt)


# ----------------------------------------------------------------------------- damage helpers


def replace(path: Path, data: bytes) -> Path:
    """Replace ``path`` (often a symlink into the shared dump) by a file holding ``data``."""
    path.unlink(missing_ok=True)
    path.write_bytes(data)
    return path


def save_tensor(path: Path, x: torch.Tensor) -> Path:
    path.unlink(missing_ok=True)
    torch.save(x, path)
    return path


def first_train_id(dump: Path) -> str:
    return read_s2_list(dump / S2_TRAIN_LIST)[0].id


def ssl_of(dump: Path, uid: str) -> torch.Tensor:
    return torch.load(dump / "ssl" / f"{uid}.pt", weights_only=True)


def wav_16k(path: Path) -> Path:
    """Replace a 32 kHz wav by the same length of audio at 16 kHz."""
    audio, sr = sf.read(path, dtype="float32")
    path.unlink()
    sf.write(path, audio[::2], sr // 2, subtype="PCM_16")
    return path


def other_symbols(src: Path, dst: Path) -> Path:
    """A copy of checkpoint ``src`` that claims another phoneme symbol table."""
    ckpt = load_checkpoint(src)
    ckpt.symbols_md5 = "0" * 32
    dst.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(dst, ckpt)


def truncated(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    return dst


def edit_json(path: Path, **changes: object) -> Path:
    data = json.loads(path.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        node = data
        *parents, key = dotted.split("__")
        for p in parents:
            node = node[p]
        node[key] = value
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def edit_table_row(path: Path, row: int, column: int, value: str) -> Path:
    """Set one cell of a tab-separated table (row 1 = the first data row)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    cells = lines[row].split("\t")
    cells[column] = value
    lines[row] = "\t".join(cells)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def set_transcript(dump: Path, text: str) -> str:
    utts = read_manifest(dump / MANIFEST_NAME)[:3]
    utts[0] = dataclasses.replace(utts[0], text=text)
    write_manifest(dump / MANIFEST_NAME, utts)
    return utts[0].id


def set_phones(dump: Path, uid: str, phones: list[str]) -> None:
    entries = [PhonemeEntry(e.id, phones, [1] * len(phones), e.norm_text) if e.id == uid else e
               for e in read_phonemes(dump / PHONEMES_NAME)]
    write_phonemes(dump / PHONEMES_NAME, entries)


# ----------------------------------------------------------------------------- command lines


def resample_args(c: Ctx, lst: Path) -> list[object]:
    return ["--list", lst, "--dump", c.tmp / "out", "--workers", "1"]


def ssl_args(c: Ctx, dump: Path, config: Path = TINY_S2, model: Path | None = None) -> list[object]:
    return ["--dump", dump, "--config", config, "--ssl-model", model or c.s2_dump.hubert, "--device", "cpu"]


def ssl_dump(c: Ctx, n: int = 2) -> Path:
    """A dump with ``n`` manifest items, their wavs (replaceable), and no features yet."""
    dump = c.s2_view()
    shutil.rmtree(dump / "ssl")
    write_manifest(dump / MANIFEST_NAME, read_manifest(dump / MANIFEST_NAME)[:n])
    return dump


def s2_config(c: Ctx, **sections: dict) -> Path:
    return write_config(c.tmp / "s2.json", train={"batch_size": 2, "eval_interval": 100} | sections.pop("train", {}),
                        **sections)


def train_s2_args(c: Ctx, dump: Path, *extra: object, config: Path | None = None) -> list[object]:
    return ["-m", c.tmp / "run", "--dump", dump, "--device", "cpu", "--max-steps", 2,
            "-c", config or s2_config(c), *extra]


def train_s1_args(c: Ctx, dump: Path, *extra: object, config: Path | None = None) -> list[object]:
    config = config or write_config(c.tmp / "s1.json", base=TINY_S1, train={"eval_interval": 100})
    return ["-m", c.tmp / "run", "--dump", dump, "--device", "cpu", "--max-steps", 2, "-c", config, *extra]


def vq_args(dump: Path, ckpt: Path) -> list[object]:
    return ["--dump", dump, "--s2-ckpt", ckpt, "--device", "cpu", "--num-workers", "0"]


def filelist_s1_args(dump: Path, config: Path = TINY_S1) -> list[object]:
    return ["--dump", dump, "--config", config]


# ----------------------------------------------------------------------------- the table


def _resample_no_list(c: Ctx) -> Setup:
    return Setup(resample_args(c, c.tmp / "absent.list"), c.tmp / "absent.list")


def _resample_empty_list(c: Ctx) -> Setup:
    (c.tmp / "empty.list").write_text("\n", encoding="utf-8")
    return Setup(resample_args(c, c.tmp / "empty.list"), c.tmp / "out" / REJECTED_NAME)


def _resample_corrupt_previous_manifest(c: Ctx) -> Setup:
    wav = next((c.s2_dump.dump / "wav32k").iterdir())
    (c.tmp / "one.list").write_text(f"{wav}|spk|zh|你好。\n", encoding="utf-8")
    (c.tmp / "out").mkdir()
    (c.tmp / "out" / MANIFEST_NAME).write_bytes(b"\xff\xfe garbage\n")
    return Setup(resample_args(c, c.tmp / "one.list"), c.tmp / "out" / MANIFEST_NAME)


def _phonemes_no_manifest(c: Ctx) -> Setup:
    (c.tmp / "dump").mkdir()
    return Setup(["--dump", c.tmp / "dump", "--workers", "1"], c.tmp / "dump" / MANIFEST_NAME)


def _phonemes_manifest_wrong_header(c: Ctx) -> Setup:
    dump = view_dump(c.s2_dump.dump, c.tmp / "dump")
    edit_table_row(dump / MANIFEST_NAME, 0, 0, "utt")
    return Setup(["--dump", dump, "--workers", "1"], dump / MANIFEST_NAME)


def _phonemes_manifest_bad_lang(c: Ctx) -> Setup:
    dump = view_dump(c.s2_dump.dump, c.tmp / "dump")
    edit_table_row(dump / MANIFEST_NAME, 1, 2, "xx")
    return Setup(["--dump", dump, "--workers", "1"], dump / MANIFEST_NAME)


def _phonemes_manifest_empty(c: Ctx) -> Setup:
    dump = view_dump(c.s2_dump.dump, c.tmp / "dump")
    write_manifest(dump / MANIFEST_NAME, [])
    return Setup(["--dump", dump, "--workers", "1"], dump / MANIFEST_NAME)


def _phonemes_previous_table_truncated(c: Ctx) -> Setup:
    dump = view_dump(c.s2_dump.dump, c.tmp / "dump")
    text = (dump / PHONEMES_NAME).read_text(encoding="utf-8")
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    cut = len(text.rstrip("\n")) - len(last) + last.index("\t") + 3  # inside the last row's phones
    (dump / PHONEMES_NAME).write_text(text[:cut], encoding="utf-8")
    return Setup(["--dump", dump, "--workers", "1"], dump / PHONEMES_NAME)


def _phonemes_text(text: str) -> Callable[[Ctx], Setup]:
    def setup(c: Ctx) -> Setup:
        dump = view_dump(c.s2_dump.dump, c.tmp / "dump")
        (dump / PHONEMES_NAME).unlink()
        uid = set_transcript(dump, text)
        return Setup(["--dump", dump, "--workers", "1"], dump, uid=uid, dump=dump)
    return setup


def _ssl_unknown_config_key(c: Ctx) -> Setup:
    config = edit_json(write_config(c.tmp / "s2.json"), data__bogus_key=1)
    return Setup(ssl_args(c, ssl_dump(c), config), config)


def _ssl_no_config(c: Ctx) -> Setup:
    return Setup(ssl_args(c, ssl_dump(c), c.tmp / "absent.json"), c.tmp / "absent.json")


def _ssl_no_model(c: Ctx) -> Setup:
    return Setup(ssl_args(c, ssl_dump(c), model=c.tmp / "no-hubert"), c.tmp / "no-hubert")


def _ssl_no_manifest(c: Ctx) -> Setup:
    dump = ssl_dump(c)
    (dump / MANIFEST_NAME).unlink()
    return Setup(ssl_args(c, dump), dump / MANIFEST_NAME)


def _ssl_wav_of_another_rate(c: Ctx) -> Setup:
    dump = ssl_dump(c)
    uid = read_manifest(dump / MANIFEST_NAME)[0].id
    wav_16k(dump / "wav32k" / f"{uid}.wav")
    return Setup(ssl_args(c, dump), dump / "wav32k" / f"{uid}.wav", uid=uid, dump=dump)


def _filelist_s2_unknown_config_key(c: Ctx) -> Setup:
    config = edit_json(write_config(c.tmp / "s2.json"), model__n_layer=3)
    return Setup(["--dump", c.s2_view(), "--config", config], config)


def _filelist_s2_corrupt_wav(c: Ctx) -> Setup:
    dump = c.s2_view()
    uid = read_manifest(dump / MANIFEST_NAME)[0].id
    wav = replace(dump / "wav32k" / f"{uid}.wav", b"RIFF\x24\x00\x00\x00WAVEfmt \x10garbage")
    return Setup(["--dump", dump, "--config", TINY_S2], wav)


def _filelist_s2_corrupt_phonemes(c: Ctx) -> Setup:
    dump = c.s2_view()
    edit_table_row(dump / PHONEMES_NAME, 2, 2, "1 x 2")
    return Setup(["--dump", dump, "--config", TINY_S2], dump / PHONEMES_NAME)


def _train_s2_unknown_config_key(c: Ctx) -> Setup:
    config = edit_json(s2_config(c), train__learning_rte=1e-3)
    return Setup(train_s2_args(c, c.s2_view(), config=config), config)


def _train_s2_list(content: str | None) -> Callable[[Ctx], Setup]:
    def setup(c: Ctx) -> Setup:
        dump = c.s2_view()
        path = dump / S2_TRAIN_LIST
        path.unlink()
        if content is not None:
            path.write_text(content, encoding="utf-8")
        return Setup(train_s2_args(c, dump), path)
    return setup


def _train_s2_ssl(damage: Callable[[Path, torch.Tensor], object]) -> Callable[[Ctx], Setup]:
    """Damage the features of the first training item: ``damage(path, original features)``."""
    def setup(c: Ctx) -> Setup:
        dump = c.s2_view()
        uid = first_train_id(dump)
        path = dump / "ssl" / f"{uid}.pt"
        damage(path, ssl_of(dump, uid))
        return Setup(train_s2_args(c, dump), path)
    return setup


def _with_nan(path: Path, x: torch.Tensor) -> None:
    x = x.clone()
    x[3, 5] = float("nan")
    save_tensor(path, x)


def _train_s2_wav(damage: Callable[[Path], object]) -> Callable[[Ctx], Setup]:
    def setup(c: Ctx) -> Setup:
        dump = c.s2_view()
        path = dump / "wav32k" / f"{first_train_id(dump)}.wav"
        damage(path)
        return Setup(train_s2_args(c, dump), path)
    return setup


def _train_s2_unknown_phone(c: Ctx) -> Setup:
    dump = c.s2_view()
    set_phones(dump, first_train_id(dump), ["n", "QQ", "a1"])
    return Setup(train_s2_args(c, dump), dump / PHONEMES_NAME)


def _train_s2_no_phonemes_row(c: Ctx) -> Setup:
    dump = c.s2_view()
    uid = first_train_id(dump)
    write_phonemes(dump / PHONEMES_NAME, [e for e in read_phonemes(dump / PHONEMES_NAME) if e.id != uid])
    return Setup(train_s2_args(c, dump), dump / S2_TRAIN_LIST)


def _train_s2_ssl_dim_of_another_config(c: Ctx) -> Setup:
    """The dump was made for ssl_dim 64; this config (another SSL model) expects 768."""
    dump = c.s2_view()
    config = s2_config(c, data={"ssl_dim": 768})
    return Setup(train_s2_args(c, dump, config=config), dump / "ssl")  # whichever item is read first


def _train_s2_init_from_s1(c: Ctx) -> Setup:
    return Setup(train_s2_args(c, c.s2_view(), "--init", c.s1_ckpt), c.s1_ckpt)


def _train_s2_resume_s1_run(c: Ctx) -> Setup:
    run = c.tmp / "run"
    run.mkdir()
    shutil.copy(c.s1_ckpt, run / c.s1_ckpt.name)
    return Setup(train_s2_args(c, c.s2_view(), "--resume"), run / c.s1_ckpt.name)


def _train_s2_init_truncated(c: Ctx) -> Setup:
    bad = truncated(c.s2_ckpt, c.tmp / "bad" / "ckpt_00000030.pt")
    return Setup(train_s2_args(c, c.s2_view(), "--init", bad), bad)


def _train_s2_init_other_symbols(c: Ctx) -> Setup:
    bad = other_symbols(c.s2_ckpt, c.tmp / "other")
    return Setup(train_s2_args(c, c.s2_view(), "--init", bad), bad)


def _train_s2_resume_other_model(c: Ctx) -> Setup:
    run = c.tmp / "run"
    run.mkdir()
    shutil.copy(c.s2_ckpt, run / c.s2_ckpt.name)
    config = s2_config(c, model={"hidden_channels": 48})
    return Setup(train_s2_args(c, c.s2_view(), "--resume", config=config), run / c.s2_ckpt.name)


def _vq_ckpt(make: Callable[[Ctx], Path]) -> Callable[[Ctx], Setup]:
    """A fresh extraction (no semantic.tsv yet) with the checkpoint ``make`` gives."""
    def setup(c: Ctx) -> Setup:
        dump = c.s1_view()
        (dump / SEMANTIC_TSV).unlink()
        (dump / SEMANTIC_JSON).unlink()
        ckpt = make(c)
        return Setup(vq_args(dump, ckpt), ckpt)
    return setup


def _vq_no_ssl(c: Ctx) -> Setup:
    dump = c.s1_view()
    (dump / "ssl").unlink()
    return Setup(vq_args(dump, c.s2_ckpt), dump / "ssl")


def _filelist_s1(damage: Callable[[Path], Path]) -> Callable[[Ctx], Setup]:
    def setup(c: Ctx) -> Setup:
        dump = c.s1_view()
        return Setup(filelist_s1_args(dump), damage(dump))
    return setup


def _unlink(path: Path) -> Path:
    path.unlink()
    return path


def _filelist_s1_unknown_config_key(c: Ctx) -> Setup:
    config = edit_json(write_config(c.tmp / "s1.json", base=TINY_S1), inference__top_kk=3)
    return Setup(filelist_s1_args(c.s1_view(), config), config)


def _train_s1(damage: Callable[[Path], Path]) -> Callable[[Ctx], Setup]:
    def setup(c: Ctx) -> Setup:
        dump = c.s1_view()
        return Setup(train_s1_args(c, dump), damage(dump))
    return setup


def _header_only(path: Path) -> Path:
    path.write_text(path.read_text(encoding="utf-8").split("\n", 1)[0] + "\n", encoding="utf-8")
    return path


def _train_s1_unknown_config_key(c: Ctx) -> Setup:
    config = edit_json(write_config(c.tmp / "s1.json", base=TINY_S1), model__n_layers=2)
    return Setup(train_s1_args(c, c.s1_view(), config=config), config)


def _train_s1_batch_budget_too_small(c: Ctx) -> Setup:
    dump = c.s1_view()
    config = write_config(c.tmp / "s1.json", base=TINY_S1, train={"max_batch_tokens": 40})
    return Setup(train_s1_args(c, dump, config=config), dump / S1_TRAIN_LIST)


def _train_s1_init_from_s2(c: Ctx) -> Setup:
    return Setup(train_s1_args(c, c.s1_view(), "--init", c.s2_ckpt), c.s2_ckpt)


CASES: list[tuple[str, str, Callable[[Ctx], Setup], Error | Skip | Counted]] = [
    # resample.py
    ("list file missing", "resample", _resample_no_list, Error("list file not found")),
    ("empty list", "resample", _resample_empty_list, Error("no usable utterance")),
    ("corrupt manifest of a previous run", "resample", _resample_corrupt_previous_manifest,
     Counted("ignoring the previous manifest")),
    # gen_phonemes.py
    ("manifest missing", "gen_phonemes", _phonemes_no_manifest, Error("file not found")),
    ("manifest with a wrong header", "gen_phonemes", _phonemes_manifest_wrong_header, Error(":1: expected header")),
    ("manifest row with an unknown language", "gen_phonemes", _phonemes_manifest_bad_lang, Error(":2: bad lang 'xx'")),
    ("empty manifest", "gen_phonemes", _phonemes_manifest_empty, Error("no utterances")),
    ("truncated phonemes.tsv of a previous run", "gen_phonemes", _phonemes_previous_table_truncated,
     Error(r":\d+: expected 4 tab-separated columns")),
    ("transcript of only punctuation", "gen_phonemes", _phonemes_text("？！。，"),
     Skip("gen_phonemes", "text: no pronounceable text")),
    ("transcript of unknown characters", "gen_phonemes", _phonemes_text("@#$%"),
     Skip("gen_phonemes", "text: no Chinese reading for '$'")),
    # extract_ssl_s2.py
    ("config with an unknown key", "extract_ssl_s2", _ssl_unknown_config_key, Error("unknown key.*'bogus_key'")),
    ("config missing", "extract_ssl_s2", _ssl_no_config, Error("config file not found")),
    ("SSL model folder missing", "extract_ssl_s2", _ssl_no_model, Error("SSL model directory not found")),
    ("manifest missing", "extract_ssl_s2", _ssl_no_manifest, Error("file not found")),
    ("wav of another sample rate in wav32k/", "extract_ssl_s2", _ssl_wav_of_another_rate,
     Skip("ssl", "wrong sample rate: 16000 Hz")),
    # gen_filelist_s2.py
    ("config with an unknown key", "gen_filelist_s2", _filelist_s2_unknown_config_key,
     Error("unknown key.*'n_layer'")),
    ("corrupt wav", "gen_filelist_s2", _filelist_s2_corrupt_wav, Counted("unreadable wav: 1", names_file=False)),
    ("corrupt phonemes.tsv", "gen_filelist_s2", _filelist_s2_corrupt_phonemes, Error(":3: bad word2ph")),
    # train_s2.py
    ("config with an unknown key", "train_s2", _train_s2_unknown_config_key, Error("unknown key.*'learning_rte'")),
    ("training list missing", "train_s2", _train_s2_list(None), Error("list file not found")),
    ("empty training list", "train_s2", _train_s2_list(""), Error("the list is empty")),
    ("malformed list line", "train_s2", _train_s2_list("a|b|c\n"), Error(":1: expected id|speaker|lang|n_frames")),
    ("features of a listed item missing", "train_s2", _train_s2_ssl(lambda p, x: p.unlink()),
     Error("features file not found")),
    ("truncated features", "train_s2", _train_s2_ssl(lambda p, x: replace(p, p.read_bytes()[:200])),
     Error("cannot read features")),
    ("features of the wrong dimension", "train_s2", _train_s2_ssl(lambda p, x: save_tensor(p, x[:32])),
     Error("dimension 32, but data.ssl_dim is 64")),
    ("features of the wrong length", "train_s2",
     _train_s2_ssl(lambda p, x: save_tensor(p, torch.cat([x, x[:, :5]], 1))), Error("SSL frames but")),
    ("NaN in the features", "train_s2", _train_s2_ssl(_with_nan), Error("non-finite")),
    ("wav of a listed item missing", "train_s2", _train_s2_wav(lambda p: p.unlink()), Error("cannot read")),
    ("wav of another sample rate", "train_s2", _train_s2_wav(wav_16k), Error("expected mono 32000 Hz, got 16000")),
    ("phone not in the symbol table", "train_s2", _train_s2_unknown_phone, Error("'QQ'.*not in the v1 symbol table")),
    ("listed item without phonemes", "train_s2", _train_s2_no_phonemes_row, Error("have no row in")),
    ("config for another SSL model (ssl_dim)", "train_s2", _train_s2_ssl_dim_of_another_config,
     Error("dimension 64, but data.ssl_dim is 768")),
    ("--init from an S1 checkpoint", "train_s2", _train_s2_init_from_s1, Error("S1 checkpoint, but an S2")),
    ("--resume in a run holding an S1 checkpoint", "train_s2", _train_s2_resume_s1_run,
     Error("S1 checkpoint, but an S2")),
    ("--init from a truncated checkpoint", "train_s2", _train_s2_init_truncated, Error("cannot read checkpoint")),
    ("--init from another symbol table", "train_s2", _train_s2_init_other_symbols,
     Error("different phoneme symbol table")),
    ("--resume with another model config", "train_s2", _train_s2_resume_other_model,
     Error("model config differs")),
    # extract_vq_s1.py
    ("S1 checkpoint instead of S2", "extract_vq_s1", _vq_ckpt(lambda c: c.s1_ckpt), Error("S1 checkpoint, but an S2")),
    ("checkpoint missing", "extract_vq_s1", _vq_ckpt(lambda c: c.tmp / "absent.pt"), Error("checkpoint not found")),
    ("truncated checkpoint", "extract_vq_s1", _vq_ckpt(lambda c: truncated(c.s2_ckpt, c.tmp / "t" / "ckpt.pt")),
     Error("cannot read checkpoint")),
    ("checkpoint of another symbol table", "extract_vq_s1",
     _vq_ckpt(lambda c: other_symbols(c.s2_ckpt, c.tmp / "other")), Error("different phoneme symbol table")),
    ("no features", "extract_vq_s1", _vq_no_ssl, Error("no SSL features")),
    # gen_filelist_s1.py
    ("semantic.json missing", "gen_filelist_s1", _filelist_s1(lambda d: _unlink(d / SEMANTIC_JSON)),
     Error("semantic metadata not found")),
    ("semantic.tsv missing", "gen_filelist_s1", _filelist_s1(lambda d: _unlink(d / SEMANTIC_TSV)),
     Error("file not found")),
    ("token outside the codebook", "gen_filelist_s1",
     _filelist_s1(lambda d: edit_table_row(d / SEMANTIC_TSV, 1, 1, "3 64 5")), Error("outside the codebook")),
    ("non-integer token", "gen_filelist_s1", _filelist_s1(lambda d: edit_table_row(d / SEMANTIC_TSV, 2, 1, "3 x")),
     Error(":3: tokens must be space-separated integers")),
    ("empty semantic.tsv", "gen_filelist_s1", _filelist_s1(lambda d: _header_only(d / SEMANTIC_TSV) and d),
     Error("only 0 item")),
    ("config with an unknown key", "gen_filelist_s1", _filelist_s1_unknown_config_key, Error("unknown key.*'top_kk'")),
    # train_s1.py
    ("config with an unknown key", "train_s1", _train_s1_unknown_config_key, Error("unknown key.*'n_layers'")),
    ("token outside the codebook", "train_s1", _train_s1(lambda d: edit_table_row(d / S1_TRAIN_LIST, 1, 2, "1 64")),
     Error(":2: .*token 64 outside the codebook")),
    ("phone not in the symbol table", "train_s1", _train_s1(lambda d: edit_table_row(d / S1_TRAIN_LIST, 1, 1, "n QQ")),
     Error(":2: .*unknown phone 'QQ'")),
    ("malformed list line", "train_s1", _train_s1(lambda d: edit_table_row(d / S1_TRAIN_LIST, 1, 1, "n\tQQ")),
     Error(":2: expected 3 tab-separated columns")),
    ("empty training list", "train_s1", _train_s1(lambda d: _header_only(d / S1_TRAIN_LIST)), Error("no items")),
    ("validation list missing", "train_s1", _train_s1(lambda d: _unlink(d / S1_VAL_LIST)), Error("file not found")),
    ("semantic.json missing", "train_s1", _train_s1(lambda d: _unlink(d / SEMANTIC_JSON)),
     Error("semantic metadata not found")),
    ("tokens of another symbol table", "train_s1",
     _train_s1(lambda d: edit_json(d / SEMANTIC_JSON, symbols_md5="0" * 32) and d / S1_TRAIN_LIST),
     Error("different phone symbol table")),
    ("--init from an S2 checkpoint", "train_s1", _train_s1_init_from_s2, Error("S2 checkpoint, but an S1")),
    ("items longer than the batch budget", "train_s1", _train_s1_batch_budget_too_small,
     Error("longer than max_batch_tokens=40")),
]


def run_main(script: str, argv: list[str]) -> tuple[object, str]:
    """Run the script's main; (exit code or message, '') — any exception but SystemExit escapes (a bug)."""
    module = importlib.import_module(script)
    if script.startswith("train_"):
        args = parse_training_args(training_arg_parser("", script.split("_")[1], ""), argv)
    else:
        args = module.build_parser().parse_args(argv)
    try:
        module.main(args)
    except SystemExit as stop:
        return stop.code, ""
    return 0, ""


def rejected(dump: Path, stage: str) -> dict[str, str]:
    lines = (dump / REJECTED_NAME).read_text(encoding="utf-8").splitlines()[1:]
    return {cells[1]: cells[3] for cells in (line.split("\t") for line in lines) if cells[0] == stage}


@pytest.mark.parametrize(("what", "script", "setup", "expect"), CASES,
                         ids=[f"{script}: {what}" for what, script, _, _ in CASES])
def test_bad_input(what: str, script: str, setup: Callable[[Ctx], Setup], expect: Error | Skip | Counted,
                   request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.set_num_threads(1)
    s = setup(Ctx(request, tmp_path))
    code, _ = run_main(script, [str(a) for a in s.argv])
    out = capsys.readouterr()
    if isinstance(expect, Error):
        assert isinstance(code, str), f"expected an error exit, got {code!r}\n{out.out[-2000:]}"
        assert str(s.bad) in code, f"the message does not name {s.bad}: {code}"
        assert re.search(expect.reason, code), f"expected /{expect.reason}/ in: {code}"
        assert re.match(r"^[\w.]+: ", code), f"the message does not start with the stage: {code}"
    elif isinstance(expect, Skip):
        assert code in (0, None), f"the stage failed instead of skipping the item: {code}"
        reason = rejected(s.dump, expect.stage).get(s.uid)
        assert reason is not None and reason.startswith(expect.reason), f"{s.uid}: {reason!r}"
    else:
        assert code in (0, None), f"the stage failed instead of counting the item: {code}"
        assert expect.text in out.out + out.err
        assert not expect.names_file or str(s.bad) in out.out + out.err


def test_a_bad_input_through_the_real_command_line(s2_dump: S2Dump, tmp_path: Path) -> None:
    """The same contract from a shell: one line on stderr naming the file, exit status 1, no traceback."""
    import subprocess
    import sys

    from tests.pipeline import REPO, script_env

    dump = small_s2_dump(s2_dump, tmp_path / "dump", n_train=2, copy_dirs=("ssl",)).dump
    uid = first_train_id(dump)
    bad = dump / "ssl" / f"{uid}.pt"
    _with_nan(bad, ssl_of(dump, uid))
    config = write_config(tmp_path / "s2.json", train={"batch_size": 2})
    res = subprocess.run([sys.executable, str(REPO / "train_s2.py"), "-c", str(config), "-m", str(tmp_path / "run"),
                          "--dump", str(dump), "--device", "cpu", "--max-steps", "2"], cwd=REPO, env=script_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("train_s2") and str(bad) in res.stderr


def test_nan_features_would_poison_the_codebook() -> None:
    """Why NaN features are refused up front rather than skipped as a non-finite step: one NaN frame
    in a training forward turns the EMA codebook into NaN for good (the skip comes too late)."""
    from modules.quantize import VectorQuantizer

    vq = VectorQuantizer(dim=4, codebook_size=8, kmeans_iters=2).train()
    x = torch.randn(2, 4, 10)
    vq(x)
    x[0, 1, 3] = float("nan")
    vq(x)
    assert not torch.isfinite(vq.embed).all()
    assert np.isnan(vq(torch.randn(1, 4, 6)).commit_loss.item())


def test_a_refused_resume_leaves_the_run_config_alone(s2_dump: S2Dump, s2_run: Path, tmp_path: Path) -> None:
    """``--resume -c <config of another model>`` is refused, and the run's own config.json is not replaced
    by the refused one (a later plain ``--resume`` must still find the run's real config)."""
    run_dir = tmp_path / "run"
    shutil.copytree(s2_run, run_dir, ignore=shutil.ignore_patterns("tb", "train.log"))
    before = (run_dir / "config.json").read_bytes()
    other = write_config(tmp_path / "other.json", model={"hidden_channels": 48})
    code, _ = run_main("train_s2", ["-m", str(run_dir), "--dump", str(s2_dump.dump), "--device", "cpu",
                                    "--max-steps", "1", "--resume", "-c", str(other)])
    assert isinstance(code, str) and "model" in code and "differ" in code, code
    assert (run_dir / "config.json").read_bytes() == before
