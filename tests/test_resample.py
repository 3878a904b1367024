"""resample.py (and gen_phonemes.py after it) run as a user runs them: subprocesses on real corpora."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from common.audio import load_audio
from common.manifest import read_manifest, read_phonemes
from tests.corpus import CorpusInfo, add_broken_items, make_corpus

REPO = Path(__file__).resolve().parents[1]


def run(script: str, *args: object, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, script, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    if ok:
        assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def checksums(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def snapshot(dump: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and modification time of every file in the dump."""
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(dump.rglob("*")) if p.is_file()}


def rejected_rows(dump: Path, stage: str) -> dict[str, tuple[str, str]]:
    """id -> (source, reason category) of one stage's rows in rejected.tsv."""
    lines = (dump / "rejected.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "stage\tid\tsource\treason"
    rows = [line.split("\t") for line in lines[1:]]
    return {row[1] if row[1] != "-" else row[2]: (row[2], row[3].split(":")[0]) for row in rows if row[0] == stage}


def corpus_ids(corpus: CorpusInfo) -> set[str]:
    return {f"{it.speaker}_{it.wav.stem}" for it in corpus.items}


def test_broken_corpus_through_resample_and_gen_phonemes(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "data", n_sentences=3, speakers=2, n_english=1)
    broken = add_broken_items(corpus)
    sources = checksums(corpus.root)
    dump = tmp_path / "dump"

    out = run("resample.py", "--root", corpus.root, "--dump", dump, "--workers", "2").stdout
    good = corpus_ids(corpus) | set(broken.good)
    manifest = {u.id: u for u in read_manifest(dump / "manifest.tsv")}
    assert set(manifest) == good
    assert f"processed {len(good)}, skipped 0 (already done), rejected {len(broken.resample_rejects) + 1}" in out
    for category in ("zero-byte file", "too short", "silent", "missing .lab", "non-UTF-8 transcript", "misplaced"):
        assert f"  {category}: 1\n" in out

    # every bad item is listed with its reason; the misplaced file by its path
    expected = {uid: cat for uid, cat in broken.resample_rejects.items()}
    expected.update({str(p): "misplaced" for p in broken.misplaced})
    assert {k: cat for k, (_, cat) in rejected_rows(dump, "resample").items()} == expected

    # converted outputs: mono 32 kHz 16-bit, same length as the source
    for it in corpus.items:
        u = manifest[f"{it.speaker}_{it.wav.stem}"]
        assert (u.speaker, u.lang, u.text, u.source) == (it.speaker, it.lang, it.text, str(it.wav))
        assert u.duration == pytest.approx(it.duration, abs=1e-3)
    for uid in manifest:
        info = sf.info(dump / "wav32k" / f"{uid}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (32000, 1, "PCM_16")
    base = next(it for it in corpus.items if it.lang == "zh")
    reference = load_audio(base.wav, 32000)
    stereo = load_audio(dump / "wav32k" / "odd_stereo48k.wav", 32000)  # channels (1, 0.5) averaged
    u8 = load_audio(dump / "wav32k" / "odd_u8_22k.wav", 32000)
    n = min(len(reference), len(stereo), len(u8))
    assert abs(len(stereo) - len(reference)) <= 2 and abs(len(u8) - len(reference)) <= 2
    np.testing.assert_allclose(stereo[200 : n - 200], 0.75 * reference[200 : n - 200], atol=0.01)
    np.testing.assert_allclose(u8[:n], reference[:n], atol=0.02)

    out = run("gen_phonemes.py", "--dump", dump, "--workers", "2").stdout
    phonemes = {e.id: e for e in read_phonemes(dump / "phonemes.tsv")}
    assert set(phonemes) == good - set(broken.g2p_rejects)
    assert all(e.phones for e in phonemes.values())
    assert {k: cat for k, (_, cat) in rejected_rows(dump, "gen_phonemes").items()} == broken.g2p_rejects
    assert len(rejected_rows(dump, "resample")) == len(expected)  # the other stage's rows are kept
    assert "  text: 1\n" in out

    assert checksums(corpus.root) == sources  # the dataset is never modified

    # a rerun does no work and leaves every output byte-identical (and untouched)
    before = snapshot(dump)
    out = run("resample.py", "--root", corpus.root, "--dump", dump, "--workers", "2").stdout
    assert f"processed 0, skipped {len(good)} (already done)" in out
    out = run("gen_phonemes.py", "--dump", dump, "--workers", "1").stdout
    assert f"processed 0, skipped {len(phonemes)} (already done)" in out
    assert snapshot(dump) == before
    assert checksums(corpus.root) == sources


def test_list_form_gives_the_same_dump_as_the_tree(corpus: CorpusInfo, tmp_path: Path) -> None:
    assert corpus.list_path is not None
    run("resample.py", "--root", corpus.root, "--dump", tmp_path / "tree", "--workers", "2")
    run("resample.py", "--list", corpus.list_path, "--dump", tmp_path / "list", "--workers", "1")
    tree_manifest = (tmp_path / "tree" / "manifest.tsv").read_bytes()
    assert tree_manifest == (tmp_path / "list" / "manifest.tsv").read_bytes()
    assert len(read_manifest(tmp_path / "tree" / "manifest.tsv")) == len(corpus.items)
    tree_wavs = checksums(tmp_path / "tree" / "wav32k")
    list_wavs = checksums(tmp_path / "list" / "wav32k")
    assert list(tree_wavs.values()) == list(list_wavs.values())


def test_list_problems_are_reported_by_line(corpus: CorpusInfo, tmp_path: Path) -> None:
    zh = [it for it in corpus.items if it.lang == "zh"]
    lines = [
        f"{zh[0].wav}|alice|ZH|{zh[0].text}",
        f"{zh[1].wav}|alice|JP|こんにちは。",
        f"{zh[2].wav}|alice|xx|{zh[2].text}",
        f"{tmp_path / 'missing.wav'}|alice|zh|你好。",
        f"{zh[3].wav}|alice|zh",
        f"{zh[4].wav}|bob|En|Hello there.",
    ]
    lst = tmp_path / "data.list"
    lst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run("resample.py", "--list", lst, "--dump", tmp_path / "dump", "--workers", "1").stdout
    manifest = read_manifest(tmp_path / "dump" / "manifest.tsv")
    assert [(u.id, u.lang) for u in manifest] == [("alice_000", "zh"), ("alice_001", "ja"), ("bob_004", "en")]
    rows = rejected_rows(tmp_path / "dump", "resample")
    assert rows == {
        "alice_002": (f"{lst}:3", "unknown language"),
        "alice_missing": (f"{lst}:4", "file not found"),
        f"{lst}:5": (f"{lst}:5", "bad list line"),
    }
    assert "rejected 3" in out


def test_limits_overwrite_and_damaged_outputs(corpus: CorpusInfo, tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    n_long = sum(it.duration > 1.8 for it in corpus.items)
    assert 0 < n_long < len(corpus.items)
    out = run("resample.py", "--root", corpus.root, "--dump", dump, "--max-seconds", "1.8", "--workers", "2").stdout
    assert f"  too long: {n_long}\n" in out
    assert len(read_manifest(dump / "manifest.tsv")) == len(corpus.items) - n_long

    # a damaged output and a temp file left by a killed writer: only the damaged item is redone
    victim = sorted((dump / "wav32k").glob("*.wav"))[0]
    victim.write_bytes(victim.read_bytes()[:30])
    (dump / "wav32k" / f".{victim.name}.tmp-12345").write_bytes(b"partial")
    out = run("resample.py", "--root", corpus.root, "--dump", dump, "--workers", "2").stdout
    assert f"processed {n_long + 1}, skipped {len(corpus.items) - n_long - 1}" in out
    assert not list((dump / "wav32k").glob(".*"))
    assert sf.info(victim).frames > 0

    out = run("resample.py", "--root", corpus.root, "--dump", dump, "--workers", "2", "--overwrite").stdout
    assert f"processed {len(corpus.items)}, skipped 0" in out

    # a silence threshold above speech level rejects every clip by its level (levels need --overwrite)
    args = ["--silence-db", "0", "--workers", "2", "--overwrite"]
    out = run("resample.py", "--root", corpus.root, "--dump", dump, *args, ok=False)
    assert out.returncode != 0
    assert f"  silent: {len(corpus.items)}\n" in out.stdout


def test_nothing_accepted_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "data" / "zh" / "spk").mkdir(parents=True)
    (tmp_path / "data" / "zh" / "spk" / "a.wav").write_bytes(b"")
    (tmp_path / "data" / "zh" / "spk" / "a.lab").write_text("你好", encoding="utf-8")
    proc = run("resample.py", "--root", tmp_path / "data", "--dump", tmp_path / "dump", ok=False)
    assert proc.returncode != 0
    assert "no usable utterance" in proc.stderr
    assert rejected_rows(tmp_path / "dump", "resample") == {
        "spk_a": (str(tmp_path / "data/zh/spk/a.wav"), "zero-byte file")
    }
    proc = run("resample.py", "--root", tmp_path / "nope", "--dump", tmp_path / "dump", ok=False)
    assert proc.returncode != 0 and "dataset folder not found" in proc.stderr
    proc = run("resample.py", "--root", tmp_path / "data", "--dump", tmp_path / "data" / "dump", ok=False)
    assert proc.returncode != 0 and "inside the dataset folder" in proc.stderr
