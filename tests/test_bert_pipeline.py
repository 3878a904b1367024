"""S1 with BERT word features through the real pipeline: extract_bert_s1.py on the shared S1 dump,
gen_filelist_s1.py leaving out items without features, train_s1.py (subprocess) with ``bert_dim > 0``,
then s1_infer.py and tts.py with that model (BERT from the checkpoint's config or --bert-model), on the
shared S2 run. A tiny random BERT (tests/tiny_bert.py) stands in for chinese-roberta-wwm-ext-large.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import extract_bert_s1
import gen_filelist_s1
import s1_infer
import tts
from common.checkpoint import load_checkpoint
from common.config import S1Config, from_dict
from infer.engine import TTSEngine
from infer.reference import ReferenceOptions, load_reference
from infer.text_input import split_text
from infer.tokens_file import load_tokens_file
from modules.bert import bert_features, bert_path
from s1.data import S1_TRAIN_LIST, S1Dataset, load_semantic_meta
from s1.model import build_model
from tests.pipeline import TINY_S1, S1Dump, train_s1, write_config
from tests.small_dump import view_s1_dump
from tests.tiny_bert import make_tiny_bert

DIM = 32
TEXT = "今天天气很好。我喜欢用Python写代码！"


@dataclass(frozen=True)
class BertRun:
    dump: S1Dump
    bert: Path
    run: Path
    dropped: str  # the id whose features were deleted before gen_filelist_s1.py


@pytest.fixture(scope="module")
def bert_run(s1_dump: S1Dump, tmp_path_factory: pytest.TempPathFactory) -> BertRun:
    work = tmp_path_factory.mktemp("bert_pipeline")
    bert = make_tiny_bert(work / "tiny-bert", hidden_size=DIM)
    config = write_config(work / "s1.json", base=TINY_S1, model={"bert_dim": DIM}, data={"bert_model": str(bert)})
    dump = view_s1_dump(s1_dump, work / "dump")
    dump = S1Dump(dump.dump, config, dump.s2_checkpoint)
    extract_bert_s1.main(extract_bert_s1.build_parser().parse_args(
        ["--dump", str(dump.dump), "--config", str(config), "--device", "cpu"]))  # BERT from data.bert_model
    dropped = sorted(p.stem for p in (dump.dump / "bert").iterdir())[0]
    bert_path(dump.dump, dropped).unlink()
    gen_filelist_s1.main(gen_filelist_s1.build_parser().parse_args(["--dump", str(dump.dump), "-c", str(config)]))
    run = work / "run"
    train_s1(dump, run, 4)
    return BertRun(dump, bert, run, dropped)


def test_lists_leave_out_items_without_bert_features(bert_run: BertRun) -> None:
    rejected = (bert_run.dump.dump / "rejected.tsv").read_text(encoding="utf-8").splitlines()
    rows = [r for r in rejected if r.startswith("s1_list\t")]
    assert len(rows) == 1 and f"\t{bert_run.dropped}\t" in rows[0] and "no BERT features" in rows[0]
    listed = (bert_run.dump.dump / S1_TRAIN_LIST).read_text(encoding="utf-8")
    assert f"\n{bert_run.dropped}\t" not in listed
    assert not any(r.startswith("bert\t") for r in rejected)  # every item had features before one was deleted


def test_training_uses_the_features(bert_run: BertRun) -> None:
    ckpt = load_checkpoint(bert_run.run, stage="s1")
    cfg = from_dict(S1Config, ckpt.config)
    assert ckpt.step == 4 and cfg.model.bert_dim == DIM and cfg.data.bert_model == str(bert_run.bert)
    model = build_model(cfg)
    model.load_state_dict(ckpt.models["model"])
    model.eval()
    ds = S1Dataset(bert_run.dump.dump / S1_TRAIN_LIST, load_semantic_meta(bert_run.dump.dump / "semantic.json"), DIM)
    batch = ds.collate([ds[i] for i in range(4)])
    assert batch.bert.shape == (4, DIM, batch.phones.shape[1]) and batch.bert.dtype == torch.float16
    for i in range(4):  # zero padding after each item's phones, its own file before
        n = int(batch.phone_lens[i])
        assert torch.equal(batch.bert[i, :, :n], ds[i].bert) and not batch.bert[i, :, n:].any()
    with torch.no_grad():
        real = model(batch.phones, batch.phone_lens, batch.tokens, batch.token_lens, bert=batch.bert_rows).loss
        zero = model(batch.phones, batch.phone_lens, batch.tokens, batch.token_lens,
                     bert=torch.zeros_like(batch.bert_rows)).loss
    assert torch.isfinite(real) and not torch.isclose(real, zero)


def test_engine_feeds_prompt_and_piece_features(bert_run: BertRun, s2_run: Path, s2_dump, corpus) -> None:
    ref_item = next(it for it in corpus.items if it.lang == "zh")
    engine = TTSEngine.load(bert_run.run, s2_run, "cpu", ssl_model=str(s2_dump.hubert))
    assert engine.bert is not None and engine.bert.source == str(bert_run.bert)  # from the S1 checkpoint's config
    ref = load_reference(corpus.root / ref_item.wav, engine.s2.sample_rate, ReferenceOptions(min_seconds=1.0))
    prompt = engine.prompt(ref, ref_item.text, "zh")
    pieces = split_text(TEXT, "zh")
    assert prompt.bert is not None and prompt.bert.shape == (DIM, len(prompt.phone_ids)) and prompt.bert.any()
    rows = engine._bert_rows(prompt, pieces)
    for piece, row in zip(pieces, rows):
        expected = torch.cat([prompt.bert, bert_features(engine.bert, piece.g2p)], dim=1).T  # [P + L, D]
        assert row.shape == (len(prompt.phone_ids) + len(piece.ids), DIM)
        torch.testing.assert_close(row, expected, atol=1e-5, rtol=1e-5)
    english = pieces[1].g2p.parts[1]
    start = len(prompt.phone_ids) + english.start
    assert english.lang == "en" and not rows[1][start:start + english.n_phones].any()


def test_s1_infer_and_tts_with_a_bert_model(bert_run: BertRun, s2_run: Path, s2_dump, corpus, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    ref_item = next(it for it in corpus.items if it.lang == "zh")
    common = ["--s1-ckpt", str(bert_run.run), "--s2-ckpt", str(s2_run), "--ref", str(corpus.root / ref_item.wav),
              "--ref-text", ref_item.text, "--ssl-model", str(s2_dump.hubert), "--device", "cpu", "--text", TEXT,
              "--seed", "0", "--ref-min-seconds", "1",  # the corpus utterances last about 2 s
              "--max-tokens-per-phoneme", "1"]  # 4 training steps do not teach EOS: keep the pieces short
    assert s1_infer.cli([*common, "--bert-model", str(bert_run.bert), "-o", str(tmp_path / "t.npz")]) == 0
    tf = load_tokens_file(tmp_path / "t.npz")
    assert tf.n_pieces == 2 and all(len(t) > 0 for t in tf.tokens) and tf.meta["prompt_text"]
    assert tts.cli([*common, "-o", str(tmp_path / "out.wav")]) == 0  # BERT from the checkpoint's data.bert_model
    wav, sr = sf.read(tmp_path / "out.wav", dtype="float32")
    assert sr == 32000 and wav.ndim == 1 and np.abs(wav).max() > 0
    capsys.readouterr()
    assert tts.cli([*common, "--bert-model", str(tmp_path / "no-bert"), "-o", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: BERT model directory not found") and "Traceback" not in err
    assert not (tmp_path / "x.wav").exists()
