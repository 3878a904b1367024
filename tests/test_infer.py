"""The inference package: reference handling, text pieces, tokens file, batched S1/S2 bookkeeping.

Tiny random checkpoints are built here (``build_tiny_runs``, also used by test_tts.py): an S2
generator and two S1 models saved with the stage, config and metadata the trainers write,
plus a tiny HuBERT. One S1 model is random; the other is rigged so that greedy decoding
always emits ``CONST_TOKEN`` and never EOS, which makes token counts exact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from common.checkpoint import Checkpoint, CheckpointError, save_checkpoint
from common.config import S1Config, S1InferenceConfig, S2Config, load_config, to_dict
from infer.decoder import DecodeOptions, batches, decode_pieces, join_pieces
from infer.engine import GenerationOptions, Prompt, TTSEngine, sampling_params
from infer.errors import GenerationError, InferenceError
from infer.loading import check_pair, load_s1, load_s2
from infer.reference import ReferenceOptions, choose_window, load_reference, prompt_tokens, reference_spectrogram
from infer.text_input import split_text, with_final_punctuation
from infer.tokens_file import TokensFile, TokensFileError, load_tokens_file, save_tokens_file
from modules.ssl import load_ssl_model
from s1.data import SemanticMeta
from s1.model import build_model
from s1.sampling import PRESETS
from s2.model import build_generator
from tests.tiny_hubert import make_tiny_hubert
from text.cleaner import clean_text
from text.symbols import SYMBOLS_MD5, phones_to_ids

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

REPO = Path(__file__).resolve().parents[1]
SR = 32000
CONST_TOKEN = 5


@dataclass
class TinyRuns:
    root: Path
    hubert: Path
    s2: Path  # run directory
    s1: Path  # random S1 run directory
    s1_const: Path  # S1 that always says CONST_TOKEN (greedy), never EOS
    s1_eos: Path  # S1 that says EOS at once
    ref: Path  # 4 s, 32 kHz mono


def speechy(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """A voiced-sounding test signal: a gliding harmonic tone, gated into ~0.4 s syllables with pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    gate = (np.sin(2 * np.pi * 1.5 * t) > -0.2).astype(np.float64)
    return (0.3 * x * gate + 0.003 * rng.standard_normal(n)).astype(np.float32)


def _save_s1(run: Path, cfg: S1Config, model: torch.nn.Module, meta: SemanticMeta) -> None:
    save_checkpoint(run, Checkpoint(stage="s1", step=20, epoch=1, config=to_dict(cfg), symbols_md5=SYMBOLS_MD5,
                                    models={"model": model.state_dict()}, extra={"semantic": asdict(meta)}))


def rig_head(model: torch.nn.Module, column: torch.Tensor) -> None:
    """Make the last hidden state constant e_0, so every step's logits are ``column``."""
    with torch.no_grad():
        norm = model.transformer.layers[-1].norm2
        norm.weight.zero_()
        norm.bias.zero_()
        norm.bias[0] = 1.0
        model.head.weight.zero_()
        model.head.weight[:, 0] = column


def build_tiny_runs(root: Path) -> TinyRuns:
    from infer.loading import file_sha256

    root.mkdir(parents=True, exist_ok=True)
    hubert = make_tiny_hubert(root / "hubert")
    s2_cfg = load_config(REPO / "configs/tiny/s2.json", S2Config)
    s2_cfg.data.ssl_model = str(hubert)
    torch.manual_seed(0)
    gen = build_generator(s2_cfg)
    gen.quantizer.inited.fill_(1.0)
    s2_file = save_checkpoint(root / "s2", Checkpoint(stage="s2", step=10, epoch=1, config=to_dict(s2_cfg),
                                                      symbols_md5=SYMBOLS_MD5, models={"generator": gen.state_dict()}))
    s1_cfg = load_config(REPO / "configs/tiny/s1.json", S1Config)
    k = s1_cfg.model.codebook_size
    meta = SemanticMeta(token_rate=s2_cfg.token_rate, codebook_size=k, eos_id=k,
                        semantic_frame_rate=s2_cfg.model.semantic_frame_rate, ssl_dim=s2_cfg.data.ssl_dim,
                        s2_checkpoint=str(s2_file), s2_step=10, s2_sha256=file_sha256(s2_file),
                        symbols_md5=SYMBOLS_MD5, n_items=0)
    _save_s1(root / "s1", s1_cfg, build_model(s1_cfg), meta)
    const = build_model(s1_cfg)
    column = torch.zeros(k + 1)
    column[CONST_TOKEN], column[CONST_TOKEN + 2], column[k] = 3.0, 2.0, -10.0
    rig_head(const, column)
    _save_s1(root / "s1_const", s1_cfg, const, meta)
    eos = build_model(s1_cfg)
    column = torch.zeros(k + 1)
    column[k] = 10.0
    rig_head(eos, column)
    _save_s1(root / "s1_eos", s1_cfg, eos, meta)
    ref = root / "ref.wav"
    sf.write(ref, speechy(4.0, SR), SR)
    return TinyRuns(root=root, hubert=hubert, s2=root / "s2", s1=root / "s1", s1_const=root / "s1_const",
                    s1_eos=root / "s1_eos", ref=ref)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    return build_tiny_runs(tmp_path_factory.mktemp("infer_runs"))


@pytest.fixture(scope="module")
def engine(runs: TinyRuns) -> TTSEngine:
    return TTSEngine.load(runs.s1_const, runs.s2, "cpu")


GREEDY = GenerationOptions(sampling=PRESETS["greedy"], min_new_tokens=11, max_tokens_per_phoneme=3.0)


# ----------------------------------------------------------------------------- reference


def test_reference_any_rate_and_channels(tmp_path: Path, runs: TinyRuns) -> None:
    stereo = np.stack([speechy(4.0, 44100), speechy(4.0, 44100, seed=1)], axis=1)
    sf.write(tmp_path / "st.wav", stereo, 44100)
    ref = load_reference(tmp_path / "st.wav", SR)
    assert ref.sample_rate == SR and ref.wav.ndim == 1
    assert abs(len(ref.wav) - 4 * SR) <= 2 and not ref.style_only and not ref.notes


def test_long_reference_is_cut_to_a_window_between_pauses(tmp_path: Path) -> None:
    sr = 16000
    wav = np.zeros(30 * sr, np.float32)
    speech = speechy(6.0, sr)
    wav[2 * sr:8 * sr] = speech  # 6 s of speech in 30 s, then quiet
    wav[20 * sr:21 * sr] = speech[:sr]
    sf.write(tmp_path / "long.wav", wav, sr)
    ref = load_reference(tmp_path / "long.wav", SR, ReferenceOptions(max_seconds=10.0))
    assert ref.style_only and ref.notes and "longer than 10 s" in ref.notes[0]
    assert len(ref.wav) <= 10 * SR
    assert ref.start <= 2 * SR and ref.end >= 8 * SR  # the whole 6 s stretch of speech, not cut
    full = load_reference(tmp_path / "long.wav", SR, ReferenceOptions(max_seconds=40.0))
    assert np.array_equal(full.wav[ref.start:ref.end], ref.wav)


def test_window_without_pauses_has_the_maximum_length() -> None:
    sr = 1000
    wav = np.full(30 * sr, 0.5, np.float32)  # no pause anywhere
    start, end = choose_window(wav, sr, 3.0, 10.0)
    assert (start, end) == (0, 10 * sr)
    wav[5 * sr:6 * sr] = wav[13 * sr:14 * sr] = 0.0  # two pauses: the window now starts and ends in them
    start, end = choose_window(wav, sr, 3.0, 10.0)
    assert 5 * sr <= start < 6 * sr and 13 * sr < end <= 14 * sr


def test_short_and_silent_references(tmp_path: Path) -> None:
    sf.write(tmp_path / "short.wav", speechy(2.0, SR), SR)
    ref = load_reference(tmp_path / "short.wav", SR)
    assert ref.style_only and "shorter than 3 s" in ref.notes[0]
    sf.write(tmp_path / "tiny.wav", speechy(0.5, SR), SR)
    with pytest.raises(InferenceError, match="too short"):
        load_reference(tmp_path / "tiny.wav", SR)
    sf.write(tmp_path / "silent.wav", np.zeros(4 * SR, np.float32), SR)
    with pytest.raises(InferenceError, match="silent"):
        load_reference(tmp_path / "silent.wav", SR)
    with pytest.raises(InferenceError):
        ReferenceOptions(min_seconds=12.0, max_seconds=10.0)


def test_prompt_tokens_use_appended_silence(runs: TinyRuns) -> None:
    s2 = load_s2(runs.s2, torch.device("cpu"))
    ssl = load_ssl_model(str(runs.hubert))
    ref = load_reference(runs.ref, SR)
    plain = prompt_tokens(ref, ssl, s2, silence_seconds=0.0)
    padded = prompt_tokens(ref, ssl, s2, silence_seconds=0.3)
    assert len(plain) == len(ref.wav) // s2.samples_per_token
    assert len(padded) == (len(ref.wav) + int(0.3 * SR)) // s2.samples_per_token
    spec = reference_spectrogram(ref.wav, s2)
    assert spec.shape == (1, s2.cfg.data.spec_channels, len(ref.wav) // s2.hop_length)


# ----------------------------------------------------------------------------- text


def test_split_text_pieces_and_final_punctuation() -> None:
    pieces = split_text("今天天气很好！ 。。。 我喜欢用Python写代码\nHello world", "zh")
    assert [p.text for p in pieces] == ["今天天气很好！", "我喜欢用Python写代码。", "Hello world。"]
    for p in pieces:
        assert p.ids == phones_to_ids(clean_text(p.text, "zh").phones)
    assert any(ph == "P" for ph in pieces[1].phones)  # English inside Chinese is read as English
    assert with_final_punctuation("Hello", "en") == "Hello." and with_final_punctuation("好？ ", "zh") == "好？"


@pytest.mark.parametrize("text, message", [("   \n", "empty"), ("。！？……", "only punctuation"),
                                           ("你好。😀😀！再见。", "text piece 2 of 3")])
def test_split_text_errors(text: str, message: str) -> None:
    with pytest.raises(InferenceError, match=message):
        split_text(text, "zh")


def test_long_unpunctuated_text_is_split_by_length() -> None:
    text = "我们今天去公园散步然后回家吃饭" * 8  # 120 characters, no punctuation
    pieces = split_text(text, "zh", max_chars=50)
    assert len(pieces) == 3 and all(len(p.text) <= 51 for p in pieces)


# ----------------------------------------------------------------------------- tokens file


def _tf() -> TokensFile:
    return TokensFile(tokens=[np.array([1, 2, 3]), np.array([4])], phones=[np.array([10, 11]), np.array([12, 13, 14])],
                      meta={"token_rate": 25.0, "codebook_size": 64, "seed": 7, "pieces": ["a。", "b。"],
                            "note": "中文"})


def test_tokens_file_round_trip(tmp_path: Path) -> None:
    path = save_tokens_file(tmp_path / "t.npz", _tf())
    back = load_tokens_file(path)
    assert [t.tolist() for t in back.tokens] == [[1, 2, 3], [4]]
    assert [p.tolist() for p in back.phones] == [[10, 11], [12, 13, 14]]
    assert back.meta["seed"] == 7 and back.meta["note"] == "中文" and back.meta["format"] == "ar-vits-tokens"


def test_tokens_file_validation(tmp_path: Path) -> None:
    bad = _tf()
    bad.tokens[1] = np.array([64])
    with pytest.raises(TokensFileError, match="outside"):
        save_tokens_file(tmp_path / "x.npz", bad)
    empty = _tf()
    empty.tokens[0] = np.zeros(0, np.int64)
    with pytest.raises(TokensFileError, match="piece 1"):
        save_tokens_file(tmp_path / "x.npz", empty)
    with pytest.raises(TokensFileError, match="not found"):
        load_tokens_file(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"RIFF0000WAVE")
    with pytest.raises(TokensFileError, match="junk.npz: not a tokens file"):
        load_tokens_file(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", tokens=np.arange(3))
    with pytest.raises(TokensFileError, match="missing array"):
        load_tokens_file(tmp_path / "other.npz")
    np.savez(tmp_path / "lens.npz", tokens=np.arange(3), token_lengths=np.array([2]), phones=np.arange(2),
             phone_lengths=np.array([2]), meta=np.array("{}"))
    with pytest.raises(TokensFileError, match="token_lengths"):
        load_tokens_file(tmp_path / "lens.npz")
    np.savez(tmp_path / "meta.npz", tokens=np.arange(3), token_lengths=np.array([3]), phones=np.arange(2),
             phone_lengths=np.array([2]), meta=np.array('{"format": "ar-vits-tokens"}'))
    with pytest.raises(TokensFileError, match="metadata lacks"):
        load_tokens_file(tmp_path / "meta.npz")


# ----------------------------------------------------------------------------- loading and pairing


def test_pair_checks(runs: TinyRuns, tmp_path: Path) -> None:
    s2 = load_s2(runs.s2, torch.device("cpu"))
    s1 = load_s1(runs.s1, torch.device("cpu"))
    assert check_pair(s1, s2) == []
    s1.semantic = dict(s1.semantic, s2_sha256="0" * 64)
    (warning,) = check_pair(s1, s2)
    assert "different file" in warning
    s1.semantic = dict(s1.semantic, codebook_size=1024)
    with pytest.raises(InferenceError, match="1024-code codebook"):
        check_pair(s1, s2)
    with pytest.raises(CheckpointError, match="S2 checkpoint .* this is an S1 checkpoint"):
        load_s2(runs.s1, torch.device("cpu"))
    with pytest.raises(CheckpointError, match="S1 checkpoint .*not found"):
        load_s1(tmp_path / "nothing.pt", torch.device("cpu"))


def test_sampling_params_precedence() -> None:
    defaults = S1InferenceConfig(top_k=7, top_p=0.9, temperature=0.7, repetition_penalty=1.2)
    p = sampling_params(defaults)
    assert (p.top_k, p.top_p, p.temperature, p.repetition_penalty) == (7, 0.9, 0.7, 1.2)
    assert sampling_params(defaults, "stable") == PRESETS["stable"]
    p = sampling_params(defaults, "expressive", top_k=3)
    assert p.top_k == 3 and p.top_p == PRESETS["expressive"].top_p
    with pytest.raises(InferenceError, match="top_p"):
        sampling_params(defaults, top_p=1.5)


# ----------------------------------------------------------------------------- generation bookkeeping


def test_only_new_tokens_and_target_phonemes_go_to_s2(engine: TTSEngine, runs: TinyRuns) -> None:
    ref = load_reference(runs.ref, SR)
    prompt = engine.prompt(ref, "参考音频", "zh")
    assert prompt.text == "参考音频。" and len(prompt.tokens) > 0
    assert prompt.phone_ids == phones_to_ids(clean_text("参考音频。", "zh").phones)
    pieces = split_text("你好。我们走吧！Good morning.", "zh")
    tf = engine.generate(pieces, prompt, GREEDY)
    assert tf.meta["pieces"] == ["你好。", "我们走吧！", "Good morning."]
    for piece, tokens, phones in zip(pieces, tf.tokens, tf.phones):
        assert phones.tolist() == phones_to_ids(clean_text(piece.text, "zh").phones)  # no prompt phonemes
        assert tokens.tolist() == [CONST_TOKEN] * max(12, math.ceil(3.0 * len(piece.ids)))  # cap from target only
    assert tf.meta["stop_reasons"] == ["length"] * 3 and tf.meta["prompt_tokens"] == len(prompt.tokens)


def test_batched_generation_equals_one_piece_at_a_time(runs: TinyRuns) -> None:
    eng = TTSEngine.load(runs.s1, runs.s2, "cpu")
    ref = load_reference(runs.ref, SR)
    prompt = eng.prompt(ref, "参考音频。", "zh")
    pieces = split_text("你好。我们走吧！今天天气很好，我们去公园。", "zh")
    opts = GenerationOptions(sampling=PRESETS["gshead"], seed=3, loop_detection=False)
    together = eng.generate(pieces, prompt, opts)
    alone = eng.generate(pieces, prompt, replace(opts, batch_size=1))
    assert [t.tolist() for t in together.tokens] == [t.tolist() for t in alone.tokens]


def test_empty_generation_is_an_error_naming_the_piece(runs: TinyRuns) -> None:
    eng = TTSEngine.load(runs.s1_eos, runs.s2, "cpu")
    empty = Prompt(text=None, phone_ids=[], tokens=torch.zeros(0, dtype=torch.long))
    pieces = split_text("你好。再见。", "zh")
    with pytest.raises(GenerationError, match="text piece 1 '你好。'"):
        eng.generate(pieces, empty, GenerationOptions(sampling=PRESETS["greedy"], min_new_tokens=0))
    tf = eng.generate(pieces, empty, GenerationOptions(sampling=PRESETS["greedy"], min_new_tokens=4))
    assert [len(t) for t in tf.tokens] == [4, 4]  # EOS blocked for exactly min_new_tokens steps


# ----------------------------------------------------------------------------- S2 decoding


def test_batched_decode_equals_single_decode(engine: TTSEngine, runs: TinyRuns) -> None:
    s2 = engine.s2
    spec = reference_spectrogram(load_reference(runs.ref, SR).wav, s2)
    g = torch.Generator().manual_seed(0)
    tokens = [torch.randint(0, s2.codebook_size, (n,), generator=g) for n in (7, 12, 3)]
    phones = [torch.randint(1, 300, (n,), generator=g) for n in (5, 9, 2)]
    opts = DecodeOptions(seed=5)
    batched = decode_pieces(s2, tokens, phones, spec, opts)
    split = decode_pieces(s2, tokens, phones, spec, DecodeOptions(seed=5, max_batch_tokens=24))  # [7, 12] + [3]
    # piece i is decoded with noise seed 5 + i alone, as in any batch (tests/test_s2_exact_batch.py: 1e-6)
    single = [decode_pieces(s2, [t], [p], spec, DecodeOptions(seed=5 + i))[0]
              for i, (t, p) in enumerate(zip(tokens, phones))]
    for b, b2, s, t in zip(batched, split, single, tokens):
        assert len(b) == len(t) * s2.samples_per_token
        np.testing.assert_allclose(b, s, rtol=0, atol=1e-6)
        np.testing.assert_allclose(b2, s, rtol=0, atol=1e-6)
    again = decode_pieces(s2, tokens, phones, spec, DecodeOptions(seed=4))
    assert all(np.array_equal(a, b) for a, b in zip(again, decode_pieces(s2, tokens, phones, spec,
                                                                           DecodeOptions(seed=4))))


def test_decode_batches_bound_count_and_padded_size() -> None:
    assert batches([5, 5, 5, 5, 5], 2, 100) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert batches([10, 30, 10, 10], 16, 60) == [slice(0, 2), slice(2, 4)]  # 3 x 30 > 60
    assert batches([100, 10], 16, 60) == [slice(0, 1), slice(1, 2)]  # too long alone: a batch of its own
    assert batches([], 4, 10) == []


def test_join_pieces_pauses_and_peak() -> None:
    wav = join_pieces([np.ones(10, np.float32) * 0.5, np.ones(5, np.float32) * 0.5], 100, pause_seconds=0.1)
    assert wav.tolist() == [0.5] * 10 + [0.0] * 10 + [0.5] * 5
    loud = join_pieces([np.array([2.0, -4.0], np.float32)], 100)
    assert loud.tolist() == [0.5, -1.0]
