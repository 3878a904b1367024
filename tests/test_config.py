import json

import pytest

from common.config import ConfigError, S1Config, S2Config, load_config, save_config, to_dict

CONFIGS = [("configs/s2.json", S2Config), ("configs/tiny/s2.json", S2Config),
           ("configs/s1.json", S1Config), ("configs/tiny/s1.json", S1Config)]


@pytest.mark.parametrize("path,cls", CONFIGS)
def test_shipped_configs_load_and_round_trip(path, cls, tmp_path):
    cfg = load_config(path, cls)
    saved = save_config(cfg, tmp_path / "config.json")
    assert load_config(saved, cls) == cfg


def test_full_size_values_and_derived():
    s2 = load_config("configs/s2.json", S2Config)
    assert s2.data.spec_channels == 1025
    assert s2.token_rate == 25.0
    assert s2.train.segment_frames == 32
    s1 = load_config("configs/s1.json", S1Config)
    assert (s1.model.n_layer, s1.model.embedding_dim, s1.model.n_head, s1.model.ffn_dim) == (12, 512, 16, 2048)
    assert s1.model.eos_id == 1024 and s1.model.vocab_size == 1025


def _write(tmp_path, data):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(data), encoding="utf-8")
    return p


def test_unknown_key_is_rejected_and_named(tmp_path):
    data = to_dict(S2Config())
    data["train"]["learnig_rate"] = 1e-3
    with pytest.raises(ConfigError, match="learnig_rate") as e:
        load_config(_write(tmp_path, data), S2Config)
    assert "c.json" in str(e.value)


def test_unknown_section_is_rejected(tmp_path):
    data = to_dict(S1Config()) | {"optimizer": {}}
    with pytest.raises(ConfigError, match="optimizer"):
        load_config(_write(tmp_path, data), S1Config)


@pytest.mark.parametrize("section,key,value,match", [
    ("train", "batch_size", "16", "batch_size"),
    ("train", "batch_size", 1.5, "batch_size"),
    ("model", "freeze_quantizer", 1, "freeze_quantizer"),
    ("model", "upsample_rates", [10, 8, 2, 2], "upsample_rates"),
    ("model", "semantic_frame_rate", "12hz", "semantic_frame_rate"),
    ("train", "precision", "fp8", "precision"),
])
def test_bad_values_are_rejected(tmp_path, section, key, value, match):
    data = to_dict(S2Config())
    data[section][key] = value
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, data), S2Config)


def test_hop_must_equal_upsample_product(tmp_path):
    data = to_dict(S2Config())
    data["data"]["hop_length"] = 320
    with pytest.raises(ConfigError, match="hop_length"):
        load_config(_write(tmp_path, data), S2Config)


def test_ints_accepted_for_floats_and_derived_keys_rejected(tmp_path):
    data = to_dict(S2Config())
    data["train"]["c_mel"] = 45
    assert load_config(_write(tmp_path, data), S2Config).train.c_mel == 45.0
    data["data"]["spec_channels"] = 1025
    with pytest.raises(ConfigError, match="spec_channels"):
        load_config(_write(tmp_path, data), S2Config)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.json", S2Config)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.json"):
        load_config(bad, S2Config)
