"""The GPT-SoVITS v1 inference rules (infer/rules.py) and that our own models keep ours."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from common.config import ConfigError, S1Config, S1InferenceConfig, from_dict, load_config, to_dict
from infer.cli import generation_options
from infer.engine import GenerationOptions, TTSEngine
from infer.loading import load_s2
from infer.reference import load_reference, prompt_tokens
from infer.rules import GSV1_PROMPT_SILENCE, GSV1_SPLITS, gsv1_prompt_tokens, librosa_style_load
from infer.text_input import TextPiece, with_final_punctuation
from modules.ssl import SSLModel, load_ssl_model
from s1.generate import generate_detailed
from s1.model import Text2Semantic
from s1.sampling import PRESETS, SamplingParams
from tests import test_infer
from tests.test_infer import REPO, SR, TinyRuns, rig_head, speechy

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

runs = test_infer.runs  # the tiny HuBERT + S2 + S1 runs of the inference tests (module-scoped fixture)


def tiny_s1(seed: int = 0) -> Text2Semantic:
    torch.manual_seed(seed)
    return Text2Semantic(codebook_size=64, dim=32, n_layer=2, n_head=2, ffn_dim=64).eval()


def cli_args(**kw) -> argparse.Namespace:
    base = dict(rules=None, preset=None, top_k=None, top_p=None, temperature=None, repetition_penalty=None,
                min_new_tokens=None, max_tokens_per_phoneme=None, no_loop_detector=False, seed=None, batch_size=4,
                speaker=None)
    base.update(kw)
    return argparse.Namespace(**base)


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("params", [PRESETS["greedy"], PRESETS["gsv1"]])
def test_first_token_dropped_but_still_in_context(params: SamplingParams) -> None:
    model = tiny_s1()
    phones = [torch.randint(0, 300, (7,)), torch.randint(0, 300, (4,))]
    prompts = [torch.randint(0, 64, (5,)), torch.randint(0, 64, (3,))]
    n = 12  # EOS blocked throughout: every row makes exactly its cap
    plain = generate_detailed(model, phones, prompts, params, max_new_tokens=n + 1, max_tokens_per_phoneme=None,
                              min_new_tokens=n + 1, seed=3)
    dropped = generate_detailed(model, phones, prompts, params, max_new_tokens=n, max_tokens_per_phoneme=None,
                                min_new_tokens=n + 1, seed=3, drop_first_token=True)
    for p, d in zip(plain.tokens, dropped.tokens):
        assert len(p) == n + 1 and len(d) == n  # the cap counts the returned tokens
        assert torch.equal(d, p[1:])  # same sequence: the dropped token was fed back and penalised


def eos_model() -> Text2Semantic:
    """S1 whose logits are always: EOS 10, token 5 3, everything else 0."""
    model = tiny_s1()
    column = torch.zeros(65)
    column[64], column[5] = 10.0, 3.0
    rig_head(model, column)
    return model


def test_eos_blocked_only_at_the_first_step_under_gsv1() -> None:
    model = eos_model()
    opts = generation_options(cli_args(rules="gsv1"), S1InferenceConfig())
    assert opts.min_new_tokens == 1 and opts.rules == "gsv1"
    res = generate_detailed(model, [torch.arange(6)], [torch.arange(4)], opts.sampling, max_new_tokens=50,
                            max_tokens_per_phoneme=None, min_new_tokens=opts.min_new_tokens, drop_first_token=True)
    # step 0: EOS blocked -> a token; step 1: EOS -> stop. The step-0 token is the one dropped.
    assert res.decode_steps == 1 and res.stop_reasons == ["eos"] and res.tokens[0].numel() == 0
    ours = generation_options(cli_args(), S1InferenceConfig())
    res = generate_detailed(model, [torch.arange(6)], [torch.arange(4)], ours.sampling, max_new_tokens=50,
                            max_tokens_per_phoneme=None, min_new_tokens=ours.min_new_tokens)
    assert res.stop_reasons == ["eos"] and res.tokens[0].numel() == 11  # ours: EOS blocked for 11 steps


# ----------------------------------------------------------------------------- options and presets


def test_gsv1_preset_and_cli_defaults() -> None:
    p = PRESETS["gsv1"]
    assert (p.top_k, p.top_p, p.temperature, p.repetition_penalty, p.greedy) == (10, 1.0, 1.0, 1.35, False)
    ckpt = S1InferenceConfig(top_k=7, temperature=0.9, min_new_tokens=5, rules="gsv1")
    opts = generation_options(cli_args(), ckpt)  # rules from the checkpoint
    assert opts.rules == "gsv1" and opts.sampling == p and opts.min_new_tokens == 1
    opts = generation_options(cli_args(preset="stable", min_new_tokens=3, top_k=4), ckpt)  # explicit values win
    assert opts.sampling.top_k == 4 and opts.sampling.temperature == PRESETS["stable"].temperature
    assert opts.min_new_tokens == 3 and opts.rules == "gsv1"
    opts = generation_options(cli_args(rules="ours"), ckpt)  # --rules overrides the checkpoint
    assert opts.rules == "ours" and opts.sampling.top_k == 7 and opts.min_new_tokens == 5


def test_our_models_keep_our_rules() -> None:
    cfg = load_config(REPO / "configs/s1.json", S1Config)
    assert cfg.inference.rules == "ours"
    opts = generation_options(cli_args(), cfg.inference)
    assert opts.rules == "ours" and opts.min_new_tokens == cfg.inference.min_new_tokens
    assert opts.sampling.top_k == cfg.inference.top_k
    assert from_dict(S1Config, to_dict(cfg)).inference.rules == "ours"
    bad = to_dict(cfg)
    bad["inference"]["rules"] = "gsv2"
    with pytest.raises(ConfigError, match="inference.rules"):
        from_dict(S1Config, bad)


def test_gsv1_final_punctuation() -> None:
    assert with_final_punctuation("你好", "zh", GSV1_SPLITS) == "你好。"
    assert with_final_punctuation("hello", "en", GSV1_SPLITS) == "hello."
    assert with_final_punctuation("你好~", "zh", GSV1_SPLITS) == "你好~"  # '~' ends a v1 prompt, not ours
    assert with_final_punctuation("你好~", "zh") == "你好~。"
    assert with_final_punctuation("你好;", "zh", GSV1_SPLITS) == "你好;。"  # ';' is no v1 split mark
    assert with_final_punctuation("你好;", "zh") == "你好;"


# ----------------------------------------------------------------------------- prompt audio


def test_librosa_style_load_matches_librosa(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for sr, n, ch in ((44100, 44100 * 3 + 17, 2), (48000, 48000 * 3 + 1, 1), (16000, 50000, 1)):
        x = (0.99 * np.clip(rng.standard_normal((n, ch)), -1, 1)).astype(np.float32)  # overshoots after resampling
        path = tmp_path / f"r{sr}.wav"
        sf.write(path, x, sr, subtype="FLOAT")
        ref, _ = librosa.load(path, sr=16000)
        ours = librosa_style_load(path)
        assert ours.dtype == np.float32 and len(ours) == len(ref) == math.ceil(n * 16000 / sr)
        np.testing.assert_array_equal(ours, ref)


class Recorder(torch.nn.Module):
    """Wraps a HubertModel and keeps the inputs it was called with."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.inputs = model, []

    def forward(self, x: torch.Tensor):
        self.inputs.append(x.clone())
        return self.model(x)


def test_gsv1_prompt_audio_path(runs: TinyRuns, tmp_path: Path) -> None:
    ssl = load_ssl_model(str(runs.hubert))
    recorder = Recorder(ssl.model)
    rec = SSLModel(model=recorder, device=ssl.device, fp16=False, hidden_size=ssl.hidden_size,
                   samples_per_frame=ssl.samples_per_frame, receptive_field=ssl.receptive_field, source=ssl.source)
    s2 = load_s2(runs.s2, torch.device("cpu"))
    ref_path = tmp_path / "ref44k.wav"
    sf.write(ref_path, speechy(4.0, 44100), 44100)
    wav16k, _ = librosa.load(ref_path, sr=16000)
    tokens = gsv1_prompt_tokens(librosa_style_load(ref_path), rec, s2)
    (x,) = recorder.inputs
    expected = np.concatenate([wav16k, np.zeros(GSV1_PROMPT_SILENCE, np.float32)])  # 0.6 s of zeros at 16 kHz
    np.testing.assert_array_equal(x[0].numpy(), expected)
    n_frames = (len(expected) - 400) // 320 + 1  # HuBERT frames, no alignment to the spectrogram
    assert len(tokens) == n_frames // 2
    feats = ssl.model(torch.from_numpy(expected)[None]).last_hidden_state.transpose(1, 2)
    assert torch.equal(tokens, s2.generator.extract_codes(feats)[0])

    # the engine uses this path under gsv1 and ours (0.3 s at 32 kHz, aligned frames) otherwise
    engine = TTSEngine(load_s1_random(runs), s2, rec)
    ref = load_reference(ref_path, SR)
    v1 = engine.prompt(ref, "你好", "zh", rules="gsv1")
    assert torch.equal(v1.tokens, tokens) and v1.text == "你好。"
    own = engine.prompt(ref, "你好", "zh", rules="ours")
    assert torch.equal(own.tokens, prompt_tokens(ref, rec, s2, 0.3))
    assert len(own.tokens) == (len(ref.wav) + int(0.3 * SR)) // s2.samples_per_token != len(tokens)


def load_s1_random(runs: TinyRuns):
    from infer.loading import load_s1

    return load_s1(runs.s1, torch.device("cpu"))


def test_engine_generate_drops_first_token_under_gsv1(runs: TinyRuns) -> None:
    engine = TTSEngine(load_s1_random(runs), load_s2(runs.s2, torch.device("cpu")), None)
    pieces = [TextPiece(text="a", phones=[], ids=[10, 20, 30, 40]), TextPiece(text="b", phones=[], ids=[50, 60])]
    prompt = engine.prompt(load_reference(runs.ref, SR), None, "zh")  # style only: no prompt needed here
    common = dict(sampling=PRESETS["gsv1"], min_new_tokens=60, max_tokens_per_phoneme=5.0, loop_detection=False)
    ours = engine.generate(pieces, prompt, GenerationOptions(**common, rules="ours"))
    v1 = engine.generate(pieces, prompt, GenerationOptions(**common, rules="gsv1"))
    assert v1.meta["rules"] == "gsv1" and ours.meta["rules"] == "ours"
    for o, g in zip(ours.tokens, v1.tokens):
        # one sequence t0, t1, ...: ours returns t0..t_{k-1}; gsv1 t1.. (to the same EOS, or one further at the cap)
        assert len(o) >= 60 and len(g) in (len(o) - 1, len(o))
        np.testing.assert_array_equal(g[: len(o) - 1], o[1:])
