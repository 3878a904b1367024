"""kill -9 of every ingest, extraction and list stage, repeated: what a killed run leaves is never partial
and never mixes two runs, and the next run finishes the job with the outputs of an uninterrupted run.

A small corpus of tones (so the data stages do real work for a second or two) goes once through the
whole chain in this process: the reference outputs. Then each stage runs again as a subprocess from a
*previous* state (an earlier run on part of the data, or lists made with another seed) and is killed
with SIGKILL twice: once at a seeded random moment after its progress bar counts a first item (after
start for the list stages, which have no bar), once as soon as a temp file of its output appears (of
its first table, or of a per-item file). After every kill:

- every table (manifest, phonemes, semantic, lists) holds either the previous bytes or the reference
  bytes, never something else;
- the training list and the validation list are never from two runs (the validation list may be
  missing: the trainers refuse that with a clear message);
- every per-item file under its final name is complete (wavs equal the reference, feature files load
  with the right shape).

Then the stage runs to the end (in this process): its tables equal the reference, files finished by a
killed run are not redone, and no temp file of a killed writer is left.
Stages here: resample, gen_phonemes, gen_filelist_s2, extract_bert_s1, gen_filelist_s1. The training
stages, extract_ssl_s2 (killed midway) and extract_vq_s1 (killed at two random moments and inside its
table write) are in tests/test_reliability_kill.py.
"""

from __future__ import annotations

import importlib
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile as sf
import torch

from common.checkpoint import Checkpoint, save_checkpoint
from common.config import S2Config, load_config, to_dict
from common.fileio import TMP_MARK
from common.manifest import read_phonemes, write_phonemes
from common.tensor_file import load_fp16
from tests.corpus import ZH_SENTENCES
from tests.pipeline import TINY_S1, TINY_S2, write_config
from tests.test_bad_inputs_ingest import put_wav, tone
from tests.test_reliability_kill import Proc
from tests.tiny_bert import make_tiny_bert
from tests.tiny_hubert import make_tiny_hubert
from text.symbols import SYMBOLS_MD5

SEED = 1313
N_ITEMS = 12
BERT_DIM = 32
BAR = r"\| *[1-9]\d*/\d+"  # a tqdm bar has counted a first finished item


def run_main(script: str, *args: object) -> None:
    module = importlib.import_module(script)
    module.main(module.build_parser().parse_args([str(a) for a in args]))


def fake_s2_checkpoint(folder: Path) -> Path:
    """An S2 checkpoint of random weights whose codebook counts as initialised (extract_vq_s1.py refuses
    an untrained one): deterministic tokens without training."""
    from s2.model import build_model

    cfg = load_config(TINY_S2, S2Config)
    torch.manual_seed(0)
    generator, _ = build_model(cfg)
    state = generator.state_dict()
    for key, value in state.items():
        if key.endswith("inited"):
            value.fill_(1.0)
    ckpt = Checkpoint(stage="s2", step=1, epoch=0, config=to_dict(cfg), symbols_md5=SYMBOLS_MD5,
                      models={"generator": state})
    return save_checkpoint(folder, ckpt)


@dataclass(frozen=True)
class Chain:
    work: Path
    data_list: Path
    ref: Path  # the reference dump: every stage run once, uninterrupted
    hubert: Path
    s2_ckpt: Path
    s1_config: Path


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    torch.set_num_threads(1)  # as in the subprocesses: same features and tokens
    work = tmp_path_factory.mktemp("kill_ingest")
    lines = []
    for i in range(N_ITEMS):
        wav = put_wav(work / "data" / f"u{i:03d}.wav", tone(1.5, sr=44100, hz=150 + 7 * i), sr=44100)
        lines.append(f"{wav.name}|spk{i % 3}|zh|{ZH_SENTENCES[i % len(ZH_SENTENCES)]}")
    data_list = work / "data" / "data.list"
    data_list.write_text("\n".join(lines) + "\n", encoding="utf-8")
    hubert = make_tiny_hubert(work / "hubert", hidden_size=64)
    bert = make_tiny_bert(work / "bert", hidden_size=BERT_DIM)
    s1_config = write_config(work / "s1.json", base=TINY_S1, model={"bert_dim": BERT_DIM},
                             data={"bert_model": str(bert)})
    s2_ckpt = fake_s2_checkpoint(work / "s2")
    ref = work / "ref"
    for script, *args in stage_commands(Chain(work, data_list, ref, hubert, s2_ckpt, s1_config), ref).values():
        run_main(script, *args)
    return Chain(work, data_list, ref, hubert, s2_ckpt, s1_config)


def stage_commands(c: Chain, dump: Path) -> dict[str, list[object]]:
    """The command line of every stage (script first) on ``dump``, in pipeline order."""
    return {
        "resample": ["resample", "--list", c.data_list, "--dump", dump, "--workers", "1"],
        "gen_phonemes": ["gen_phonemes", "--dump", dump, "--workers", "1"],
        "extract_ssl_s2": ["extract_ssl_s2", "--dump", dump, "--config", TINY_S2, "--ssl-model", c.hubert,
                           "--device", "cpu"],
        "gen_filelist_s2": ["gen_filelist_s2", "--dump", dump, "--config", TINY_S2],
        "extract_vq_s1": ["extract_vq_s1", "--dump", dump, "--s2-ckpt", c.s2_ckpt, "--device", "cpu",
                          "--num-workers", "0", "--batch-size", "2"],
        "extract_bert_s1": ["extract_bert_s1", "--dump", dump, "--config", c.s1_config, "--device", "cpu"],
        "gen_filelist_s1": ["gen_filelist_s1", "--dump", dump, "--config", c.s1_config],
    }


@dataclass(frozen=True)
class StageCase:
    tables: tuple[str, ...]  # whole-file outputs: previous or reference bytes after a kill
    folder: str = ""  # per-item outputs
    pair: tuple[str, str] | None = None  # (train list, validation list)
    started: str | None = BAR  # output showing the stage has started its work


CASES = {
    "resample": StageCase(("manifest.tsv",), folder="wav32k"),
    "gen_phonemes": StageCase(("phonemes.tsv",)),
    "gen_filelist_s2": StageCase(("s2_train.list", "s2_val.list"), pair=("s2_train.list", "s2_val.list"),
                                 started=None),
    "extract_bert_s1": StageCase((), folder="bert"),
    "gen_filelist_s1": StageCase(("s1_train.tsv", "s1_val.tsv"), pair=("s1_train.tsv", "s1_val.tsv"), started=None),
}


def copy_inputs(ref: Path, dump: Path, names: tuple[str, ...]) -> None:
    """Copy tables; symlink folders (stages only read them)."""
    dump.mkdir(parents=True)
    for name in names:
        src = ref / name
        if src.is_dir():
            os.symlink(src, dump / name)
        else:
            shutil.copy2(src, dump / name)


def previous_state(stage: str, c: Chain, dump: Path) -> None:
    """The inputs of ``stage`` and the outputs of an earlier, different run of it."""
    ref = c.ref
    if stage == "resample":
        part = c.data_list.with_name("part.list")  # beside the wavs: the same relative paths
        part.write_text("".join(c.data_list.read_text(encoding="utf-8").splitlines(True)[::2]), encoding="utf-8")
        run_main("resample", "--list", part, "--dump", dump, "--workers", "1")
    elif stage == "gen_phonemes":
        copy_inputs(ref, dump, ("manifest.tsv",))
        write_phonemes(dump / "phonemes.tsv", read_phonemes(ref / "phonemes.tsv")[::2])
    elif stage == "gen_filelist_s2":
        copy_inputs(ref, dump, ("manifest.tsv", "phonemes.tsv", "wav32k", "ssl"))
        run_main("gen_filelist_s2", "--dump", dump, "--config", TINY_S2, "--seed", "7")
    elif stage == "extract_bert_s1":
        copy_inputs(ref, dump, ("manifest.tsv", "phonemes.tsv"))
    elif stage == "gen_filelist_s1":
        copy_inputs(ref, dump, ("phonemes.tsv", "semantic.tsv", "semantic.json", "bert"))
        run_main("gen_filelist_s1", "--dump", dump, "--config", c.s1_config, "--seed", "7")


def snapshot(dump: Path, names: tuple[str, ...]) -> dict[str, bytes | None]:
    return {n: (dump / n).read_bytes() if (dump / n).is_file() else None for n in names}


def temps_under(dump: Path) -> list[str]:
    return sorted(str(p.relative_to(dump)) for p in dump.rglob(f"*{TMP_MARK}*"))


def check_folder(stage: str, c: Chain, dump: Path, folder: str) -> dict[str, int]:
    """Every file under its final name is complete; returns name -> mtime_ns."""
    out = {}
    for path in sorted((dump / folder).glob("*")):
        if path.name.startswith("."):
            continue
        if folder == "wav32k":
            assert path.read_bytes() == (c.ref / folder / path.name).read_bytes(), f"{path}: not the reference wav"
            assert sf.info(path).frames > 0
        else:
            feats = load_fp16(path)
            assert feats.shape[0] == BERT_DIM, (path, feats.shape)
            assert torch.isfinite(feats).all()
        out[path.name] = path.stat().st_mtime_ns
    return out


def kill_at(proc: Proc, moment: str, dump: Path, case: StageCase, rng: random.Random) -> None:
    if moment == "random":
        if case.started:
            proc.wait_for(case.started)
            time.sleep(rng.uniform(0.0, 0.6))
        else:
            time.sleep(rng.uniform(0.5, 3.0))
    else:  # as soon as the temp file of the first table (or of a per-item file) appears
        target = case.tables[0] if case.tables else ""
        where = dump if case.tables else dump / case.folder
        deadline = time.monotonic() + 60
        while proc.proc.poll() is None and time.monotonic() < deadline:
            if where.is_dir() and any(p.name.startswith(f".{target}") and TMP_MARK in p.name
                                      for p in where.iterdir()):
                break
            time.sleep(0.0005)
    proc.kill()


@pytest.mark.parametrize("stage", list(CASES))
def test_stage_killed_twice_then_finished(stage: str, chain: Chain, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    case = CASES[stage]
    dump = tmp_path / "dump"
    previous_state(stage, chain, dump)
    before = snapshot(dump, case.tables)
    reference = snapshot(chain.ref, case.tables)
    assert before != reference or not case.tables, "the previous state must differ from the reference"
    script, *args = stage_commands(chain, dump)[stage]
    rng = random.Random(f"{SEED}-{stage}")
    for i, moment in enumerate(("random", "write")):
        proc = Proc(f"{script}.py", args, tmp_path / f"kill{i}.log")
        kill_at(proc, moment, dump, case, rng)
        now = snapshot(dump, case.tables)
        for name in case.tables:
            allowed = (before[name], reference[name]) + ((None,) if case.pair and name == case.pair[1] else ())
            assert now[name] in allowed, f"kill {i} ({moment}): {name} is neither the previous nor the new one"
        if case.pair and now[case.pair[1]] is not None:
            train, val = case.pair
            assert (now[train], now[val]) in ((before[train], before[val]), (reference[train], reference[val])), \
                f"kill {i} ({moment}): the two lists come from two runs"
        if case.folder:
            check_folder(stage, chain, dump, case.folder)
    finished = check_folder(stage, chain, dump, case.folder) if case.folder else {}
    leftover = [p for p in dump.glob(f".*{TMP_MARK}*")]
    capsys.readouterr()
    run_main(script, *args)
    if leftover:  # the stage says what it cleaned up
        assert f"removed {len(leftover)} temp file(s) of killed runs" in capsys.readouterr().out
    assert snapshot(dump, case.tables) == reference
    if case.folder:
        after = check_folder(stage, chain, dump, case.folder)
        assert sorted(after) == sorted(p.name for p in (chain.ref / case.folder).glob("[!.]*"))
        assert {k: after[k] for k in finished} == finished, "files finished by a killed run were redone"
    assert not temps_under(dump), "temp files of killed writers were left behind"


class Killed(BaseException):
    """Stands for SIGKILL landing between two writes (nothing after it runs)."""


@pytest.mark.parametrize("script", ["gen_filelist_s2", "gen_filelist_s1"])
def test_killed_between_the_two_lists(script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The moment a random kill rarely hits, hit on purpose: the run dies right after writing its training
    list. The validation list of the earlier run (another seed) must not be left beside it."""
    from tests.test_bad_inputs_ingest import s2_dump_by_hand
    from tests.test_gen_filelist_s1 import make_dump as make_s1_dump

    dump = tmp_path / "dump"
    if script == "gen_filelist_s2":
        s2_dump_by_hand(dump, n=10)
        args, names, writer = ["--dump", dump, "--config", TINY_S2], ("s2_train.list", "s2_val.list"), "write_s2_list"
    else:
        make_s1_dump(dump, unknown=False)
        args, names, writer = ["--dump", dump, "--config", TINY_S1], ("s1_train.tsv", "s1_val.tsv"), "write_s1_list"
    run_main(script, *args, "--seed", "7")
    old_val = (dump / names[1]).read_bytes()
    module = importlib.import_module(script)
    real = getattr(module, writer)
    written = []

    def write_then_die(path: Path, items: object) -> None:
        if written:
            raise Killed
        real(path, items)
        written.append(Path(path).name)

    monkeypatch.setattr(module, writer, write_then_die)
    with pytest.raises(Killed):
        run_main(script, *args, "--seed", "8")
    monkeypatch.undo()
    assert written == [names[0]]
    assert not (dump / names[1]).exists() or (dump / names[1]).read_bytes() != old_val, \
        "the validation list of the earlier run is left beside the new training list"
    run_main(script, *args, "--seed", "8")  # the next run writes both
    train, val = (list_ids(dump / n) for n in names)
    assert train and val and not set(train) & set(val)


def list_ids(path: Path) -> list[str]:
    """Ids of an S2 list (``id|...``) or an S1 list (header, then ``id<TAB>...``)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".tsv":
        return [line.split("\t")[0] for line in lines[1:]]
    return [line.split("|")[0] for line in lines]
