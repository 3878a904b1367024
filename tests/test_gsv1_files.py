"""GPT-SoVITS v1 files: names and shapes against the v1 manifest, safe loading, conversion both ways.

The manifest (common/gsv1/v1_manifest.json) was generated from GPT-SoVITS's own classes; the
full-size checks compare our models with it without running them (meta tensors). The small
v1-format files come from tests/gsv1_files.py.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

import convert_checkpoint
from common.checkpoint import CheckpointError, load_checkpoint, load_discriminator_state
from common.config import S1Config, S2Config, load_config, to_dict
from common.gsv1.files import V1_S1, V1_S2D, V1_S2G, checkpoint_from_v1, detect_v1
from common.gsv1.keys import KeyMapError, check_keys, s1_to_v1, s2_to_v1
from infer.loading import load_s1, load_s2
from s1.model import build_model as build_s1
from s2.model import build_discriminator, build_generator
from tests.gsv1_files import (
    REPO,
    S1,
    S2D,
    S2G,
    full_size_raw,
    manifest,
    write_small_d,
    write_small_s1,
    write_small_s2,
)
from text.symbols import SYMBOLS_MD5


def _shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _v1_s1_config() -> S1Config:
    cfg = S1Config()
    cfg.model.n_layer, cfg.model.bert_dim = 24, 1024
    return cfg


@pytest.fixture(scope="module")
def full_models() -> dict[str, torch.nn.Module]:
    with torch.device("meta"):  # shapes only
        return {S2G: build_generator(S2Config()), S2D: build_discriminator(S2Config()),
                S1: build_s1(_v1_s1_config())}


def test_our_full_size_models_have_exactly_the_v1_names_and_shapes(full_models) -> None:
    facts = manifest()
    assert len(facts[S2G]["keys"]) == 776 and len(facts[S2D]["keys"]) == 111 and len(facts[S1]["keys"]) == 295
    for name, to_v1 in ((S2G, s2_to_v1), (S2D, s2_to_v1), (S1, s1_to_v1)):
        ours = to_v1(full_models[name].state_dict())
        assert {k: list(v.shape) for k, v in ours.items()} == facts[name]["keys"], name


def test_full_size_v1_payloads_load_with_the_right_config(full_models) -> None:
    raw = full_size_raw(S2G)
    assert detect_v1(raw) == V1_S2G
    ckpt = checkpoint_from_v1(raw, S2G, V1_S2G)
    assert ckpt.stage == "s2" and ckpt.symbols_md5 == SYMBOLS_MD5
    assert ckpt.config["model"] == to_dict(S2Config())["model"] | {"freeze_quantizer": True}
    assert all(v.dtype == torch.float32 for v in ckpt.models["generator"].values())
    check_keys(ckpt.models["generator"], _shapes(full_models[S2G]), S2G)

    raw = full_size_raw(S1)
    assert detect_v1(raw) == V1_S1
    ckpt = checkpoint_from_v1(raw, S1, V1_S1)
    m = ckpt.config["model"]
    assert (m["n_layer"], m["bert_dim"], m["n_head"], m["embedding_dim"], m["codebook_size"]) == (24, 1024, 16, 512,
                                                                                                   1024)
    assert ckpt.config["data"]["max_seconds"] == 54 and ckpt.config["inference"]["rules"] == "gsv1"
    assert ckpt.epoch == 68
    check_keys(ckpt.models["model"], _shapes(full_models[S1]), S1)

    raw = full_size_raw(S2D)
    assert detect_v1(raw) == V1_S2D
    with pytest.raises(CheckpointError, match="discriminator.*--init-d"):
        checkpoint_from_v1(raw, S2D, V1_S2D)


def test_a_missing_or_misshaped_key_is_named() -> None:
    raw = full_size_raw(S1)
    del raw["weight"]["model.h.layers.3.linear2.bias"]
    raw["weight"]["model.h.layers.0.norm9.weight"] = torch.zeros(512)
    with pytest.raises(CheckpointError, match=r"no AR-VITS S1 name maps to: model\.h\.layers\.0\.norm9\.weight"):
        checkpoint_from_v1(raw, "x.ckpt", V1_S1)
    raw = full_size_raw(S2G)
    raw["weight"]["enc_p.text_embedding.weight"] = torch.zeros(732, 192)
    with pytest.raises(CheckpointError, match="732 symbols"):
        checkpoint_from_v1(raw, "v2.pth", V1_S2G)
    with pytest.raises(KeyMapError, match=r"1 missing: a\.b .*1 unexpected: c .*of another shape: d \(2,\)"):
        check_keys({"c": torch.zeros(1), "d": torch.zeros(2)}, {"a.b": (1,), "d": (3,)}, "f.pt")


# ----------------------------------------------------------------------------- small files


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("gsv1_small")
    s2_cfg = load_config(REPO / "configs/tiny/s2.json", S2Config)
    s2_cfg.model.disc_periods = [2, 3, 5, 7, 11]
    torch.manual_seed(0)
    gen, disc = build_generator(s2_cfg), build_discriminator(s2_cfg)
    gen.quantizer.inited.fill_(1.0)
    s1_cfg = load_config(REPO / "configs/tiny/s1.json", S1Config)
    s1_cfg.model.bert_dim = 32
    s1 = build_s1(s1_cfg)
    return argparse.Namespace(root=root, s2_cfg=s2_cfg, gen=gen, disc=disc, s1_cfg=s1_cfg, s1=s1)


@pytest.mark.parametrize("dtype,enc_q,hparams", [(torch.float16, True, True), (torch.float16, False, True),
                                                 (torch.float32, False, False), (torch.float32, True, False)])
def test_small_v1_s2_files_load_for_inference(tiny, dtype, enc_q, hparams) -> None:
    path = write_small_s2(tiny.root / f"s2_{dtype}_{enc_q}_{hparams}.pth", tiny.s2_cfg, tiny.gen, dtype=dtype,
                          enc_q=enc_q, hparams=hparams)
    loaded = load_s2(path, torch.device("cpu"))  # the inference loader: fp32, weight norm folded
    assert loaded.step == 96 and loaded.codebook_size == 64 and loaded.cfg.model.hidden_channels == 32
    want = tiny.gen.state_dict()
    for key in ("quantizer.embed", "enc_p.text_embedding.weight", "dec.conv_post.weight"):
        got = loaded.generator.state_dict()[key]
        assert got.dtype == torch.float32
        assert torch.equal(got, want[key].to(dtype).float())
    codes = torch.randint(0, 64, (1, 20))
    text = torch.randint(0, 322, (1, 9))
    wav = loaded.generator.decode(codes, text, torch.tensor([9]), torch.rand(1, 1025, 40), noise_scale=0.0)
    assert wav.shape == (1, 1, 20 * 1280) and bool(torch.isfinite(wav).all())


def test_small_v1_s1_and_discriminator_files_load(tiny) -> None:
    path = write_small_s1(tiny.root / "s1.ckpt", tiny.s1_cfg, tiny.s1)
    loaded = load_s1(path, torch.device("cpu"))
    m = loaded.cfg.model
    assert (m.n_layer, m.embedding_dim, m.n_head, m.bert_dim, m.ffn_dim) == (2, 64, 4, 32, 256)
    assert loaded.cfg.inference.rules == "gsv1" and loaded.cfg.data.max_seconds == 20.0
    assert torch.equal(loaded.model.head.weight, tiny.s1.head.weight.half().float())
    d_path = write_small_d(tiny.root / "d.pth", tiny.disc)
    d_state = load_discriminator_state(d_path)
    ours = tiny.disc.state_dict()
    assert d_state.keys() == ours.keys() and all(torch.equal(d_state[k], ours[k]) for k in ours)
    with pytest.raises(CheckpointError, match="discriminator"):
        load_s2(d_path, torch.device("cpu"))


# ----------------------------------------------------------------------------- conversion


def _convert(*argv: object) -> None:
    convert_checkpoint.main(convert_checkpoint.build_parser().parse_args([str(a) for a in argv]))


def _save_ours(path: Path, stage: str, cfg, models: dict, extra: dict | None = None) -> Path:
    from common.checkpoint import Checkpoint
    from common.fileio import atomic_write_with

    ckpt = Checkpoint(stage=stage, step=123, epoch=4, config=to_dict(cfg), symbols_md5=SYMBOLS_MD5,
                      models={k: m.state_dict() for k, m in models.items()}, extra=extra or {})
    atomic_write_with(path, lambda f: torch.save(ckpt.to_dict(), f))
    return path


def _same_checkpoint(a: Path, b: Path) -> None:
    x, y = load_checkpoint(a), load_checkpoint(b)
    assert (x.stage, x.step, x.epoch, x.config, x.symbols_md5) == (y.stage, y.step, y.epoch, y.config, y.symbols_md5)
    assert x.models.keys() == y.models.keys()
    for name in x.models:
        sx, sy = x.models[name], y.models[name]
        assert sx.keys() == sy.keys(), name
        for k in sx:  # bit-identical: same dtype and bytes
            assert sx[k].dtype == sy[k].dtype and torch.equal(sx[k], sy[k]), k


@pytest.mark.parametrize("fp16", [False, True])
def test_ours_to_v1_to_ours_is_bit_identical(tiny, tmp_path: Path, fp16: bool) -> None:
    """--fp32: exact for any weights; default fp16: exact for weights fp16 represents (rounded here first)."""
    gen, disc, s1 = tiny.gen, tiny.disc, tiny.s1
    if fp16:
        for m in (gen, disc, s1):
            m.load_state_dict({k: v.half().to(v.dtype) for k, v in m.state_dict().items()})
    flag = [] if fp16 else ["--fp32"]
    s2_ours = _save_ours(tmp_path / "s2.pt", "s2", tiny.s2_cfg, {"generator": gen, "discriminator": disc})
    _convert("to-v1", s2_ours, "-o", tmp_path / "g.pth", "--d-out", tmp_path / "d.pth", "--any-shape", *flag)
    g_raw = torch.load(tmp_path / "g.pth", weights_only=True)  # a plain dict: no class needed
    assert set(g_raw) == {"weight", "config", "info"} and g_raw["info"] == "4epoch_123iteration"
    assert {v.dtype for v in g_raw["weight"].values()} == {torch.float16 if fp16 else torch.float32}
    assert set(torch.load(tmp_path / "d.pth", weights_only=True)) == {"weight"}
    _convert("to-ours", tmp_path / "g.pth", "--d", tmp_path / "d.pth", "-o", tmp_path / "s2_back.pt")
    _same_checkpoint(s2_ours, tmp_path / "s2_back.pt")

    semantic = {"token_rate": 25.0, "codebook_size": 64, "s2_sha256": "ab" * 32}
    s1_ours = _save_ours(tmp_path / "s1.pt", "s1", tiny.s1_cfg, {"model": s1}, {"semantic": semantic})
    _convert("to-v1", s1_ours, "-o", tmp_path / "s1.ckpt", "--any-shape", *flag)
    _convert("to-ours", tmp_path / "s1.ckpt", "-o", tmp_path / "s1_back.pt")
    _same_checkpoint(s1_ours, tmp_path / "s1_back.pt")
    assert load_checkpoint(tmp_path / "s1_back.pt").extra["semantic"] == semantic


def test_to_v1_refuses_models_gpt_sovits_cannot_build(tiny, tmp_path: Path) -> None:
    s2_ours = _save_ours(tmp_path / "s2.pt", "s2", tiny.s2_cfg, {"generator": tiny.gen})
    with pytest.raises(SystemExit, match=r"GPT-SoVITS v1 cannot build this model \(data\.ssl_dim is 64 \(v1: 768\);"
                                         r".*model\.hidden_channels is 32 \(v1: 192\).*--any-shape"):
        _convert("to-v1", s2_ours, "-o", tmp_path / "g.pth")
    assert not (tmp_path / "g.pth").exists()
    with pytest.raises(SystemExit, match="not a GPT-SoVITS v1 S1/S2 file"):
        _convert("to-ours", s2_ours, "-o", tmp_path / "x.pt")


# ----------------------------------------------------------------------------- safety


class _WritesAFile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "s2G_evil.pth"
    torch.save({"weight": {"enc_p.text_embedding.weight": torch.zeros(1)}, "config": _WritesAFile(marker)}, evil)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(evil)
    assert "refused" in str(err.value) and "system" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SystemExit, match="refused"):
        _convert("to-ours", evil, "-o", tmp_path / "out.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_discriminator_state(evil)
    assert not marker.exists() and not (tmp_path / "out.pt").exists()
    # the file is real: a plain unpickler runs its payload
    with zipfile.ZipFile(evil) as z:
        data = io.BytesIO(z.read(next(n for n in z.namelist() if n.endswith("data.pkl"))))
    unpickler = pickle.Unpickler(data)
    unpickler.persistent_load = lambda pid: pid[1](pid[4])  # an empty storage of the right type and size
    with warnings.catch_warnings():  # the legacy typed storage of the pid
        warnings.simplefilter("ignore")
        unpickler.load()
    assert marker.exists()


def test_no_code_in_the_repo_turns_weights_only_loading_off() -> None:
    needle = re.compile(r"weights_only\s*=\s*" + "False")
    hits = [f"{p.relative_to(REPO)}:{i}" for p in REPO.rglob("*") if p.suffix in (".py", ".md", ".sh")
            and ".git" not in p.parts for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if needle.search(line)]
    assert hits == []
