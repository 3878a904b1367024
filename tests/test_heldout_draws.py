"""infer/heldout.tts_scores: the length ratio is the mean over several sampled generations per item; the
first generation is the one decoded and scored."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.config import S1InferenceConfig
from infer import heldout


class FakeEngine:
    """Generates ``lengths[seed]`` tokens for every text; records the seeds it was asked for."""

    def __init__(self, lengths: dict[int, int]) -> None:
        self.lengths = lengths
        self.seeds: list[int] = []
        self.s2 = SimpleNamespace(sample_rate=16000)
        self.s1 = SimpleNamespace(cfg=SimpleNamespace(inference=S1InferenceConfig()))

    def prompt(self, ref, ref_text, lang):
        return None

    def generate(self, phones, prompt, opts):
        self.seeds.append(opts.seed)
        return SimpleNamespace(tokens=[torch.zeros(self.lengths[opts.seed], dtype=torch.long)])


def test_length_ratio_is_the_mean_of_the_draws_and_the_first_draw_is_decoded(monkeypatch):
    decoded = []
    monkeypatch.setattr(heldout, "load_reference", lambda path, sr: SimpleNamespace(wav=np.zeros(10)))
    monkeypatch.setattr(heldout, "reference_spectrogram", lambda wav, s2: None)
    monkeypatch.setattr(heldout, "phonemize", lambda text, lang, what: text)
    monkeypatch.setattr(heldout, "decode_tokens_file", lambda s2, tf, spec, opts: decoded.append(len(tf.tokens[0]))
                        or np.full(len(tf.tokens[0]), 0.5))
    monkeypatch.setattr(heldout, "mcd_dtw", lambda rec, wav, sr: float(len(wav)))
    engine = FakeEngine({7: 50, 8: 100, 9: 150, 10: 300})
    texts = {"a": "x", "b": "y"}
    ratio, mcd, wavs = heldout.tts_scores(engine, texts, {"a": None, "b": None}, {"a": 100, "b": 200}, "ref.wav",
                                          "ref", seed=7, draws=4)
    assert engine.seeds == [7, 8, 9, 10] * 2
    # item a: (50 + 100 + 150 + 300) / 4 / 100 = 1.5; item b: the same lengths / 200 = 0.75
    assert ratio == (1.5 + 0.75) / 2
    assert decoded == [50, 50] and mcd == 50.0 and set(wavs) == {"a", "b"}
    ratio_one, _, _ = heldout.tts_scores(engine, texts, {"a": None, "b": None}, {"a": 100, "b": 200}, "ref.wav",
                                         "ref", seed=7, draws=1)
    assert ratio_one == (0.5 + 0.25) / 2
    with pytest.raises(ValueError, match="draws must be at least 1"):
        heldout.tts_scores(engine, texts, {}, {}, "ref.wav", "ref", draws=0)
