"""Shared pytest fixtures. Tests never touch the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from tests.corpus import CorpusInfo, make_corpus  # noqa: E402


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
