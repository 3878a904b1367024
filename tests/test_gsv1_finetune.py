"""GPT-SoVITS v1 files through the whole pipeline, on small v1-format files (tests/gsv1_files.py).

1. tts.py straight from v1 files (fp16 S2 export without ``enc_q`` and its config pickled as
   GS's ``utils.HParams``; fp16 S1 with BERT input) with the tiny HuBERT and tiny BERT;
2. the fine-tune path of the README: train_s2.py ``--init`` v1 G ``--init-d`` v1 D (frozen
   codebook, text_low_lr_rate 0.4) -> extract_vq_s1.py with the v1 S2 -> extract_bert_s1.py ->
   gen_filelist_s1.py -> train_s1.py ``--init`` v1 S1 -> tts.py with the fine-tuned pair.

The stages run in process through their ``main`` (as ``python <script>`` runs them after the
imports), except the final tts.py, which runs as a subprocess like a user's shell.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import extract_bert_s1
import extract_vq_s1
import gen_filelist_s1
import s1_infer
import s2_infer
import train_s1
import train_s2
import tts
from common.checkpoint import load_checkpoint
from common.config import S1Config, S2Config, load_config
from s1.model import build_model as build_s1
from s2.model import build_discriminator, build_generator
from tests.gsv1_files import REPO, write_small_d, write_small_s1, write_small_s2
from tests.pipeline import TINY_S1, S2Dump, script_env, write_config
from tests.tiny_bert import make_tiny_bert

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

BERT_DIM = 32
V1_DISC = {"disc_periods": [2, 3, 5, 7, 11]}  # a v1 discriminator has 5 period discriminators


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory, s2_dump: S2Dump):
    """Small v1-format G (with enc_q, fp16, HParams config), its export (no enc_q), D, S1 (BERT 32)."""
    root = tmp_path_factory.mktemp("gsv1_ft")
    s2_cfg = load_config(s2_dump.config, S2Config)
    for k, v in V1_DISC.items():
        setattr(s2_cfg.model, k, v)
    torch.manual_seed(0)
    gen, disc = build_generator(s2_cfg), build_discriminator(s2_cfg)
    with torch.no_grad():  # a "pretrained" codebook: vectors of real frames' scale
        gen.quantizer.embed.normal_()
        gen.quantizer.embed_avg.copy_(gen.quantizer.embed)
        gen.quantizer.cluster_size.fill_(1.0)
        gen.quantizer.inited.fill_(1.0)
    s1_cfg = load_config(TINY_S1, S1Config)
    s1_cfg.model.bert_dim = BERT_DIM
    files = {
        "g": write_small_s2(root / "s2G_small.pth", s2_cfg, gen),
        "g_export": write_small_s2(root / "s2_export.pth", s2_cfg, gen, enc_q=False),
        "d": write_small_d(root / "s2D_small.pth", disc, dtype=torch.float16),
        "s1": write_small_s1(root / "s1_small.ckpt", s1_cfg, build_s1(s1_cfg)),
        "bert": make_tiny_bert(root / "tiny-bert", hidden_size=BERT_DIM),
        "root": root,
    }
    return files


def _ref(s2_dump: S2Dump) -> tuple[Path, str]:
    """The longest utterance of the dump (wav32k) and its text."""
    rows = [line.split("\t") for line in (s2_dump.dump / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    uid, _speaker, _lang, text, *_ = max(rows, key=lambda r: float(r[4]))
    return s2_dump.dump / "wav32k" / f"{uid}.wav", text


def _tts_args(s1: Path, s2: Path, s2_dump: S2Dump, out: Path) -> list[str]:
    ref, ref_text = _ref(s2_dump)
    return ["--s1-ckpt", str(s1), "--s2-ckpt", str(s2), "--ref", str(ref), "--ref-text", ref_text, "--ssl-model",
            str(s2_dump.hubert), "--text", "今天天气很好。", "--seed", "0", "--device", "cpu", "--ref-min-seconds",
            "0.5", "-o", str(out)]


def test_tts_runs_on_v1_files_directly(v1, s2_dump: S2Dump, capsys: pytest.CaptureFixture) -> None:
    out = v1["root"] / "direct.wav"
    code = tts.cli(_tts_args(v1["s1"], v1["g_export"], s2_dump, out) + ["--bert-model", str(v1["bert"])])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    assert "S1 inference rules: gsv1" in err  # set by the converter for v1 S1 weights
    wav, sr = sf.read(out, dtype="float32")
    assert sr == 32000 and wav.ndim == 1 and len(wav) > 0 and np.isfinite(wav).all()
    # the two-step path takes the same files: s1_infer.py (v1 S1 + v1 S2) then s2_infer.py (v1 S2 with enc_q)
    tokens, out2 = v1["root"] / "tokens.npz", v1["root"] / "two_step.wav"
    argv = _tts_args(v1["s1"], v1["g"], s2_dump, tokens) + ["--bert-model", str(v1["bert"])]
    assert s1_infer.cli(argv) == 0, capsys.readouterr().err[-3000:]
    assert s2_infer.cli(["--s2-ckpt", str(v1["g"]), "--tokens", str(tokens), "-o", str(out2)]) == 0, \
        capsys.readouterr().err[-3000:]
    assert sf.info(out2).frames > 0


def test_the_fine_tune_path_from_v1_files(v1, s2_dump: S2Dump, tmp_path: Path) -> None:
    # S2: fine-tune G and D from the v1 files, codebook frozen, text/MRTE at 0.4 x lr
    s2_config = write_config(tmp_path / "s2.json", base=s2_dump.config, model={"freeze_quantizer": True, **V1_DISC},
                             train={"text_low_lr_rate": 0.4, "log_interval": 1, "eval_interval": 1000})
    s2_run = tmp_path / "s2_run"
    train_s2.main(train_s2.parse_args(["-c", str(s2_config), "-m", str(s2_run), "--dump", str(s2_dump.dump),
                                       "--device", "cpu", "--max-steps", "2", "--init", str(v1["g"]),
                                       "--init-d", str(v1["d"])]))
    log = (s2_run / "train.log").read_text(encoding="utf-8")
    assert f"initialised the discriminator from {v1['d']}" in log and f"initialised weights from {v1['g']}" in log
    tuned, start = load_checkpoint(s2_run, stage="s2"), load_checkpoint(v1["g"], stage="s2")
    assert tuned.step == 2
    for k in ("quantizer.embed", "ssl_proj.weight"):  # frozen: the S1 vocabulary is the v1 one
        assert torch.equal(tuned.models["generator"][k], start.models["generator"][k]), k
    moved = "dec.conv_pre.weight"
    assert not torch.equal(tuned.models["generator"][moved], start.models["generator"][moved])
    lrs = sorted(g["lr"] for g in tuned.optimizers["generator"]["param_groups"])
    assert len(lrs) == 2 and lrs[0] == pytest.approx(0.4 * lrs[1])

    # tokens from the v1 S2 file itself, BERT features, S1 lists
    dump = tmp_path / "dump"
    shutil.copytree(s2_dump.dump, dump)
    extract_vq_s1.main(extract_vq_s1.build_parser().parse_args(
        ["--dump", str(dump), "--s2-ckpt", str(v1["g"]), "--device", "cpu", "--num-workers", "0"]))
    s1_config = write_config(tmp_path / "s1.json", base=TINY_S1, model={"bert_dim": BERT_DIM},
                             data={"bert_model": str(v1["bert"])}, train={"log_interval": 1, "eval_interval": 1000},
                             inference={"rules": "gsv1"})
    extract_bert_s1.main(extract_bert_s1.build_parser().parse_args(
        ["--dump", str(dump), "--config", str(s1_config), "--device", "cpu"]))
    gen_filelist_s1.main(gen_filelist_s1.build_parser().parse_args(["--dump", str(dump), "--config", str(s1_config)]))

    # S1: fine-tune from the v1 GPT file
    s1_run = tmp_path / "s1_run"
    train_s1.main(train_s1.build_parser().parse_args(["-c", str(s1_config), "-m", str(s1_run), "--dump", str(dump),
                                                      "--device", "cpu", "--max-steps", "2", "--init", str(v1["s1"])]))
    assert f"initialised weights from {v1['s1']}" in (s1_run / "train.log").read_text(encoding="utf-8")
    tuned_s1, start_s1 = load_checkpoint(s1_run, stage="s1"), load_checkpoint(v1["s1"], stage="s1")
    assert tuned_s1.step == 2
    assert not torch.equal(tuned_s1.models["model"]["bert_proj.weight"], start_s1.models["model"]["bert_proj.weight"])

    # synthesize with the fine-tuned pair (BERT from the S1 checkpoint's config)
    out = tmp_path / "tuned.wav"
    r = subprocess.run([sys.executable, str(REPO / "tts.py"), *_tts_args(s1_run, s2_run, s2_dump, out)],
                       capture_output=True, text=True, env=script_env(), cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    wav, sr = sf.read(out, dtype="float32")
    assert sr == 32000 and len(wav) > 0 and np.isfinite(wav).all()
