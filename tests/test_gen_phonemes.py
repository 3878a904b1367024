"""gen_phonemes.py on hand-written manifests (it reads only the manifest): once as a subprocess,
as a user runs it, then through ``main`` in this process (the frontend loads its dictionaries once)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import gen_phonemes
from common.manifest import Utterance, read_phonemes, write_manifest
from text.cleaner import clean_text

REPO = Path(__file__).resolve().parents[1]

TEXTS = {
    "spk0_000": ("zh", "今天是2024年3月5号，天气很好。"),
    "spk0_001": ("zh", "我有3个苹果。"),
    "spk1_000": ("en", "The weather is nice today."),
    "spk1_001": ("zh", "你好😀"),
}


def run(*args: object) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "gen_phonemes.py", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def run_here(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    gen_phonemes.main(gen_phonemes.build_parser().parse_args(list(args)))
    return capsys.readouterr().out


def write(dump: Path, texts: dict[str, tuple[str, str]]) -> None:
    utts = [Utterance(uid, uid[:4], lang, text, 1.0, f"/data/{uid}.wav") for uid, (lang, text) in texts.items()]
    write_manifest(dump / "manifest.tsv", utts)


def test_phonemes_match_the_frontend_and_reruns_are_stable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, TEXTS)
    proc = run("--dump", tmp_path, "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "processed 3, skipped 0 (already done), rejected 1" in proc.stdout
    entries = {e.id: e for e in read_phonemes(tmp_path / "phonemes.tsv")}
    assert set(entries) == {"spk0_000", "spk0_001", "spk1_000"}
    for uid, entry in entries.items():
        expected = clean_text(TEXTS[uid][1], TEXTS[uid][0])
        assert (entry.phones, entry.word2ph, entry.norm_text) == (expected.phones, expected.word2ph, expected.norm_text)
    rejected = (tmp_path / "rejected.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert len(rejected) == 1
    stage, uid, source, reason = rejected[0].split("\t")
    assert (stage, uid, source) == ("gen_phonemes", "spk1_001", "/data/spk1_001.wav")
    assert reason.startswith("text: ") and "😀" in reason

    table = (tmp_path / "phonemes.tsv").read_bytes()
    dump = str(tmp_path)
    assert "processed 0, skipped 3 (already done), rejected 1" in run_here(capsys, "--dump", dump, "--workers", "1")
    assert (tmp_path / "phonemes.tsv").read_bytes() == table

    # ids gone from the manifest are dropped, new ones are added; --overwrite redoes all
    texts = {k: v for k, v in TEXTS.items() if k != "spk0_001"} | {"spk2_000": ("zh", "谢谢你的帮助。")}
    write(tmp_path, texts)
    assert "processed 1, skipped 2 (already done), rejected 1" in run_here(capsys, "--dump", dump, "--workers", "1")
    assert [e.id for e in read_phonemes(tmp_path / "phonemes.tsv")] == ["spk0_000", "spk1_000", "spk2_000"]
    out = run_here(capsys, "--dump", dump, "--workers", "1", "--overwrite")
    assert "processed 3, skipped 0 (already done), rejected 1" in out


def test_clear_errors_when_nothing_usable(tmp_path: Path) -> None:
    proc = run("--dump", tmp_path)
    assert proc.returncode != 0 and "manifest.tsv: file not found" in proc.stderr
    write(tmp_path, {"a_1": ("zh", "😀😀")})
    with pytest.raises(SystemExit, match="no transcript could be converted"):
        gen_phonemes.main(gen_phonemes.build_parser().parse_args(["--dump", str(tmp_path), "--workers", "1"]))
    assert "gen_phonemes\ta_1\t" in (tmp_path / "rejected.tsv").read_text(encoding="utf-8")
