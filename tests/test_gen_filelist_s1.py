"""gen_filelist_s1.py: joins tokens and phonemes, filters with the config and semantic.json, seeded split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import gen_filelist_s1
from common.manifest import PhonemeEntry, write_phonemes
from s1.data import S1Dataset, SemanticMeta, save_semantic_meta, write_semantic_tsv
from text.symbols import SYMBOLS_MD5

REPO = Path(__file__).resolve().parents[1]
TINY_S1 = REPO / "configs" / "tiny" / "s1.json"  # max_seconds 20, max_phones 540, 3..25 phones/s, min_tokens 2

PHONES = ["n", "i2", "h", "ao3", "SP", "AH0", "m", "a1", ",", "."]


def _phones(n: int) -> list[str]:
    return [PHONES[i % len(PHONES)] for i in range(n)]


# id -> (n_phones or None for no phonemes, n_tokens or None for no tokens); at 25 tokens/s
ITEMS = {
    **{f"good{i:02d}": (10, 25 + i) for i in range(12)},  # ~1 s, ~10 phones/s
    "few_tokens": (3, 1),
    "too_long": (120, 501),  # 20.04 s > 20 s
    "many_phones": (541, 500),
    "slow": (10, 100),  # 4 s -> 2.5 phones/s at 25 Hz, but 2 s -> 5 phones/s at 50 Hz
    "fast": (30, 25),  # 30 phones/s
    "no_phonemes": (None, 30),
    "no_tokens": (10, None),
}


def make_dump(dump: Path, token_rate: float = 25.0, symbols_md5: str = SYMBOLS_MD5, unknown: bool = True) -> None:
    dump.mkdir(parents=True, exist_ok=True)
    semantic = {uid: [(k * 7 + i) % 64 for k in range(n)] for i, (uid, (_, n)) in enumerate(ITEMS.items())
                if n is not None}
    entries = [PhonemeEntry(uid, _phones(p), [1] * p, "x") for uid, (p, _) in ITEMS.items() if p is not None]
    if unknown:
        semantic["unknown_phone"] = [1] * 25
        entries.append(PhonemeEntry("unknown_phone", ["n", "QQ"] * 5, [1] * 10, "x"))
    write_semantic_tsv(dump / "semantic.tsv", semantic)
    write_phonemes(dump / "phonemes.tsv", entries)
    save_semantic_meta(SemanticMeta(token_rate=token_rate, codebook_size=64, eos_id=64, semantic_frame_rate="25hz",
                                    ssl_dim=64, s2_checkpoint="x.pt", s2_step=1, s2_sha256="0" * 64,
                                    symbols_md5=symbols_md5, n_items=len(semantic)), dump / "semantic.json")


def run(dump: Path, *extra: str) -> None:
    gen_filelist_s1.main(gen_filelist_s1.build_parser().parse_args(
        ["--dump", str(dump), "--config", str(TINY_S1), *extra]))


def list_ids(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id\tphones\ttokens"
    return [line.split("\t")[0] for line in lines[1:]]


def rejected(dump: Path) -> dict[str, str]:
    rows = [line.split("\t") for line in (dump / "rejected.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    return {r[1]: r[3].split(":")[0] for r in rows if r[0] == "s1_list"}


def test_filters_split_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dump = tmp_path / "dump"
    make_dump(dump)
    run(dump, "--val-items", "3")
    train, val = list_ids(dump / "s1_train.tsv"), list_ids(dump / "s1_val.tsv")
    assert len(val) == 3 and train == sorted(train) and val == sorted(val)
    assert sorted(train + val) == [f"good{i:02d}" for i in range(12)]
    assert rejected(dump) == {"few_tokens": "too few tokens", "too_long": "too long", "many_phones": "too many phones",
                              "slow": "phone rate", "fast": "phone rate", "unknown_phone": "unknown phone",
                              "no_phonemes": "no phonemes", "no_tokens": "no tokens"}
    out = capsys.readouterr().out
    assert "kept 12, left out 8" in out
    assert "  phone rate: 2" in out and "  too long: 1" in out
    row = (dump / "s1_train.tsv").read_text(encoding="utf-8").splitlines()[1].split("\t")
    assert row[1].split() == _phones(10) and len(row[2].split()) == ITEMS[row[0]][1]
    # the lists load as an S1 dataset
    assert len(S1Dataset(dump / "s1_train.tsv", dump / "semantic.json")) == 9


def test_token_rate_comes_from_semantic_json(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    make_dump(dump, token_rate=50.0)
    run(dump, "--val-items", "0")
    ids = list_ids(dump / "s1_train.tsv")
    # at 50 tokens/s the limit is 1000 tokens and durations halve: "too_long" is 10.02 s at 12 phones/s,
    # "slow" is 2 s at 5 phones/s -- both kept now; "fast" gets faster (60 phones/s) and stays out
    assert "slow" in ids and "too_long" in ids
    assert sorted(rejected(dump)) == ["fast", "few_tokens", "many_phones", "no_phonemes", "no_tokens",
                                      "unknown_phone"]
    assert len(ids) == 14


def test_rerun_is_byte_identical_and_seeded(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    make_dump(dump)
    cmd = [sys.executable, str(REPO / "gen_filelist_s1.py"), "--dump", str(dump), "--config", str(TINY_S1)]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    first = {n: (dump / n).read_bytes() for n in ("s1_train.tsv", "s1_val.tsv", "rejected.tsv")}
    run(dump)
    assert {n: (dump / n).read_bytes() for n in first} == first
    assert len(list_ids(dump / "s1_val.tsv")) == 4  # data.val_items of the tiny config
    vals = set()
    for seed in range(5):
        run(dump, "--seed", str(seed))
        vals.add(tuple(list_ids(dump / "s1_val.tsv")))
    assert len(vals) > 1  # the seed changes the validation draw


def test_errors_exit_nonzero(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    make_dump(dump)
    cmd = [sys.executable, str(REPO / "gen_filelist_s1.py"), "--dump", str(dump), "--config", str(TINY_S1),
           "--val-items", "12"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode != 0 and "only 12 item(s) passed the filters" in res.stderr
    assert not (dump / "s1_train.tsv").exists()

    make_dump(dump, symbols_md5="f" * 32)
    with pytest.raises(SystemExit, match="different phone symbol table"):
        run(dump)
    meta = json.loads((dump / "semantic.json").read_text(encoding="utf-8"))
    meta.update(symbols_md5=SYMBOLS_MD5, codebook_size=1024, eos_id=1024)
    (dump / "semantic.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(SystemExit, match="model.codebook_size=64.*codebook of 1024 codes"):
        run(dump)
