"""common/manifest.py and the rejection report: round trips, validation errors, input forms, ids."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from common.manifest import (
    ManifestError,
    PhonemeEntry,
    SourceItem,
    Utterance,
    assign_ids,
    normalize_lang,
    read_list,
    read_manifest,
    read_phonemes,
    sanitize_id,
    scan_tree,
    write_manifest,
    write_phonemes,
)
from common.progress import RejectionReport

HEADER = "id\tspeaker\tlang\ttext\tduration\tsource\n"


def utts() -> list[Utterance]:
    return [
        Utterance("spk1_002", "spk1", "en", "Hello, world.", 1.25, "/data/en/spk1/002.wav"),
        Utterance("spk0_001", "说话人", "zh", "今天是2024年。", 2.5, "/data/zh/说话人/001.wav"),
    ]


def test_manifest_round_trip_sorted_by_id(tmp_path: Path) -> None:
    path = tmp_path / "manifest.tsv"
    write_manifest(path, utts())
    assert read_manifest(path) == sorted(utts(), key=lambda u: u.id)
    first = path.read_bytes()
    write_manifest(path, reversed(utts()))
    assert path.read_bytes() == first  # order of the input does not matter
    assert path.read_text(encoding="utf-8").startswith(HEADER)


def test_manifest_text_loses_tabs_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    write_manifest(path, [Utterance("a", "s\t1", "zh", "第一行\n第二行\t完", 1.0, "x.wav")])
    (u,) = read_manifest(path)
    assert (u.speaker, u.text) == ("s 1", "第一行 第二行 完")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a\ts\tzh\ttext\t1.0\n", r"m\.tsv:2: expected 6 tab-separated columns, got 5"),
        ("a\ts\tzh\tt\t1.0\tx\na\ts\tzh\tt\t1.0\ty\n", r"m\.tsv:3: duplicate id 'a' \(first on line 2\)"),
        ("a\ts\tzh\tt\tlong\tx\n", r"m\.tsv:2: bad duration 'long'"),
        ("a\ts\tzh\tt\t-1\tx\n", r"m\.tsv:2: bad duration '-1'"),
        ("a\ts\tzh\tt\tnan\tx\n", r"m\.tsv:2: bad duration 'nan'"),
        ("a\ts\tfr\tt\t1\tx\n", r"m\.tsv:2: bad lang 'fr'"),
        ("a b\ts\tzh\tt\t1\tx\n", r"m\.tsv:2: bad id 'a b'"),
        ("", r"m\.tsv: no utterances"),
    ],
)
def test_manifest_validation_names_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "m.tsv"
    path.write_text(HEADER + body, encoding="utf-8")
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_manifest_header_missing_file_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    path.write_text("id\tspeaker\ttext\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"m\.tsv:1: expected header"):
        read_manifest(path)
    with pytest.raises(ManifestError, match="file not found"):
        read_manifest(tmp_path / "nope.tsv")
    path.write_text(HEADER, encoding="utf-8")
    assert read_manifest(path, allow_empty=True) == []


def test_phonemes_round_trip_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "phonemes.tsv"
    entries = [
        PhonemeEntry("b", ["n", "i3", "h", "ao3", "。"], [2, 2, 1], "你好。"),
        PhonemeEntry("a", ["HH", "AH0", "L", "OW1", "."], [4, 1], "hello."),
    ]
    write_phonemes(path, entries)
    assert read_phonemes(path) == sorted(entries, key=lambda e: e.id)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id\tphones\tword2ph\tnorm_text"
    assert lines[2] == "b\tn i3 h ao3 。\t2 2 1\t你好。"
    with pytest.raises(ManifestError, match="phones"):
        write_phonemes(path, [PhonemeEntry("c", [], [], "")])
    with pytest.raises(ManifestError, match=r"word2ph \[1, 1\] does not split 3 phones"):
        write_phonemes(path, [PhonemeEntry("c", ["a", "b", "c"], [1, 1], "")])
    bad_rows = {
        "a\tx y\t1 z\tt\n": r"p\.tsv:2: bad word2ph '1 z'",
        "a\tx y\t-1 3\tt\n": r"p\.tsv:2: negative count",
        "a\tx y\t1 2\tt\n": r"p\.tsv:2: word2ph sums to 3 but there are 2 phones",
        "a\t\t\tt\n": r"p\.tsv:2: no phones",
        "a\tx\t1\n": r"p\.tsv:2: expected 4 tab-separated columns, got 3",
    }
    for row, message in bad_rows.items():
        (tmp_path / "p.tsv").write_text("id\tphones\tword2ph\tnorm_text\n" + row, encoding="utf-8")
        with pytest.raises(ManifestError, match=message):
            read_phonemes(tmp_path / "p.tsv")


def test_normalize_lang() -> None:
    for code, lang in {"ZH": "zh", "zh": "zh", "En": "en", "EN": "en", "JP": "ja", "ja": "ja", " jp ": "ja"}.items():
        assert normalize_lang(code) == lang
    with pytest.raises(ValueError, match="unknown language: 'fr'"):
        normalize_lang("fr")


def test_read_list(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    lst = tmp_path / "sub" / "data.list"
    lines = [
        "\ufeffwavs/a.wav|spk|ZH|你好。",  # BOM, relative path
        "/abs/b.wav|spk|en|Hi.\r",  # absolute path, CRLF
        "",
        "c.wav|spk|zh",  # 3 fields
        "d.wav|spk|zh|text|extra",  # 5 fields
        "e.wav|spk|zh|   ",  # empty text
    ]
    lst.write_bytes("\n".join(lines).encode("utf-8") + b"\n" + "f.wav|spk|zh|好".encode("gbk") + b"\n")
    ds = read_list(lst)
    assert [it.audio for it in ds.items] == [
        tmp_path / "sub" / "wavs" / "a.wav",
        Path("/abs/b.wav"),
        tmp_path / "sub" / "e.wav",
    ]
    a, b, e = ds.items
    assert (a.speaker, a.lang, a.text, a.problem, a.origin) == ("spk", "ZH", "你好。", None, f"{lst}:1")
    assert b.text == "Hi."
    assert e.problem is not None and e.problem.startswith("empty transcript")
    assert [(origin.rsplit(":", 1)[1], reason.split(":")[0]) for origin, reason in ds.bad_entries] == [
        ("4", "bad list line"),
        ("5", "bad list line"),
        ("7", "non-UTF-8 line"),
    ]
    with pytest.raises(ManifestError, match="list file not found"):
        read_list(tmp_path / "missing.list")


def test_scan_tree_reports_transcript_problems(tmp_path: Path) -> None:
    spk = tmp_path / "zh" / "spk"
    spk.mkdir(parents=True)
    for name in ("ok", "nolab", "emptylab", "gbklab"):
        (spk / f"{name}.wav").write_bytes(b"RIFF")  # content is not read by the scan
    (spk / "ok.lab").write_text("你好\n", encoding="utf-8")
    (spk / "emptylab.lab").write_text(" \n", encoding="utf-8")
    (spk / "gbklab.lab").write_bytes("你好".encode("gbk"))
    (tmp_path / "zh" / "stray.wav").write_bytes(b"RIFF")
    ds = scan_tree(tmp_path)
    problems = {it.audio.stem: (it.problem or "").split(":")[0] for it in ds.items}
    assert problems == {
        "ok": "",
        "nolab": "missing .lab",
        "emptylab": "empty transcript",
        "gbklab": "non-UTF-8 transcript",
    }
    assert [it.text for it in ds.items if it.audio.stem == "ok"] == ["你好"]
    assert all((it.lang, it.speaker) == ("zh", "spk") for it in ds.items)
    assert [reason.split(":")[0] for _, reason in ds.bad_entries] == ["misplaced"]


def item(speaker: str, key: str) -> SourceItem:
    return SourceItem(Path("/d") / key, speaker, "zh", "t", origin=key, key=key)


def test_ids_are_stable_sanitized_and_deduplicated() -> None:
    items = [item("spk", "zh/spk/001.wav"), item("spk", "other/001.wav"), item("张 三", "zh/张 三/x y.wav"),
             item("spk", "zh/spk/002.wav")]  # fmt: skip
    assign_ids(items)
    ids = [it.id for it in items]
    assert ids[3] == "spk_002"
    assert ids[2] == "____x_y"
    assert ids[0].startswith("spk_001_") and ids[1].startswith("spk_001_") and ids[0] != ids[1]
    shuffled = [item(it.speaker, it.key) for it in items]
    random.Random(0).shuffle(shuffled)
    assign_ids(shuffled)
    assert {it.key: it.id for it in shuffled} == {it.key: it.id for it in items}  # order-independent
    assert sanitize_id(".hidden") == "_.hidden" and sanitize_id("-x") == "_-x"


def test_repeated_source_is_a_problem() -> None:
    items = [item("spk", "a.wav"), item("spk", "a.wav")]
    assign_ids(items)
    assert items[0].problem is None
    assert items[1].problem is not None and items[1].problem.startswith("duplicate entry")


def test_rejection_report_merges_stages_and_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "rejected.tsv"
    first = RejectionReport("resample")
    first.add("b", "/x/b.wav", "too short: 0.05 s < 0.3 s")
    first.add("a", "/x/a.wav", "silent: RMS -inf dBFS")
    first.add("c", "/x/c.wav", "too short: 0.10 s < 0.3 s")
    first.write(path)
    second = RejectionReport("gen_phonemes")
    second.add("d", "/x/d.wav", "text: unknown characters\t'😀'")
    second.write(path)
    snapshot = path.read_bytes()
    first.write(path)  # rerun of the first stage: same file
    assert path.read_bytes() == snapshot
    lines = snapshot.decode("utf-8").splitlines()
    assert lines[0] == "stage\tid\tsource\treason"
    assert [ln.split("\t")[:2] for ln in lines[1:]] == [
        ["resample", "a"], ["resample", "b"], ["resample", "c"], ["gen_phonemes", "d"]
    ]  # fmt: skip
    assert first.counts() == {"too short": 2, "silent": 1}
    RejectionReport("resample").write(path)  # a clean rerun clears only its own rows
    assert [ln.split("\t")[0] for ln in path.read_text(encoding="utf-8").splitlines()[1:]] == ["gen_phonemes"]
