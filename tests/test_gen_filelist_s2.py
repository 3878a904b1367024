"""gen_filelist_s2.py: selection of usable items, left-out counts, reproducible split."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import gen_filelist_s2 as gf
from common.audio import save_wav
from common.manifest import (
    ManifestError,
    PhonemeEntry,
    S2ListItem,
    Utterance,
    read_s2_list,
    write_manifest,
    write_phonemes,
)
from modules.ssl import save_features

ROOT = Path(__file__).resolve().parents[1]
TINY_S2 = ROOT / "configs" / "tiny" / "s2.json"  # min_seconds 0.5, max_seconds 12, hop 640, val_items 4
SR, HOP = 32000, 640


def make_dump(dump: Path, n_good: int = 10) -> dict[str, int]:
    """A dump with ``n_good`` usable items plus one of each left-out kind; returns good id -> samples."""
    good = {f"spk{i % 3}_{i:03d}": 16_000 + 1_337 * i for i in range(n_good)}
    samples = {**good, "bad_noph": 20_000, "bad_nossl": 20_000, "bad_short": 12_000, "bad_long": 12 * SR + 640,
               "bad_stale": 20_000, "bad_nowav": 20_000}
    utts, phones = [], []
    for uid, n in samples.items():
        utts.append(Utterance(uid, uid.split("_")[0], "zh" if n % 2 else "en", "text", n / SR, f"/src/{uid}.wav"))
        if uid != "bad_nowav":
            save_wav(dump / "wav32k" / f"{uid}.wav", np.zeros(n, np.float32), SR)
        if uid != "bad_noph":
            phones.append(PhonemeEntry(uid, ["n", "i2"], [2], "你"))
        if uid != "bad_nossl":
            save_features(dump / "ssl" / f"{uid}.pt", torch.zeros(64, n // HOP))  # data.ssl_dim 64
    stale = dump / "ssl" / "bad_stale.pt"
    os.utime(stale, (time.time() - 100, time.time() - 100))  # older than its wav
    write_manifest(dump / "manifest.tsv", utts)
    write_phonemes(dump / "phonemes.tsv", phones)
    return good


def _run(dump: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "gen_filelist_s2.py"), "--dump", str(dump), "--config", str(TINY_S2), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_lists_are_reproducible_and_complete(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    good = make_dump(dump)
    first = _run(dump)
    assert first.returncode == 0, first.stderr
    train_bytes, val_bytes = (dump / "s2_train.list").read_bytes(), (dump / "s2_val.list").read_bytes()
    for reason in ("no phonemes: 1", "no ssl: 1", "too short (< 0.5 s): 1", "too long (> 12.0 s): 1",
                   "missing wav: 1", "stale ssl (older than the wav; rerun extract_ssl_s2.py): 1"):
        assert reason in first.stdout
    assert "left out 6 utterance(s)" in first.stdout

    train, val = read_s2_list(dump / "s2_train.list"), read_s2_list(dump / "s2_val.list")
    assert len(val) == 4 and len(train) == len(good) - 4  # data.val_items of the tiny config
    assert {it.id for it in train} | {it.id for it in val} == set(good)
    assert not {it.id for it in train} & {it.id for it in val}
    for it in train + val:
        assert it.n_frames == good[it.id] // HOP and it.speaker == it.id.split("_")[0]
    assert [it.id for it in train] == sorted(it.id for it in train)
    assert train_bytes.decode("utf-8").splitlines()[0] == f"{train[0].id}|{train[0].speaker}|{train[0].lang}|" \
        f"{train[0].n_frames}"

    again = _run(dump)
    assert again.returncode == 0 and again.stdout == first.stdout
    assert (dump / "s2_train.list").read_bytes() == train_bytes
    assert (dump / "s2_val.list").read_bytes() == val_bytes
    other = _run(dump, "--seed", "7", "--val-items", "3")
    assert other.returncode == 0
    val7 = read_s2_list(dump / "s2_val.list")
    assert len(val7) == 3 and {it.id for it in val7} != {it.id for it in val[:3]}


def test_split_clamps() -> None:
    items = [S2ListItem(f"u{i}", "s", "zh", 50) for i in range(5)]
    train, val = gf.split_items(items, 100, seed=1)
    assert len(train) == 1 and len(val) == 4
    train, val = gf.split_items(items, 0, seed=1)
    assert len(train) == 4 and len(val) == 1
    train, val = gf.split_items(items[:2], 8, seed=1)
    assert len(train) == 1 and len(val) == 1
    train, val = gf.split_items(items[:1], 8, seed=1)
    assert train == val == items[:1]
    assert gf.split_items(list(reversed(items)), 2, seed=3) == gf.split_items(items, 2, seed=3)


def test_empty_dump_is_an_error(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    write_manifest(dump / "manifest.tsv", [Utterance("a_1", "a", "zh", "text", 1.0, "/src/a.wav")])
    result = _run(dump)
    assert result.returncode != 0
    assert "no usable utterance" in result.stderr and "missing wav: 1" in result.stdout
    assert not (dump / "s2_train.list").exists() and not (dump / "s2_val.list").exists()
    missing = _run(tmp_path / "nothing")
    assert missing.returncode != 0 and "manifest.tsv: file not found" in missing.stderr


def test_bad_list_lines_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.list"
    path.write_text("a|s|zh|12\nb|s|zh|twelve\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"x.list:2: expected id\|speaker\|lang\|n_frames"):
        read_s2_list(path)
    with pytest.raises(ManifestError, match="has '|'"):
        S2ListItem("a", "s|t", "zh", 3).to_line()


def test_ssl_dir_matches_the_extractor() -> None:
    from modules.ssl import SSL_DIR

    assert gf.SSL_DIR == SSL_DIR
