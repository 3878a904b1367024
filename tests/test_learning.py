"""The measures of learning (common/learning.py), the PNG panels and the S2 KL warm-up."""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from common.config import ConfigError, S2Config, from_dict
from common.learning import (
    Measure,
    envelope_correlation,
    format_measures,
    frame_energy_db,
    log_mel_l1,
    mcd_dtw,
)
from common.plots import write_panels
from modules.spectrogram import MelSpectrogram
from s2.trainer import S2Trainer, TrainState
from tests.corpus import demo_sentences, espeak_session

SR, HOP = 32000, 640


@pytest.fixture(scope="module")
def speech() -> dict[str, np.ndarray]:
    """Two espeak-ng sentences at 32 kHz (float32 [N])."""
    import soxr

    with espeak_session() as tts:
        out = {}
        for name, text in (("a", "今天天气很好，我们去公园散步。"), ("b", "火车下午三点出发。")):
            pcm = tts.synth(text, "cmn", 45, 175, 50).astype(np.float32) / 32768.0
            out[name] = soxr.resample(pcm, tts.sample_rate, SR).astype(np.float32)
    return out


def test_envelope_correlation_sees_syllables_not_level(speech):
    a = speech["a"]
    assert envelope_correlation(a, a, HOP) == pytest.approx(1.0)
    assert envelope_correlation(a, 0.05 * a, HOP) == pytest.approx(1.0, abs=1e-6)  # dB: the level does not count
    t = np.arange(len(a)) / SR
    buzz = (0.1 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)  # steady: no envelope at all
    assert abs(envelope_correlation(a, buzz, HOP)) < 0.1
    reversed_speech = a[::-1].copy()
    assert envelope_correlation(a, reversed_speech, HOP) < 0.6


def test_frame_energy_is_floored_below_the_loudest_frame(speech):
    e = frame_energy_db(np.concatenate([np.zeros(SR, np.float32), speech["b"]]), HOP)
    assert len(e) == (SR + len(speech["b"])) // HOP
    assert e.max() - e.min() == pytest.approx(50.0)


def test_log_mel_l1_is_zero_for_the_same_signal_and_grows_with_distortion(speech):
    mel = MelSpectrogram(SR, 2048, HOP, 2048, 128)
    a = speech["a"]
    noisy = a + 0.01 * np.random.default_rng(0).standard_normal(len(a)).astype(np.float32)
    assert log_mel_l1(a, a, mel) == pytest.approx(0.0, abs=1e-6)
    assert 0 < log_mel_l1(a, noisy, mel) < log_mel_l1(a, 0.3 * noisy[::-1].copy(), mel)


def test_mcd_dtw_aligns_timing_but_not_content(speech):
    a, b = speech["a"], speech["b"]
    assert mcd_dtw(a, a, SR) == pytest.approx(0.0, abs=1e-6)
    slower = np.repeat(a, 2)[::2].copy()  # the same, resampled trivially; then a pause inserted mid-way
    paused = np.concatenate([slower[: len(a) // 2], np.zeros(SR // 4, np.float32), slower[len(a) // 2:]])
    same_text, other_text = mcd_dtw(a, paused, SR), mcd_dtw(a, b, SR)
    assert same_text < 0.5 * other_text


def test_measure_verdicts_and_table():
    assert Measure("corr", 0.8, 0.1, higher_is_better=True).improved
    assert not Measure("l1", 2.0, 1.0, higher_is_better=False).improved
    assert Measure("ratio", 1.2, 4.0, higher_is_better=False, target=1.0).improved
    assert not Measure("ratio", 0.2, 1.5, higher_is_better=False, target=1.0).improved  # 5x short vs 1.5x long
    assert not Measure("corr", 0.12, 0.1, True, margin=0.1).improved  # within the margin: not learned
    table = format_measures([Measure("corr", 0.8, 0.1, True), Measure("l1", 2.0, 1.0, False),
                             Measure("l1", 0.99, 1.0, False, margin=0.1)])
    assert "learned" in table and "worse than untrained" in table and "no clear change" in table


def test_panels_png_has_one_band_per_signal(tmp_path, speech):
    path = write_panels(tmp_path / "p.png", [("a", speech["a"]), ("b", speech["b"])], SR, HOP)
    img = Image.open(path)
    n_frames = len(speech["a"]) // HOP
    assert img.format == "PNG" and img.width >= 2 * n_frames
    assert img.height > 2 * 80 * 2  # two 80-band mel panels at scale 2, titles and the envelope panel


def test_demo_sentences_are_distinct_and_seeded():
    s = demo_sentences(300)
    assert len(set(s)) == 300 and s == demo_sentences(300) and s != demo_sentences(300, seed=1)
    with pytest.raises(ValueError):
        demo_sentences(10**6)


def _trainer_at(step: int, warmup: int, c_kl: float = 2.0) -> SimpleNamespace:
    cfg = SimpleNamespace(train=SimpleNamespace(c_kl=c_kl, kl_warmup_steps=warmup))
    return SimpleNamespace(cfg=cfg, state=TrainState(step=step))


def test_kl_weight_ramps_over_the_warmup_then_stays():
    weights = [S2Trainer.kl_weight(_trainer_at(s, warmup=100)) for s in (0, 49, 99, 100, 5000)]
    assert weights[0] == pytest.approx(0.02) and weights[1] == pytest.approx(1.0)
    assert weights[2:] == [2.0, 2.0, 2.0]
    assert S2Trainer.kl_weight(_trainer_at(0, warmup=0)) == 2.0  # no warm-up: the full weight at once


def test_kl_warmup_must_not_be_negative():
    from common.config import to_dict

    d = to_dict(S2Config())
    d["train"]["kl_warmup_steps"] = -1
    with pytest.raises(ConfigError, match="kl_warmup_steps"):
        from_dict(S2Config, d)
