"""Shared pytest fixtures. Tests never touch the network."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

from tests.corpus import CorpusInfo, make_corpus  # noqa: E402
from tests.pipeline import S2_RUN_STEPS, S2Dump, build_s2_dump, run_train_s2, write_config  # noqa: E402


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusInfo:
    """The synthetic corpus (4 speakers × 20 Mandarin + 4 English utterances), in both input forms."""
    return make_corpus(tmp_path_factory.mktemp("corpus"), form="both")


@pytest.fixture(scope="session")
def corpus_dir(corpus: CorpusInfo) -> Path:
    """Root of the folder-tree form ``<root>/<lang>/<speaker>/*.wav`` + ``.lab``. Do not modify."""
    return corpus.root


@pytest.fixture(scope="session")
def corpus_list(corpus: CorpusInfo) -> Path:
    """The ``.list`` file (``wav_path|speaker|lang|text``) of the same corpus. Do not modify."""
    assert corpus.list_path is not None
    return corpus.list_path


@pytest.fixture(scope="session")
def s2_dump(corpus: CorpusInfo, tmp_path_factory: pytest.TempPathFactory) -> S2Dump:
    """A real dump of the corpus made by the pipeline scripts (resample → phonemes → tiny-HuBERT features →
    S2 lists) for configs/tiny/s2.json. Do not modify; copy what you need to change."""
    return build_s2_dump(corpus.list_path, tmp_path_factory.mktemp("s2_pipeline"))


@pytest.fixture(scope="session")
def s2_run(s2_dump: S2Dump, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory of the tiny S2 trained by train_s2.py for ``S2_RUN_STEPS`` steps on ``s2_dump``
    (validated every 10 steps; checkpoints at steps 20 and 30). Do not modify; copy it to resume or change it."""
    work = tmp_path_factory.mktemp("s2_run")
    config = write_config(work / "s2.json", train={"eval_interval": 10, "log_interval": 5})
    run_dir = work / "run"
    run_train_s2(s2_dump, run_dir, S2_RUN_STEPS, config=config)
    return run_dir


from tests.pipeline import S1_RUN_STEPS, S1Dump, build_s1_dump, train_s1  # noqa: E402  (S1 fixtures below)


@pytest.fixture(scope="session")
def s1_dump(s2_dump: S2Dump, s2_run: Path, tmp_path_factory: pytest.TempPathFactory) -> S1Dump:
    """A copy of ``s2_dump`` with the S1 stages run on it as a user would: extract_vq_s1.py with the
    ``s2_run`` checkpoint (25 Hz tokens, codebook 64), then gen_filelist_s1.py with configs/tiny/s1.json.
    Do not modify; copy what you need to change."""
    return build_s1_dump(s2_dump, s2_run, tmp_path_factory.mktemp("s1_pipeline"))


@pytest.fixture(scope="session")
def s1_run(s1_dump: S1Dump, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory of the tiny S1 trained by train_s1.py with configs/tiny/s1.json for
    ``S1_RUN_STEPS`` (200) steps on ``s1_dump``: it has memorised the training items
    (top-1 teacher-forced accuracy > 0.9), logged every 10 steps, validated and checkpointed every
    50 (the last 2 checkpoints kept). Do not modify; copy it to resume or change it."""
    run_dir = tmp_path_factory.mktemp("s1_run") / "run"
    train_s1(s1_dump, run_dir, S1_RUN_STEPS)
    return run_dir


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for tiny models: fastest, and immune to OpenMP stalls on a busy machine.
    A test module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
