"""Bad and unusual inputs of the ingest and list stages (resample.py, gen_phonemes.py, gen_filelist_s2.py,
gen_filelist_s1.py): nothing silent, one bad item never aborts a stage, unopenable files found at list time.

First one test per class of issue 13 (run as a user runs the scripts: subprocesses on a small tree corpus
of tones), then a table of bad inputs like tests/test_bad_inputs.py, each with its expected outcome:

- ``Error(reason)``: the script exits with a one-line message matching ``reason`` (and naming ``bad``);
- ``Skip(stage, reason)``: the item is a row of ``dump/rejected.tsv`` whose reason starts with ``reason``,
  and the stage still succeeds on the other items;
- ``Noted(reason)``: the item is kept, changed on the way in, and a row of ``dump/adjusted.tsv`` says how.

Everything is built by hand from short tones (no shared fixture), so the file runs in seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from common.audio import load_audio, save_wav
from common.manifest import (
    PhonemeEntry,
    Utterance,
    read_manifest,
    read_phonemes,
    read_s2_list,
    write_manifest,
    write_phonemes,
)
from modules.ssl import save_features
from tests.pipeline import REPO, TINY_S1, TINY_S2, script_env, write_config
from tests.test_gen_filelist_s1 import make_dump as make_s1_dump

SR = 16000
HOP = 640  # configs/tiny/s2.json
SSL_DIM = 64


def tone(seconds: float = 1.0, amp: float = 0.3, sr: int = SR, hz: float = 220.0) -> np.ndarray:
    """A modulated sine [T] (speech-like level, far above the silence threshold)."""
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * hz * t) * (0.8 + 0.2 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def put_wav(path: Path, audio: np.ndarray | None = None, sr: int = SR, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone() if audio is None else audio, sr, subtype=subtype)
    return path


def put_item(root: Path, speaker: str, name: str, text: str | None, lang: str = "zh", **wav: object) -> Path:
    """``<root>/<lang>/<speaker>/<name>.wav`` (a tone) with ``<name>.lab`` holding ``text`` (None: no .lab)."""
    wav_path = put_wav(root / lang / speaker / f"{name}.wav", **wav)
    if text is not None:
        wav_path.with_suffix(".lab").write_text(text, encoding="utf-8")
    return wav_path


def run(script: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO, env=script_env(),
                          capture_output=True, text=True, timeout=120)


def report_rows(dump: Path, stage: str, name: str = "rejected.tsv") -> list[tuple[str, str, str]]:
    """(id, source, reason) of one stage's rows in ``dump/<name>``; [] when the file is not there."""
    path = dump / name
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "stage\tid\tsource\treason"
    return [tuple(cells[1:]) for cells in (line.split("\t") for line in lines[1:]) if cells[0] == stage]


def reason_for(dump: Path, stage: str, key: str, name: str = "rejected.tsv") -> str | None:
    """The reason of the row whose id or source contains ``key`` (None if there is none)."""
    found = [r for uid, src, r in report_rows(dump, stage, name) if key in uid or key in src]
    assert len(found) <= 1, f"several rows match {key!r}: {found}"
    return found[0] if found else None


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- one corpus, every class


@dataclass(frozen=True)
class Odd:
    root: Path
    dump: Path
    out: subprocess.CompletedProcess
    sources: dict[str, str]  # checksums of the source files before the run


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Odd:
    """A tree corpus with one item of each ingest class, through resample.py once."""
    root = tmp_path_factory.mktemp("odd") / "data"
    spk = root / "zh" / "spk"
    put_item(root, "spk", "good1", "你好。")
    put_item(root, "spk", "good2", "今天天气很好。", audio=tone(hz=180))
    put_item(root, "spk", "loud", "你好。", audio=tone(amp=2.0), subtype="FLOAT")  # peaks at 2.0
    put_item(root, "spk", "entity", "今天&#x5929;气很好&#12290;", audio=tone(hz=260))
    put_item(root, "spk", "amp", "Rock &amp; roll &lt;3.", lang="en", audio=tone(hz=300))
    put_item(root, "spk", "multi", "第一句。\n第二句。\n", audio=tone(hz=320))
    (spk / "dangling.wav").symlink_to(spk / "gone.wav")
    (spk / "dangling.lab").write_text("你好。", encoding="utf-8")
    (spk / "loop.wav").symlink_to(spk / "loop.wav")
    (spk / "loop.lab").write_text("你好。", encoding="utf-8")
    put_item(root, "a|b", "pipe", "你好。", audio=tone(hz=340))
    (spk / "alias.wav").symlink_to(spk / "good1.wav")  # the same recording through a symlink
    (spk / "alias.lab").write_text("你好。", encoding="utf-8")
    os.link(spk / "good2.wav", spk / "hard.wav")  # ... and through a hard link
    (spk / "hard.lab").write_text("今天天气很好。", encoding="utf-8")
    sources = {str(p): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}
    dump = root.parent / "dump"
    out = run("resample.py", "--root", root, "--dump", dump, "--workers", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    return Odd(root, dump, out, sources)


def manifest_ids(dump: Path) -> set[str]:
    return {u.id for u in read_manifest(dump / "manifest.tsv")}


def test_float_overs_are_scaled_down_and_reported(odd: Odd) -> None:
    """Class 1: a float wav peaking at 2.0 is scaled to fit (its shape kept, not clipped), and a row says so."""
    assert "spk_loud" in manifest_ids(odd.dump)
    src = load_audio(odd.root / "zh" / "spk" / "loud.wav", 32000, clip=False)
    out = load_audio(odd.dump / "wav32k" / "spk_loud.wav", 32000, clip=False)
    gain = float(np.max(np.abs(out))) / float(np.max(np.abs(src)))
    assert 0.49 < gain < 0.51
    np.testing.assert_allclose(out, src * gain, atol=2e-4)  # clipping would differ by up to 1.0
    reason = reason_for(odd.dump, "resample", "spk_loud", "adjusted.tsv")
    assert reason is not None and reason.startswith("scaled down: peak 2.0"), reason
    assert "scaled down: 1" in odd.out.stdout
    assert {str(p): sha(p) for p in sorted(odd.root.rglob("*")) if p.is_file()} == odd.sources  # sources untouched


def test_markup_entities_are_decoded_and_reported(odd: Odd) -> None:
    """Class 2: entities become the characters they stand for, so the phonemes are those of the real text."""
    texts = {u.id: u.text for u in read_manifest(odd.dump / "manifest.tsv")}
    assert texts["spk_entity"] == "今天天气很好。" and texts["spk_amp"] == "Rock & roll <3."
    for uid in ("spk_entity", "spk_amp"):
        reason = reason_for(odd.dump, "resample", uid, "adjusted.tsv")
        assert reason is not None and reason.startswith("markup entities decoded"), reason
    assert "markup entities decoded: 2" in odd.out.stdout
    res = run("gen_phonemes.py", "--dump", odd.dump, "--workers", "1")
    assert res.returncode == 0, res.stderr
    phones = {e.id: e.phones for e in read_phonemes(odd.dump / "phonemes.tsv")}
    assert phones["spk_entity"] == phones["spk_good2"]  # both read 今天天气很好。
    assert "x" not in phones["spk_entity"] and "EH1" not in phones["spk_entity"]


def test_only_complete_entities_are_decoded() -> None:
    from common.ingest import decode_entities

    kept = "AT&T &amp &copy 5 & 6 &unknown; "  # no semicolon, or no such entity: left as written
    assert decode_entities(kept + "&#x4E00;&#12290;&lt;") == kept + "一。<"


def test_a_rerun_keeps_the_notes(odd: Odd, tmp_path: Path) -> None:
    """A rerun reuses the converted wavs without reading their sources; the scaled-down note stays."""
    before = (odd.dump / "adjusted.tsv").read_bytes()
    res = run("resample.py", "--root", odd.root, "--dump", odd.dump, "--workers", "1")
    assert res.returncode == 0 and "processed 0," in res.stdout, res.stdout + res.stderr
    assert (odd.dump / "adjusted.tsv").read_bytes() == before


def test_multi_line_transcript_is_rejected(odd: Odd) -> None:
    """Class 3: a .lab of two sentences is not silently joined into one."""
    assert "spk_multi" not in manifest_ids(odd.dump)
    reason = reason_for(odd.dump, "resample", "spk_multi")
    assert reason is not None and reason.startswith("multi-line transcript: multi.lab has 2 lines"), reason


def test_symlinked_wavs_get_rows(odd: Odd) -> None:
    """Class 4: dangling and looping symlinks are rows with their reason, not silent drops."""
    assert (reason_for(odd.dump, "resample", "spk_dangling") or "").startswith("broken symlink")
    assert (reason_for(odd.dump, "resample", "spk_loop") or "").startswith("symlink loop")
    assert "broken symlink: 1" in odd.out.stdout and "symlink loop: 1" in odd.out.stdout


def test_speaker_name_with_a_bar_is_rejected_at_ingest(odd: Odd) -> None:
    """Class 5, first stage: a speaker name that cannot go into a list is a rejected row of resample."""
    assert not any("pipe" in uid for uid in manifest_ids(odd.dump))
    reason = reason_for(odd.dump, "resample", "pipe.wav")
    assert reason is not None and reason.startswith("bad speaker name: 'a|b'"), reason


def test_one_recording_through_two_paths_is_one_utterance(odd: Odd, tmp_path: Path) -> None:
    """Class 6: a symlink and a hard link to a recording are duplicates (the real file is kept); so are two
    spellings of one path in a list."""
    ids = manifest_ids(odd.dump)
    assert {"spk_good1", "spk_good2"} <= ids and not ids & {"spk_alias", "spk_hard"}
    for alias in ("alias", "hard"):
        reason = reason_for(odd.dump, "resample", f"{alias}.wav")
        assert reason is not None and reason.startswith("duplicate recording:"), reason
    wav = put_wav(tmp_path / "wavs" / "a.wav")
    lst = tmp_path / "data.list"
    lst.write_text("wavs/a.wav|spk|zh|你好。\n./wavs/a.wav|spk|zh|你好。\nwavs/../wavs/a.wav|spk|zh|你好。\n",
                   encoding="utf-8")
    res = run("resample.py", "--list", lst, "--dump", tmp_path / "dump", "--workers", "1")
    assert res.returncode == 0, res.stderr
    utts = read_manifest(tmp_path / "dump" / "manifest.tsv")
    assert [(u.id, u.source) for u in utts] == [("spk_a", str(wav))]
    rows = report_rows(tmp_path / "dump", "resample")
    assert sorted(src for _, src, _ in rows) == [f"{lst}:2", f"{lst}:3"]
    assert all(r.startswith(f"duplicate recording: same file as {lst}:1") for _, _, r in rows)


# ----------------------------------------------------------------------------- list stages


def s2_dump_by_hand(dump: Path, n: int = 6, speakers: dict[str, str] | None = None) -> list[str]:
    """A dump ready for gen_filelist_s2.py: ``n`` one-second items with wav, phonemes and features."""
    uids = [f"spk_{i:03d}" for i in range(n)]
    speakers = speakers or {}
    utts, entries = [], []
    for i, uid in enumerate(uids):
        samples = 32000 + 640 * i
        save_wav(dump / "wav32k" / f"{uid}.wav", tone(samples / 32000, sr=32000), 32000)
        save_features(dump / "ssl" / f"{uid}.pt", torch.randn(SSL_DIM, samples // HOP))
        utts.append(Utterance(uid, speakers.get(uid, "spk"), "zh", "你好", samples / 32000, f"/src/{uid}.wav"))
        entries.append(PhonemeEntry(uid, ["n", "i2", "h", "ao3"], [2, 2], "你好"))
    write_manifest(dump / "manifest.tsv", utts)
    write_phonemes(dump / "phonemes.tsv", entries)
    return uids


def test_bad_name_never_aborts_the_s2_lists(tmp_path: Path) -> None:
    """Class 5, later stage: a manifest of an older resample with a speaker 'a|b' gives a reported skip; both
    lists are written and the stage succeeds."""
    dump = tmp_path / "dump"
    uids = s2_dump_by_hand(dump, speakers={"spk_002": "a|b"})
    res = run("gen_filelist_s2.py", "--dump", dump, "--config", TINY_S2)
    assert res.returncode == 0, res.stdout + res.stderr
    listed = {it.id for name in ("s2_train.list", "s2_val.list") for it in read_s2_list(dump / name)}
    assert listed == set(uids) - {"spk_002"}
    assert (reason_for(dump, "filelist_s2", "spk_002") or "").startswith("bad speaker name: 'a|b'")


def test_lists_check_that_referenced_files_open(tmp_path: Path) -> None:
    """Class 7: an unreadable feature file, features of the wrong length and a missing wav are found by
    gen_filelist_s2.py (skipped rows with reasons), not by the trainer after it has started."""
    dump = tmp_path / "dump"
    uids = s2_dump_by_hand(dump)
    (dump / "ssl" / f"{uids[0]}.pt").write_bytes(b"PK\x03\x04 not a tensor")
    save_features(dump / "ssl" / f"{uids[1]}.pt", torch.randn(SSL_DIM, 7))
    (dump / "wav32k" / f"{uids[2]}.wav").unlink()
    res = run("gen_filelist_s2.py", "--dump", dump, "--config", TINY_S2)
    assert res.returncode == 0, res.stdout + res.stderr
    listed = {it.id for name in ("s2_train.list", "s2_val.list") for it in read_s2_list(dump / name)}
    assert listed == set(uids[3:])
    expected = {uids[0]: "unreadable ssl", uids[1]: "ssl length mismatch", uids[2]: "missing wav"}
    for uid, category in expected.items():
        reason = reason_for(dump, "filelist_s2", uid)
        assert reason is not None and reason.startswith(category + ":"), (uid, reason)
        assert str(dump) in reason  # the row names the file
    assert "unreadable ssl: 1" in res.stdout and "ssl length mismatch: 1" in res.stdout


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Error:
    reason: str  # regex the one-line message must match


@dataclass(frozen=True)
class Skip:
    stage: str
    reason: str  # the rejected.tsv reason starts with this


@dataclass(frozen=True)
class Noted:
    reason: str  # the adjusted.tsv reason (stage resample) starts with this


@dataclass
class Setup:
    argv: list[object]
    dump: Path
    key: str = ""  # Skip/Noted: text in the row's id or source; Error: text the message must contain


def resample_tree(tmp: Path, make: Callable[[Path], str]) -> Setup:
    """A tree corpus of two good items plus what ``make(root)`` adds (it returns the row key)."""
    root = tmp / "data"
    put_item(root, "spk", "ok1", "你好。")
    put_item(root, "spk", "ok2", "你好。", audio=tone(hz=150))
    key = make(root)
    return Setup(["--root", root, "--dump", tmp / "dump", "--workers", "1"], tmp / "dump", key)


def resample_list(tmp: Path, lines: list[str], key: str) -> Setup:
    """A list file with a good line first, then ``lines`` (paths relative to the list's folder)."""
    put_wav(tmp / "wavs" / "ok.wav")
    lst = tmp / "data.list"
    lst.write_text("\n".join(["wavs/ok.wav|spk|zh|你好。", *lines]) + "\n", encoding="utf-8")
    return Setup(["--list", lst, "--dump", tmp / "dump", "--workers", "1"], tmp / "dump", key)


def _tree(make: Callable[[Path], str]) -> Callable[[Path], Setup]:
    return lambda tmp: resample_tree(tmp, make)


def _float_overs(root: Path) -> str:
    put_item(root, "spk", "hot", "你好。", audio=tone(amp=1.6), subtype="DOUBLE")
    return "spk_hot"


def _lab(name: str, text: str, lang: str = "zh") -> Callable[[Path], str]:
    def make(root: Path) -> str:
        put_item(root, "spk", name, text, lang=lang, audio=tone(hz=400))
        return f"spk_{name}"
    return make


def _dangling(root: Path) -> str:
    (root / "zh" / "spk" / "d.wav").symlink_to("/nonexistent/d.wav")
    (root / "zh" / "spk" / "d.lab").write_text("你好。", encoding="utf-8")
    return "spk_d"


def _loop(root: Path) -> str:
    spk = root / "zh" / "spk"
    (spk / "l1.wav").symlink_to(spk / "l2.wav")
    (spk / "l2.wav").symlink_to(spk / "l1.wav")
    for name in ("l1", "l2"):
        (spk / f"{name}.lab").write_text("你好。", encoding="utf-8")
    return "spk_l1"


def _speaker_folder(name: str) -> Callable[[Path], str]:
    def make(root: Path) -> str:
        put_item(root, name, "x", "你好。", audio=tone(hz=410))
        return "x.wav"
    return make


def _hard_link(root: Path) -> str:
    os.link(root / "zh" / "spk" / "ok2.wav", root / "zh" / "spk" / "ok3.wav")
    (root / "zh" / "spk" / "ok3.lab").write_text("你好。", encoding="utf-8")
    return "spk_ok3"


def _fifo(root: Path) -> str:
    os.mkfifo(root / "zh" / "spk" / "pipe.wav")
    (root / "zh" / "spk" / "pipe.lab").write_text("你好。", encoding="utf-8")
    return "spk_pipe"


def _folder_named_wav(root: Path) -> str:
    (root / "zh" / "spk" / "dir.wav").mkdir()
    (root / "zh" / "spk" / "dir.lab").write_text("你好。", encoding="utf-8")
    return "spk_dir"


def _newline_in_name(root: Path) -> str:
    put_item(root, "spk", "two\nlines", "你好。", audio=tone(hz=420))
    return "spk_two_lines"


def _symlink_outside(root: Path) -> str:
    """A symlink to a good recording outside the tree is a normal item (not a duplicate, not dropped)."""
    elsewhere = put_wav(root.parent / "elsewhere" / "far.wav", tone(hz=430))
    (root / "zh" / "spk" / "far.wav").symlink_to(elsewhere)
    (root / "zh" / "spk" / "far.lab").write_text("你好。", encoding="utf-8")
    return "spk_far"


def _list(lines: list[str], key: str, prepare: Callable[[Path], object] = lambda tmp: None) -> Callable[[Path], Setup]:
    def setup(tmp: Path) -> Setup:
        prepare(tmp)
        return resample_list(tmp, lines, key)
    return setup


def _resample_limits(tmp: Path) -> Setup:
    s = resample_list(tmp, [], "--min-seconds")
    return Setup([*s.argv, "--min-seconds", "5", "--max-seconds", "1"], s.dump, "--min-seconds")


def _dump_under_a_file(setup: Callable[[Path], Setup]) -> Callable[[Path], Setup]:
    """``setup``'s command line with ``--dump`` pointing below a regular file."""
    def wrapped(tmp: Path) -> Setup:
        s = setup(tmp)
        (tmp / "afile").write_text("not a folder\n", encoding="utf-8")
        argv = [tmp / "afile" / "dump" if a == s.dump else a for a in s.argv]
        return Setup(argv, s.dump, str(tmp / "afile"))
    return wrapped


# gen_phonemes.py


def phonemes_dump(tmp: Path, damage: Callable[[Path], str]) -> Setup:
    dump = tmp / "dump"
    write_manifest(dump / "manifest.tsv", [Utterance(f"spk_{i}", "spk", "zh", "你好。", 1.0, f"/s/{i}.wav")
                                           for i in range(3)])
    key = damage(dump)
    return Setup(["--dump", dump, "--workers", "1"], dump, key)


def _manifest_line(line: str) -> Callable[[Path], str]:
    def damage(dump: Path) -> str:
        with open(dump / "manifest.tsv", "a", encoding="utf-8") as f:
            f.write(line)
        return str(dump / "manifest.tsv")
    return damage


def _manifest_bytes(dump: Path) -> str:
    with open(dump / "manifest.tsv", "ab") as f:
        f.write("spk_9\tspk\tzh\t你好\t1.0\t/s/9.wav\n".encode("gbk"))
    return str(dump / "manifest.tsv")


def _previous_phonemes(dump: Path) -> str:
    (dump / "phonemes.tsv").write_text("id\tphones\tword2ph\tnorm_text\nspk_0\tn i2\t3\t你\n", encoding="utf-8")
    return str(dump / "phonemes.tsv")


def _phonemes_transcript(text: str) -> Callable[[Path], str]:
    def damage(dump: Path) -> str:
        utts = read_manifest(dump / "manifest.tsv")
        write_manifest(dump / "manifest.tsv", [dataclasses.replace(utts[0], text=text), *utts[1:]])
        return "spk_0"
    return damage


# gen_filelist_s2.py


def s2_lists(damage: Callable[[Path, list[str]], str], *extra: object) -> Callable[[Path], Setup]:
    def setup(tmp: Path) -> Setup:
        dump = tmp / "dump"
        uids = s2_dump_by_hand(dump)
        key = damage(dump, uids)
        return Setup(["--dump", dump, "--config", TINY_S2, *extra], dump, key)
    return setup


def _first(folder: str, suffix: str, make: Callable[[Path], object]) -> Callable[[Path, list[str]], str]:
    """Replace ``dump/<folder>/<first id><suffix>`` by what ``make(path)`` writes."""
    def damage(dump: Path, uids: list[str]) -> str:
        path = dump / folder / f"{uids[0]}{suffix}"
        path.unlink()
        make(path)
        return uids[0]
    return damage


def _ssl(make: Callable[[Path], object]) -> Callable[[Path, list[str]], str]:
    return _first("ssl", ".pt", make)


def _wav(make: Callable[[Path], object]) -> Callable[[Path, list[str]], str]:
    return _first("wav32k", ".wav", make)


def _speaker(name: str) -> Callable[[Path, list[str]], str]:
    def damage(dump: Path, uids: list[str]) -> str:
        utts = read_manifest(dump / "manifest.tsv")
        write_manifest(dump / "manifest.tsv", [dataclasses.replace(utts[0], speaker=name), *utts[1:]])
        return uids[0]
    return damage


# gen_filelist_s1.py


def s1_lists(damage: Callable[[Path], str], *extra: object, bert_dim: int = 0) -> Callable[[Path], Setup]:
    def setup(tmp: Path) -> Setup:
        dump = tmp / "dump"
        make_s1_dump(dump, unknown=False)
        config = TINY_S1 if not bert_dim else write_config(tmp / "s1.json", base=TINY_S1,
                                                            model={"bert_dim": bert_dim})
        if bert_dim:
            (dump / "bert").mkdir()
            for e in read_phonemes(dump / "phonemes.tsv"):
                torch.save(torch.zeros(bert_dim, len(e.phones), dtype=torch.float16), dump / "bert" / f"{e.id}.pt")
        key = damage(dump)
        return Setup(["--dump", dump, "--config", config, *extra], dump, key)
    return setup


def _append(name: str, line: str) -> Callable[[Path], str]:
    def damage(dump: Path) -> str:
        with open(dump / name, "a", encoding="utf-8") as f:
            f.write(line)
        return str(dump / name)
    return damage


def _replace(name: str, data: bytes) -> Callable[[Path], str]:
    def damage(dump: Path) -> str:
        (dump / name).write_bytes(data)
        return str(dump / name)
    return damage


def _bert_file(data: bytes) -> Callable[[Path], str]:
    def damage(dump: Path) -> str:
        (dump / "bert" / "good00.pt").write_bytes(data)
        return "good00"
    return damage


def _remove(name: str) -> Callable[[Path], str]:
    def damage(dump: Path) -> str:
        (dump / name).unlink()
        return str(dump / name)
    return damage


CASES: list[tuple[str, str, Callable[[Path], Setup], Error | Skip | Noted]] = [
    # resample.py: audio
    ("double-precision wav peaking at 1.6", "resample", _tree(_float_overs), Noted("scaled down: peak 1.6")),
    ("FIFO named like a wav", "resample", _tree(_fifo), Skip("resample", "not a regular file")),
    ("folder named like a wav", "resample", _tree(_folder_named_wav), Skip("resample", "not a regular file")),
    ("list line naming a folder", "resample",
     _list(["wavs|spk|zh|你好。"], "data.list:2"), Skip("resample", "not a regular file")),
    # resample.py: transcripts
    ("entity &amp; in a .lab", "resample", _tree(_lab("amp", "Tom &amp; Jerry.", "en")),
     Noted("markup entities decoded")),
    ("numeric entity &#x4F60; in a list line", "resample",
     _list(["wavs/x.wav|spk|zh|&#x4F60;好。"], "spk_x", lambda tmp: put_wav(tmp / "wavs" / "x.wav", tone(hz=500))),
     Noted("markup entities decoded")),
    ("three-line .lab", "resample", _tree(_lab("three", "一。\n二。\n三。")),
     Skip("resample", "multi-line transcript: three.lab has 3 lines")),
    ("CRLF two-line .lab", "resample", _tree(_lab("crlf", "一。\r\n二。\r\n")),
     Skip("resample", "multi-line transcript")),
    (".lab holding only entities of blanks", "resample", _tree(_lab("blank", "&#32;&nbsp;&#x20;")),
     Skip("resample", "empty transcript")),
    # resample.py: paths
    ("dangling symlink to an absolute path", "resample", _tree(_dangling), Skip("resample", "broken symlink")),
    ("two symlinks pointing at each other", "resample", _tree(_loop), Skip("resample", "symlink loop")),
    ("list line through a dangling symlink", "resample",
     _list(["wavs/gone.wav|spk|zh|你好。"], "data.list:2",
           lambda tmp: (tmp / "wavs").mkdir() or (tmp / "wavs" / "gone.wav").symlink_to(tmp / "nowhere.wav")),
     Skip("resample", "broken symlink")),
    ("hard link to another item", "resample", _tree(_hard_link), Skip("resample", "duplicate recording")),
    ("list line with the same wav spelled with ./", "resample", _list(["./wavs/ok.wav|spk|zh|你好。"], "data.list:2"),
     Skip("resample", "duplicate recording: same file as")),
    ("file name with a newline", "resample", _tree(_newline_in_name), Skip("resample", "bad file name")),
    ("symlink to a recording outside the tree", "resample", _tree(_symlink_outside), Noted("")),
    # resample.py: names
    ("speaker folder with a '|'", "resample", _tree(_speaker_folder("x|y")), Skip("resample", "bad speaker name")),
    ("speaker with a line separator (U+2028) in a list", "resample",
     _list(["wavs/ok.wav|spk\u2028b|zh|你好。"], "data.list:2"), Skip("resample", "bad speaker name")),
    ("speaker folder with a tab", "resample", _tree(_speaker_folder("x\ty")), Skip("resample", "bad speaker name")),
    ("--min-seconds above --max-seconds", "resample", _resample_limits, Error("need 0 <= --min-seconds")),
    ("--dump below a regular file", "resample", _dump_under_a_file(lambda tmp: resample_list(tmp, [], "")),
     Error("--dump .*is a file, not a directory")),
    # gen_phonemes.py
    ("manifest with a repeated id", "gen_phonemes",
     lambda tmp: phonemes_dump(tmp, _manifest_line("spk_1\tspk\tzh\t你好\t1.0\t/s/x.wav\n")),
     Error(r":5: duplicate id 'spk_1'")),
    ("manifest duration NaN", "gen_phonemes",
     lambda tmp: phonemes_dump(tmp, _manifest_line("spk_9\tspk\tzh\t你好\tnan\t/s/9.wav\n")),
     Error("bad duration 'nan'")),
    ("manifest row in GBK", "gen_phonemes", lambda tmp: phonemes_dump(tmp, _manifest_bytes),
     Error("not valid UTF-8")),
    ("previous phonemes.tsv whose word2ph does not add up", "gen_phonemes",
     lambda tmp: phonemes_dump(tmp, _previous_phonemes), Error(":2: word2ph sums to 3 but there are 2 phones")),
    ("transcript of only '@' signs", "gen_phonemes", lambda tmp: phonemes_dump(tmp, _phonemes_transcript("@@")),
     Skip("gen_phonemes", "text:")),
    ("--dump below a regular file", "gen_phonemes", _dump_under_a_file(lambda tmp: phonemes_dump(tmp, lambda d: "")),
     Error("--dump .*is a file, not a directory")),
    # gen_filelist_s2.py
    ("features file that is not a tensor", "gen_filelist_s2",
     s2_lists(_ssl(lambda p: p.write_bytes(b"garbage"))), Skip("filelist_s2", "unreadable ssl")),
    ("features of another dimension", "gen_filelist_s2",
     s2_lists(_ssl(lambda p: save_features(p, torch.randn(32, 50)))), Skip("filelist_s2", "ssl dimension")),
    ("features shorter than the wav", "gen_filelist_s2",
     s2_lists(_ssl(lambda p: save_features(p, torch.randn(SSL_DIM, 30)))), Skip("filelist_s2", "ssl length mismatch")),
    ("features in fp32", "gen_filelist_s2",
     s2_lists(_ssl(lambda p: torch.save(torch.randn(SSL_DIM, 50), p))), Skip("filelist_s2", "unreadable ssl")),
    ("wav of another rate in wav32k/", "gen_filelist_s2",
     s2_lists(_wav(lambda p: save_wav(p, tone(sr=16000), 16000))), Skip("filelist_s2", "wrong wav format")),
    ("stereo wav in wav32k/", "gen_filelist_s2",
     s2_lists(_wav(lambda p: sf.write(p, np.stack([tone(sr=32000)] * 2, 1), 32000))),
     Skip("filelist_s2", "wrong wav format")),
    ("wav32k file that is a dangling symlink", "gen_filelist_s2",
     s2_lists(_wav(lambda p: p.symlink_to(p.parent / "gone.wav"))), Skip("filelist_s2", "missing wav")),
    ("speaker with '|' in the manifest", "gen_filelist_s2", s2_lists(_speaker("a|b")),
     Skip("filelist_s2", "bad speaker name")),
    ("speaker with U+2028 in the manifest", "gen_filelist_s2", s2_lists(_speaker("a\u2028b")),
     Skip("filelist_s2", "bad speaker name")),
    ("negative --val-items", "gen_filelist_s2", s2_lists(lambda d, u: "--val-items", "--val-items", "-1"),
     Error("--val-items must be >= 0")),
    # gen_filelist_s1.py
    ("semantic.tsv with a repeated id", "gen_filelist_s1", s1_lists(_append("semantic.tsv", "good01\t1 2 3\n")),
     Error("duplicate id 'good01'")),
    ("semantic.json that is not JSON", "gen_filelist_s1", s1_lists(_replace("semantic.json", b"{tokens")),
     Error("not valid JSON")),
    ("phonemes.tsv missing", "gen_filelist_s1", s1_lists(_remove("phonemes.tsv")), Error("file not found")),
    ("BERT features file that is not a tensor", "gen_filelist_s1", s1_lists(_bert_file(b"junk"), bert_dim=8),
     Skip("s1_list", "no BERT features")),
    ("negative --val-items", "gen_filelist_s1", s1_lists(lambda d: "--val-items", "--val-items", "-2"),
     Error("--val-items must be >= 0")),
]


def run_main(script: str, argv: list[str]) -> object:
    """The script's main in this process: the exit code or message (any other exception is a bug and escapes)."""
    module = importlib.import_module(script)
    try:
        module.main(module.build_parser().parse_args(argv))
    except SystemExit as stop:
        return stop.code
    return 0


@pytest.mark.parametrize(("what", "script", "setup", "expect"), CASES,
                         ids=[f"{script}: {what}" for what, script, _, _ in CASES])
def test_bad_input(what: str, script: str, setup: Callable[[Path], Setup], expect: Error | Skip | Noted,
                   tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    s = setup(tmp_path)
    code = run_main(script, [str(a) for a in s.argv])
    out = capsys.readouterr()
    if isinstance(expect, Error):
        assert isinstance(code, str), f"expected an error exit, got {code!r}\n{out.out[-2000:]}"
        assert "\n" not in code.strip() and re.match(r"^[\w.]+: ", code), f"not one line from the stage: {code}"
        assert s.key in code, f"the message does not name {s.key}: {code}"
        assert re.search(expect.reason, code), f"expected /{expect.reason}/ in: {code}"
        return
    assert code in (0, None), f"the stage failed instead of reporting the item: {code}\n{out.out}{out.err}"
    if isinstance(expect, Skip):
        reason = reason_for(s.dump, expect.stage, s.key)
        assert reason is not None and reason.startswith(expect.reason), f"{s.key}: {reason!r}\n{out.out}"
    else:
        assert reason_for(s.dump, "resample", s.key) is None, "the item was rejected"
        assert any(s.key in u.id for u in read_manifest(s.dump / "manifest.tsv"))
        note = reason_for(s.dump, "resample", s.key, "adjusted.tsv")
        if expect.reason:
            assert note is not None and note.startswith(expect.reason), f"{s.key}: {note!r}"
        else:
            assert note is None, note


def test_catalog_is_large_enough() -> None:
    assert len(CASES) >= 20
