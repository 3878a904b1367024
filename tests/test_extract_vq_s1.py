"""extract_vq_s1.py with a real tiny S2 model: padding invariance, rejections, resume, checkpoint
mismatch, and the torchrun (2 ranks, gloo) merge against one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import extract_vq_s1
from common.checkpoint import Checkpoint, save_checkpoint
from common.config import S2Config, load_config, to_dict
from s1.data import load_semantic_meta, read_semantic_tsv
from s2.model import build_model
from text.symbols import SYMBOLS_MD5

REPO = Path(__file__).resolve().parents[1]
TINY_S2 = REPO / "configs" / "tiny" / "s2.json"  # ssl_dim 64, codebook 64, 25 Hz tokens
GOOD = {f"utt{i:02d}": 9 + 5 * i for i in range(9)}  # id -> 50 Hz frames (odd and even lengths)


def save_s2(run_dir: Path, step: int, seed: int, inited: bool = True) -> Path:
    cfg = load_config(TINY_S2, S2Config)
    torch.manual_seed(seed)
    generator, _ = build_model(cfg)
    generator.quantizer.inited.fill_(1.0 if inited else 0.0)
    ckpt = Checkpoint(stage="s2", step=step, epoch=0, config=to_dict(cfg), symbols_md5=SYMBOLS_MD5,
                      models={"generator": generator.state_dict()})
    return save_checkpoint(run_dir, ckpt, keep=0)


def make_ssl(dump: Path) -> None:
    ssl = dump / "ssl"
    ssl.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for uid, frames in GOOD.items():
        torch.save(torch.randn(64, frames, generator=g).half(), ssl / f"{uid}.pt")
    torch.save(torch.randn(32, 20, generator=g).half(), ssl / "bad_dim.pt")
    nan = torch.randn(64, 20, generator=g).half()
    nan[3, 4] = float("nan")
    torch.save(nan, ssl / "bad_nan.pt")
    torch.save(torch.randn(64, 1, generator=g).half(), ssl / "bad_short.pt")
    (ssl / "bad_unreadable.pt").write_bytes(b"not a torch file")


def run(dump: Path, ckpt: Path, *extra: str) -> None:
    extract_vq_s1.main(extract_vq_s1.build_parser().parse_args(
        ["--dump", str(dump), "--s2-ckpt", str(ckpt), "--device", "cpu", "--num-workers", "0",
         "--batch-size", "4", *extra]))


@pytest.fixture(scope="module")
def s2_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("s2")
    save_s2(run_dir, step=10, seed=1)
    return run_dir


def test_padding_does_not_change_tokens(s2_run: Path) -> None:
    ckpt = s2_run / "ckpt_00000010.pt"
    tok = extract_vq_s1.load_tokenizer(ckpt, "sha", torch.device("cpu"))
    assert tok.frames_per_token == 2
    g = torch.Generator().manual_seed(3)
    feats = [torch.randn(64, n, generator=g).half() for n in (41, 2, 17, 30, 3)]
    batched = extract_vq_s1.tokens_for_batch(tok, feats, torch.device("cpu"))
    single = [extract_vq_s1.tokens_for_batch(tok, [f], torch.device("cpu"))[0] for f in feats]
    assert batched == single
    assert [len(t) for t in batched] == [20, 1, 8, 15, 1]
    assert len({t for toks in batched for t in toks}) > 5  # a real codebook lookup, not a constant
    assert all(0 <= t < 64 for toks in batched for t in toks)


def test_rejections_resume_and_checkpoint_mismatch(tmp_path: Path, s2_run: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "s2"
    shutil.copytree(s2_run, run_dir)
    dump = tmp_path / "dump"
    make_ssl(dump)
    computed: list[int] = []
    real = extract_vq_s1.tokens_for_batch

    def counting(tok: extract_vq_s1.S2Tokenizer, feats: list[torch.Tensor], device: torch.device) -> list[list[int]]:
        computed.append(len(feats))
        return real(tok, feats, device)

    monkeypatch.setattr(extract_vq_s1, "tokens_for_batch", counting)
    run(dump, run_dir)
    tsv = dump / "semantic.tsv"
    first = tsv.read_bytes()
    sem = read_semantic_tsv(tsv)
    assert sorted(sem) == sorted(GOOD) and sum(computed) == len(GOOD)
    assert all(len(sem[uid]) == frames // 2 for uid, frames in GOOD.items())
    meta = load_semantic_meta(dump / "semantic.json")
    ckpt = run_dir / "ckpt_00000010.pt"
    assert (meta.token_rate, meta.codebook_size, meta.eos_id, meta.s2_step) == (25.0, 64, 64, 10)
    assert meta.s2_sha256 == extract_vq_s1.file_sha256(ckpt) and meta.symbols_md5 == SYMBOLS_MD5
    assert meta.n_items == len(GOOD) and Path(meta.s2_checkpoint) == ckpt
    rows = [r.split("\t") for r in (dump / "rejected.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    assert {r[1]: r[3].split(":")[0] for r in rows if r[0] == "vq"} == {
        "bad_dim": "wrong ssl dim", "bad_nan": "non-finite ssl", "bad_short": "too short",
        "bad_unreadable": "unreadable ssl"}
    assert not list(dump.glob("semantic.part-*"))

    # resume: drop three rows and tamper with a kept one; only the three are computed again
    lines = first.decode("utf-8").splitlines()
    kept_row = lines[1].split("\t")
    lines[1] = f"{kept_row[0]}\t63 63"
    tsv.write_text("\n".join(lines[:2] + lines[5:]) + "\n", encoding="utf-8")
    computed.clear()
    run(dump, run_dir)
    assert sum(computed) == 3
    assert read_semantic_tsv(tsv)[kept_row[0]] == [63, 63]  # a kept row is not recomputed
    lines = tsv.read_text(encoding="utf-8").splitlines()
    lines[1] = "\t".join(kept_row)
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    computed.clear()
    run(dump, run_dir)
    assert sum(computed) == 0 and tsv.read_bytes() == first

    # a newer checkpoint in the run directory: refuse, unless --overwrite
    save_s2(run_dir, step=20, seed=2)
    with pytest.raises(SystemExit, match=r"ckpt_00000010\.pt \(step 10.*not be mixed.*--overwrite"):
        run(dump, run_dir)
    assert tsv.read_bytes() == first
    run(dump, run_dir, "--overwrite")
    assert load_semantic_meta(dump / "semantic.json").s2_step == 20
    assert sorted(read_semantic_tsv(tsv)) == sorted(GOOD) and tsv.read_bytes() != first

    save_s2(tmp_path / "untrained", step=0, seed=3, inited=False)
    with pytest.raises(SystemExit, match="never initialised"):
        run(tmp_path / "dump", tmp_path / "untrained", "--overwrite")


def test_torchrun_two_ranks_match_one_process(tmp_path: Path, s2_run: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    make_ssl(one)
    shutil.copytree(one / "ssl", two / "ssl")
    run(one, s2_run)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "extract_vq_s1.py"), "--dump", str(two), "--s2-ckpt", str(s2_run), "--device", "cpu",
           "--num-workers", "0", "--batch-size", "3"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "on 2 rank(s)" in res.stdout
    for name in ("semantic.tsv", "semantic.json"):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    rejected = [(d / "rejected.tsv").read_text(encoding="utf-8").replace(str(d), "DUMP") for d in (one, two)]
    assert rejected[0] == rejected[1] and rejected[0].count("\nvq\t") == 4
    assert not list(two.glob("semantic.part-*"))
