"""train_s1.py end to end on the synthetic corpus's tokens (tiny config, CPU): the tiny model memorises
the training items, torchrun (2 ranks, gloo) trains, checkpoints and resumes exactly, unsafe run
directories and a codebook mismatch are refused with clear messages, --init fine-tunes from step 0."""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import pytest
import torch

from common.checkpoint import Checkpoint, load_checkpoint
from common.config import S1Config, load_config
from common.dist import DistInfo
from s1.data import S1_TRAIN_LIST, S1_VAL_LIST, SEMANTIC_JSON, S1Dataset, load_semantic_meta
from s1.model import build_model
from s1.trainer import S1Trainer, lr_at
from tests.pipeline import S1_RUN_STEPS, TINY_S1, S1Dump, read_scalars, train_s1, write_config
from train_s1 import build_parser

LOG_TIME = re.compile(r"^(\d\d:\d\d:\d\d) ")


def adam_steps(ckpt: Checkpoint) -> set[int]:
    return {int(s["step"]) for s in ckpt.optimizers["model"]["state"].values()}


def assert_same(a: object, b: object, where: str = "") -> None:
    """Nested dicts/lists of tensors and numbers are bitwise equal."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    else:
        assert a == b, where


def log_seconds(log: str, first: str, last: str) -> float:
    """Seconds between the log lines containing ``first`` and ``last`` (HH:MM:SS stamps, same day)."""
    lines = log.splitlines()
    t0 = next(LOG_TIME.match(x).group(1) for x in lines if first in x)
    t1 = next(LOG_TIME.match(x).group(1) for x in reversed(lines) if last in x)
    seconds = (datetime.strptime(t1, "%H:%M:%S") - datetime.strptime(t0, "%H:%M:%S")).total_seconds()
    return seconds % 86400


def test_lr_schedule_warmup_cosine_constant() -> None:
    tc = load_config(TINY_S1, S1Config).train
    lrs = [lr_at(s, tc) for s in range(tc.decay_steps + 20)]
    assert lrs[0] == tc.lr_init
    assert lrs[tc.warmup_steps] == pytest.approx(tc.learning_rate)
    assert all(a < b for a, b in zip(lrs[:tc.warmup_steps], lrs[1:tc.warmup_steps + 1]))  # linear warmup
    assert all(a > b for a, b in zip(lrs[tc.warmup_steps:tc.decay_steps], lrs[tc.warmup_steps + 1:]))
    half = (tc.warmup_steps + tc.decay_steps) // 2
    assert lrs[half] == pytest.approx((tc.learning_rate + tc.lr_end) / 2, rel=0.02)  # cosine midpoint
    assert lrs[tc.decay_steps:] == [tc.lr_end] * 20


def test_tiny_s1_memorises_the_corpus(s1_run: Path, s1_dump: S1Dump) -> None:
    """The shared run (tests/conftest.py: configs/tiny/s1.json, 200 steps) learns the training tokens.

    Measured on these tokens (CPU, one thread): top-1 training accuracy (means over 10 steps) about
    0.18 at step 50, 0.45 at 100, 0.93 at 150 and 0.985 at 200, in 10-15 s of training. We require
    >= 0.9 at the end, in the logs and recomputed from the final checkpoint, and under 3 minutes.
    """
    scalars = read_scalars(s1_run)
    acc = scalars["acc/top1"]
    assert [s for s, _ in acc] == list(range(10, S1_RUN_STEPS + 1, 10))
    assert acc[0][1] < 0.3 and acc[-1][1] >= 0.9
    loss = scalars["loss/train"]
    assert loss[-1][1] < 0.25 * loss[0][1]
    assert scalars["acc/top3"][-1][1] >= acc[-1][1]
    for tag in ("val/loss", "val/acc_top1", "val/acc_top3"):
        assert [s for s, _ in scalars[tag]] == list(range(50, S1_RUN_STEPS + 1, 50)), tag
    for tag in ("lr", "grad_norm", "throughput/tokens_per_s", "throughput/steps_per_s"):
        assert tag in scalars, tag
    assert scalars["lr"][-1][1] == pytest.approx(lr_at(S1_RUN_STEPS - 1, load_config(TINY_S1, S1Config).train))

    log = (s1_run / "train.log").read_text(encoding="utf-8")
    assert f"finished at step {S1_RUN_STEPS}" in log
    assert log_seconds(log, "S1 training on", "finished at step") < 180  # "within a few minutes of CPU"

    # recompute the teacher-forced accuracy from the checkpoint, independently of the logged numbers
    ckpt = load_checkpoint(s1_run, stage="s1")
    assert ckpt.step == S1_RUN_STEPS
    meta = load_semantic_meta(s1_dump.dump / SEMANTIC_JSON)
    assert ckpt.extra["semantic"] == asdict(meta)  # what inference reads: token rate, codebook, EOS id
    assert ckpt.extra["semantic"]["token_rate"] == 25.0
    cfg = load_config(s1_run / "config.json", S1Config)
    model = build_model(cfg)
    model.load_state_dict(ckpt.models["model"])
    model.eval()
    ds = S1Dataset(s1_dump.dump / S1_TRAIN_LIST, meta)
    hits = scored = 0.0
    with torch.no_grad():
        for start in range(0, len(ds), 16):
            b = ds.collate([ds[i] for i in range(start, min(start + 16, len(ds)))])
            out = model(b.phones, b.phone_lens, b.tokens, b.token_lens)
            hits += float(out.acc) * float(b.token_lens.sum())
            scored += float(b.token_lens.sum())
    assert hits / scored >= 0.9


def test_torchrun_trains_checkpoints_and_resumes_exactly(s1_dump: S1Dump, tmp_path: Path) -> None:
    """8 steps in one go == 4 steps + --resume to 8, bitwise, under 2-rank DDP.

    Dropout is on (so the restored per-rank RNG states matter), 2 micro-batches per update, and
    the cut falls inside an epoch (so the skipped batches matter). The batch order depends only
    on the seed and the epoch, and the same CPU kernels run in the same order, so the weights and
    the optimizer state agree exactly.
    """
    config = write_config(tmp_path / "s1.json", base=TINY_S1, model={"dropout": 0.1, "pos_dropout": 0.1},
                          train={"max_batch_tokens": 600, "grad_accum": 2, "log_interval": 2,
                                 "eval_interval": 1000, "keep_ckpts": 0})
    whole, split = tmp_path / "whole", tmp_path / "split"
    train_s1(s1_dump, whole, 8, config=config, nproc=2)
    train_s1(s1_dump, split, 4, config=config, nproc=2)
    half = load_checkpoint(split / "ckpt_00000004.pt", stage="s1")

    # a resumed trainer starts from exactly the saved state (probed in-process on a copy of the run)
    probe = tmp_path / "probe"
    shutil.copytree(split, probe)
    args = build_parser().parse_args(["-m", str(probe), "--dump", str(s1_dump.dump), "--resume", "--device", "cpu"])
    trainer = S1Trainer(args, DistInfo(0, 0, 1, torch.device("cpu")))
    assert (trainer.step, trainer.epoch, trainer.batch_in_epoch) == (4, half.epoch, half.extra["batch_in_epoch"])
    assert_same(trainer.optim.state_dict(), half.optimizers["model"], "optimizer")
    assert_same(trainer.raw.state_dict(), half.models["model"], "model")
    trainer.board.close()

    train_s1(s1_dump, split, 8, resume=True, nproc=2)
    a = load_checkpoint(whole / "ckpt_00000008.pt", stage="s1")
    b = load_checkpoint(split / "ckpt_00000008.pt", stage="s1")
    assert (a.step, a.epoch, a.extra["batch_in_epoch"]) == (b.step, b.epoch, b.extra["batch_in_epoch"])
    assert adam_steps(half) == {4} and adam_steps(b) == {8}  # the saved optimizer went on; a fresh one says 4
    assert_same(a.models["model"], b.models["model"], "model")
    assert_same(a.optimizers["model"], b.optimizers["model"], "optimizer")
    assert len(b.extra["rng"]) == 2 and not torch.equal(b.extra["rng"][0]["cpu"], b.extra["rng"][1]["cpu"])
    assert not torch.equal(half.models["model"]["head.weight"], b.models["model"]["head.weight"])

    log = (split / "train.log").read_text(encoding="utf-8")
    per_rank = int(re.search(r"S1 training on cpu x2, .* (\d+) batches per epoch per rank", log).group(1))
    assert 0 < half.extra["batch_in_epoch"] < per_rank  # the cut is inside an epoch
    assert f"at step 4 (epoch {half.epoch}, batch {half.extra['batch_in_epoch']})" in log
    assert [s for s, _ in read_scalars(split)["loss/train"]] == [2, 4, 6, 8]  # the step count continues
    assert read_scalars(split)["loss/train"] == read_scalars(whole)["loss/train"]


def test_resume_with_nothing_to_resume_is_an_error(s1_dump: S1Dump, tmp_path: Path) -> None:
    result = train_s1(s1_dump, tmp_path / "empty", 2, config=TINY_S1, resume=True, check=False)
    assert result.returncode != 0
    assert "--resume given but there is no checkpoint to resume from" in result.stderr
    assert "Traceback" not in result.stderr


def test_fresh_run_into_a_run_with_checkpoints_is_refused(s1_dump: S1Dump, s1_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "used"
    run_dir.mkdir()
    latest = load_checkpoint(s1_run).path
    shutil.copy(latest, run_dir / latest.name)
    result = train_s1(s1_dump, run_dir, 2, check=False)
    assert result.returncode != 0
    assert "already holds checkpoints; pass --resume" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in run_dir.glob("ckpt_*.pt")) == [latest.name]  # untouched


def test_codebook_size_must_match_the_tokens(s1_dump: S1Dump, tmp_path: Path) -> None:
    config = write_config(tmp_path / "s1.json", base=TINY_S1, model={"codebook_size": 128})
    result = train_s1(s1_dump, tmp_path / "run", 2, config=config, check=False)
    assert result.returncode != 0
    assert "model.codebook_size is 128" in result.stderr and "set model.codebook_size to 64" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "run").glob("ckpt_*.pt"))


def test_bert_model_without_bert_features_in_the_dump_is_refused(s1_dump: S1Dump, tmp_path: Path) -> None:
    config = write_config(tmp_path / "s1.json", base=TINY_S1, model={"bert_dim": 16})
    result = train_s1(s1_dump, tmp_path / "run", 2, config=config, check=False)
    assert result.returncode != 0
    assert "have no BERT features" in result.stderr and "run extract_bert_s1.py" in result.stderr
    assert "Traceback" not in result.stderr


def test_init_loads_weights_and_starts_at_step_zero(s1_dump: S1Dump, s1_run: Path, tmp_path: Path) -> None:
    """Fine-tuning from the shared run, on a dump holding only what S1 training reads, with an empty
    validation list (gen_filelist_s1.py --val-items 0): training goes on without validation."""
    dump = tmp_path / "dump"
    dump.mkdir()
    for name in (SEMANTIC_JSON, S1_TRAIN_LIST):
        shutil.copy(s1_dump.dump / name, dump / name)
    (dump / S1_VAL_LIST).write_text("id\tphones\ttokens\n", encoding="utf-8")
    source = load_checkpoint(s1_run, stage="s1")
    run_dir = tmp_path / "ft"
    train_s1(S1Dump(dump, TINY_S1, s1_dump.s2_checkpoint), run_dir, 2, "--init", s1_run)
    ckpt = load_checkpoint(run_dir, stage="s1")
    assert ckpt.step == 2 and ckpt.epoch == 0
    assert adam_steps(ckpt) == {2}  # a fresh optimizer, not the source's
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert f"initialised weights from {source.path} (step {S1_RUN_STEPS})" in log
    n_train = len(S1Dataset(dump / S1_TRAIN_LIST, dump / SEMANTIC_JSON))
    assert "lists no items: training without validation" in log and f"{n_train} train / 0 val items" in log
    assert not any(tag.startswith("val/") for tag in read_scalars(run_dir))
    # two small steps (lr <= 4e-4) away from the source weights; a random model is far from them
    drift = max(float((ckpt.models["model"][k] - v).abs().max()) for k, v in source.models["model"].items())
    fresh = build_model(load_config(TINY_S1, S1Config)).state_dict()
    distance = max(float((fresh[k] - v).abs().max()) for k, v in source.models["model"].items())
    assert 0 < drift < 5e-3 < 0.1 < distance
