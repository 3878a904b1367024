"""BERT word features: per-part frontend results, rows aligned with phonemes (zh, en, mixed), the
misalignment error, loading errors, and extract_bert_s1.py (subprocess, resume, torchrun, phone check,
rejections) on a small dump of real frontend output. A tiny random BERT (tests/tiny_bert.py) is read
back through the real loading code; reference rows come from the transformers model called directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import extract_bert_s1
from common.config import ConfigError, S1Config, from_dict
from common.manifest import PhonemeEntry, Utterance, read_phonemes, write_manifest, write_phonemes
from modules.bert import (
    BertAlignmentError,
    BertError,
    bert_features,
    bert_features_batch,
    bert_path,
    load_bert_features,
    load_bert_model,
)
from tests.pipeline import TINY_S1, run_script, write_config
from tests.tiny_bert import make_tiny_bert
from text.cleaner import clean_text
from text.result import G2PResult, TextPart

DIM = 32
TEXTS = {  # id -> (lang, text)
    "a_zh": ("zh", "今天天气很好。"),
    "b_zh": ("zh", "我们一起去吃午饭吧，谢谢你的帮助！"),
    "c_mix": ("zh", "我喜欢用Python写代码，GPU很好。"),
    "d_en": ("en", "Please open the window."),
    "e_zh": ("zh", "这条路很安静。"),
}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert", hidden_size=DIM)


@pytest.fixture(scope="module")
def bert(bert_dir: Path):
    return load_bert_model(str(bert_dir), "cpu")


def reference_rows(bert, text: str) -> torch.Tensor:
    """``hidden_states[-3]`` of ``text`` from the full masked-LM model, [CLS]/[SEP] dropped: [n_chars, D]."""
    inputs = bert.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        hidden = bert.model(**inputs, output_hidden_states=True).hidden_states
    assert len(hidden) == 5  # embeddings + 4 layers: -3 is the output of layer 2
    return hidden[-3][0, 1:-1]


def expected_features(bert, result: G2PResult) -> torch.Tensor:
    """[D, L] built column by column: zh part characters repeated per word2ph, zeros elsewhere."""
    cols = []
    for part in result.parts:
        if part.lang == "zh":
            rows = reference_rows(bert, part.norm_text)
            cols += [rows[i] for i, n in enumerate(part.word2ph) for _ in range(n)]
        else:
            cols += [torch.zeros(DIM)] * part.n_phones
    return torch.stack(cols, dim=1)


# ----------------------------------------------------------------------------- frontend parts


def test_mixed_text_parts_tile_the_result() -> None:
    r = clean_text("我喜欢用Python写代码，GPU很好。", "zh")
    assert [(p.lang, p.norm_text) for p in r.parts] == [("zh", "我喜欢用"), ("en", "Python"), ("zh", "写代码,"),
                                                        ("en", "GPU"), ("zh", "很好.")]
    assert [(p.start, p.end) for p in r.parts] == [(0, 8), (8, 13), (13, 20), (20, 26), (26, 31)]
    assert [n for p in r.parts for n in p.word2ph] == r.word2ph and len(r.phones) == 31
    assert "".join(p.norm_text for p in r.parts) == r.norm_text
    assert r.phones[8:13] == ["P", "AY1", "TH", "AA0", "N"]
    plain = clean_text("今天天气很好。", "zh")
    assert [(p.lang, p.start, p.end) for p in plain.parts] == [("zh", 0, len(plain.phones))]
    with pytest.raises(AssertionError, match="do not add up"):
        G2PResult(["a1", "b1"], [1, 1], "ab", "zh", parts=[TextPart("zh", "a", (1,), 0, 1)])
    with pytest.raises(AssertionError, match="do not tile"):
        G2PResult(["a1", "b1"], [1, 1], "ab", "zh", parts=[TextPart("zh", "ab", (1, 1), 1, 3)])


# ----------------------------------------------------------------------------- features


def test_chinese_rows_are_the_model_hidden_state_per_character(bert) -> None:
    r = clean_text("今天天气很好，我们一起去吃午饭吧。", "zh")
    feats = bert_features(bert, r)
    assert feats.shape == (DIM, len(r.phones)) and feats.dtype == torch.float32
    torch.testing.assert_close(feats, expected_features(bert, r), atol=1e-5, rtol=1e-5)
    # each syllable's two phone columns are the same character row; the comma has its own row
    assert torch.equal(feats[:, 0], feats[:, 1]) and not torch.equal(feats[:, 1], feats[:, 2])
    assert feats.abs().sum(0).min() > 0  # every column of a Chinese text carries features


def test_english_text_is_all_zeros(bert) -> None:
    r = clean_text("Please open the window.", "en")
    feats = bert_features(bert, r)
    assert feats.shape == (DIM, len(r.phones)) and not feats.any()


def test_mixed_text_english_runs_are_zero_and_chinese_parts_encoded_alone(bert) -> None:
    r = clean_text("我喜欢用Python写代码，GPU很好。", "zh")
    feats = bert_features(bert, r)
    torch.testing.assert_close(feats, expected_features(bert, r), atol=1e-5, rtol=1e-5)
    for part in r.parts:
        block = feats[:, part.start:part.end]
        assert (block.abs().sum(0) > 0).all() if part.lang == "zh" else not block.any(), part
    # each Chinese part is its own BERT input: its rows differ from those of the whole Chinese text
    whole = reference_rows(bert, "我喜欢用写代码,很好.")
    assert not torch.allclose(feats[:, 13], whole[4], atol=1e-3)


def test_batched_equals_one_by_one(bert) -> None:
    results = [clean_text(text, lang) for lang, text in TEXTS.values()]
    batched = bert_features_batch(bert, results, max_batch_tokens=40)  # several padded batches
    for r, b in zip(results, batched):
        torch.testing.assert_close(b, bert_features(bert, r), atol=1e-5, rtol=1e-5)


def test_text_not_one_token_per_character_is_an_error_naming_it(bert) -> None:
    bad = G2PResult(phones=["j", "in1", "AE1", "B"], word2ph=[2, 1, 1], norm_text="今ab", lang="zh")
    with pytest.raises(BertAlignmentError, match="'今ab'.*3 characters.*2 tokens"):
        bert_features(bert, bad)
    spaced = G2PResult(phones=["j", "in1", ",", "t", "ian1"], word2ph=[2, 1, 2], norm_text="今 天", lang="zh")
    with pytest.raises(BertAlignmentError, match="'今 天'"):
        bert_features_batch(bert, [clean_text("今天。", "zh"), spaced])
    short = G2PResult(phones=["j", "in1", "t", "ian1"], word2ph=[4], norm_text="今天", lang="zh")
    with pytest.raises(BertAlignmentError, match="'今天': 2 characters, 1 word2ph"):
        bert_features(bert, short)


def test_loading_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BertError, match="BERT model directory not found"):
        load_bert_model(str(tmp_path / "absent"))
    with pytest.raises(BertError, match="no config.json"):
        load_bert_model(str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BertError) as err:
        load_bert_model("ar-vits-tests/no-such-bert")
    msg = str(err.value)
    assert "offline" in msg and "huggingface-cli download ar-vits-tests/no-such-bert" in msg and "--bert-model" in msg
    with pytest.raises(BertError, match="1 layer.*at least 2 layers"):
        load_bert_model(str(make_tiny_bert(tmp_path / "one-layer", n_layers=1)))


def test_config_needs_a_bert_model_when_bert_dim_is_set() -> None:
    with pytest.raises(ConfigError, match="model.bert_dim is 8 but data.bert_model is empty"):
        from_dict(S1Config, {"model": {"bert_dim": 8}, "data": {"bert_model": ""}})
    assert from_dict(S1Config, {"data": {"bert_model": ""}}).model.bert_dim == 0
    assert S1Config().data.bert_model == "hfl/chinese-roberta-wwm-ext-large"


# ----------------------------------------------------------------------------- extract_bert_s1.py


def make_dump(dump: Path) -> dict[str, G2PResult]:
    """manifest.tsv + phonemes.tsv of ``TEXTS`` as resample.py / gen_phonemes.py write them (no audio needed)."""
    results = {uid: clean_text(text, lang) for uid, (lang, text) in TEXTS.items()}
    write_manifest(dump / "manifest.tsv", [Utterance(uid, "spk", lang, text, 2.0, f"/data/{uid}.wav")
                                           for uid, (lang, text) in TEXTS.items()])
    write_phonemes(dump / "phonemes.tsv", [PhonemeEntry(uid, r.phones, r.word2ph, r.norm_text)
                                           for uid, r in results.items()])
    return results


def stage_args(dump: Path, bert_dir: Path, config: Path, *extra: str) -> list[str]:
    return ["--dump", str(dump), "--config", str(config), "--bert-model", str(bert_dir), "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def bert_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("cfg") / "s1.json", base=TINY_S1, model={"bert_dim": DIM})


def test_stage_end_to_end_resume_and_torchrun(tmp_path: Path, bert_dir: Path, bert, bert_config: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    dump = tmp_path / "dump"
    results = make_dump(dump)
    parse = extract_bert_s1.build_parser().parse_args
    extract_bert_s1.main(parse(stage_args(dump, bert_dir, bert_config)))
    assert f"bert: processed {len(TEXTS)}, skipped 0 (already done), rejected 0" in capsys.readouterr().out
    for uid, r in results.items():
        saved = load_bert_features(bert_path(dump, uid))
        assert saved.dtype == torch.float16 and saved.shape == (DIM, len(r.phones))
        torch.testing.assert_close(saved.float(), bert_features(bert, r), atol=2e-3, rtol=2e-3)
    assert not load_bert_features(bert_path(dump, "d_en")).any()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (dump / "bert").iterdir()}

    extract_bert_s1.main(parse(stage_args(dump, bert_dir, bert_config)))
    assert f"processed 0, skipped {len(TEXTS)}" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (dump / "bert").iterdir()} == mtimes  # resume did no work

    # as a user runs it, under torchrun: each rank takes every other item, rank 0 prints the merged counts
    two = run_script("extract_bert_s1.py", *stage_args(dump, bert_dir, bert_config, "--overwrite"), torchrun_nproc=2)
    assert f"processed {len(TEXTS)}, skipped 0 (already done), rejected 0" in two.stdout
    assert two.stdout.count("processed") == 1  # merged counts, printed by rank 0 only
    assert all(p.stat().st_mtime_ns > mtimes[p.name] for p in (dump / "bert").iterdir())  # each item redone once
    assert sorted(p.name for p in (dump / "bert").iterdir()) == sorted(f"{u}.pt" for u in TEXTS)


def test_stage_checks_phones_and_rejects_misaligned_texts(tmp_path: Path, bert_dir: Path, bert_config: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    dump = tmp_path / "dump"
    make_dump(dump)
    entries = read_phonemes(dump / "phonemes.tsv")
    entries[1] = PhonemeEntry(entries[1].id, entries[1].phones[:-1] + ["?"], entries[1].word2ph, entries[1].norm_text)
    write_phonemes(dump / "phonemes.tsv", entries)
    parse = extract_bert_s1.build_parser().parse_args
    with pytest.raises(SystemExit) as err:
        extract_bert_s1.main(parse(stage_args(dump, bert_dir, bert_config)))
    assert "out of date" in str(err.value) and "b_zh" in str(err.value) and "rerun gen_phonemes.py" in str(err.value)
    assert not (dump / "bert" / "b_zh.pt").exists()

    make_dump(dump)  # phonemes fixed; a BERT whose tokenizer keeps runs of Chinese characters as one word
    whole_words = make_tiny_bert(tmp_path / "whole-words", hidden_size=DIM)
    tok_config = whole_words / "tokenizer_config.json"
    tok_config.write_text(tok_config.read_text(encoding="utf-8").replace('"tokenize_chinese_chars": true',
                                                                          '"tokenize_chinese_chars": false'))
    (whole_words / "tokenizer.json").unlink()  # rebuilt from vocab.txt and the config above
    extract_bert_s1.main(parse(stage_args(dump, whole_words, bert_config, "--overwrite")))
    out = capsys.readouterr().out
    assert "processed 1, skipped 0 (already done), rejected 4" in out and "  bert: 4" in out
    rejected = (dump / "rejected.tsv").read_text(encoding="utf-8")
    assert "do not line up with the BERT tokenizer" in rejected and "'今天天气很好.'" in rejected


def test_stage_setup_errors_are_one_line(tmp_path: Path, bert_dir: Path, bert_config: Path) -> None:
    dump = tmp_path / "dump"
    make_dump(dump)
    parse = extract_bert_s1.build_parser().parse_args
    with pytest.raises(SystemExit, match="^bert: BERT model directory not found"):
        extract_bert_s1.main(parse(stage_args(dump, tmp_path / "absent", bert_config)))
    wide = write_config(tmp_path / "wide.json", base=TINY_S1, model={"bert_dim": 1024})
    with pytest.raises(SystemExit, match="hidden size 32, but .*model.bert_dim = 1024"):
        extract_bert_s1.main(parse(stage_args(dump, bert_dir, wide)))
    assert not (dump / "bert").exists()


def test_stage_without_bert_dim_does_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    extract_bert_s1.main(extract_bert_s1.build_parser().parse_args(["--dump", str(tmp_path), "--config",
                                                                     str(TINY_S1)]))
    assert "model.bert_dim = 0" in capsys.readouterr().out and not (tmp_path / "bert").exists()
