"""Speaker IDs: the table, S1/S2 speaker embeddings, tts.py --speaker, and S1 training with every
issue-15 option (RoPE, speakers, concatenation) through save, resume, --init and inference loading."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import s2_infer
import tts
from common.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from common.config import S1Config, S2Config, from_dict, load_config, to_dict
from common.dist import DistInfo
from common.speakers import SpeakerError, SpeakerTable, init_state, speaker_row
from infer.loading import load_s1, load_s2
from s1.concat import JOINS_NAME, read_joins
from s1.model import build_model
from s1.trainer import S1Trainer
from s2.model import build_generator
from tests.pipeline import S2Dump, run_train_s2, write_config
from tests.test_infer import TinyRuns, build_tiny_runs
from tests.test_s1_concat import make_dump
from train_s1 import build_parser

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

REPO = Path(__file__).resolve().parents[1]
NAMES = ["ann", "bob"]


def test_table_lookup_and_errors() -> None:
    table = SpeakerTable(("ann", "bob"))
    assert table.index("bob") == 1 and speaker_row(None, None, "x.pt") is None
    with pytest.raises(SpeakerError, match="unknown speaker 'zed'; known speakers: ann, bob"):
        speaker_row(table, "zed", "x.pt")
    with pytest.raises(SpeakerError, match="x.pt was trained with speakers; pass --speaker NAME"):
        speaker_row(table, None, "x.pt")
    with pytest.raises(SpeakerError, match="set model.n_speakers to at least 2"):
        table.check_fits(1, "c.json")
    state = {"speaker_embedding.weight": torch.zeros(2, 3), "head.weight": torch.ones(1)}
    kept, note = init_state(state, {"speakers": ["ann", "bob"]}, table, "a.pt")
    assert kept is state and note is None
    fresh, note = init_state(state, {}, table, "a.pt")
    assert "speaker_embedding.weight" not in fresh and "starts fresh" in note


def test_s2_speaker_embedding_changes_the_audio() -> None:
    cfg = load_config(REPO / "configs/tiny/s2.json", S2Config)
    cfg = from_dict(S2Config, to_dict(cfg) | {"model": to_dict(cfg)["model"] | {"n_speakers": 2}})
    torch.manual_seed(0)
    gen = build_generator(cfg).eval()
    with torch.no_grad():
        gen.speaker_embedding.weight.mul_(10)
    codes, text = torch.randint(0, 64, (1, 12)), torch.randint(1, 50, (1, 6))
    spec = torch.randn(1, cfg.data.spec_channels, 30).abs()
    styles = [gen.style(spec, None, torch.tensor([s])) for s in (0, 1)]  # [1, gin, 1]
    assert torch.allclose(styles[1] - styles[0], (gen.speaker_embedding.weight[1] - gen.speaker_embedding.weight[0])
                          [None, :, None], atol=1e-5)
    # the style conditions MRTE and the flow: the prior path's latent (the decoder's input) changes
    latents = [gen.prior_latent(codes, text, torch.tensor([6]), ge, noise_scale=0.0)[0] for ge in styles]
    assert (latents[0] - latents[1]).abs().max() > 1e-2
    with pytest.raises(ValueError, match="outside"):
        gen.decode(codes, text, torch.tensor([6]), spec, speakers=torch.tensor([2]))
    again = build_generator(cfg).eval()
    again.load_state_dict(gen.state_dict())
    torch.testing.assert_close(again.decode(codes, text, torch.tensor([6]), spec, noise_scale=0.0,
                                            speakers=torch.tensor([1])),
                               gen.decode(codes, text, torch.tensor([6]), spec, noise_scale=0.0,
                                          speakers=torch.tensor([1])))


@pytest.fixture(scope="module")
def speaker_runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    """test_infer's tiny random runs, plus S1/S2 checkpoints with a 2-speaker table (strong embeddings)."""
    runs = build_tiny_runs(tmp_path_factory.mktemp("speaker_runs"))
    for stage, run, key in (("s1", runs.s1, "model"), ("s2", runs.s2, "generator")):
        ckpt = load_checkpoint(run, stage=stage)
        cfg = ckpt.config
        cfg["model"]["n_speakers"] = 2
        torch.manual_seed(1)
        if stage == "s1":
            model = build_model(from_dict(S1Config, cfg))
        else:
            model = build_generator(from_dict(S2Config, cfg))
        state = model.state_dict() | {k: v for k, v in ckpt.models[key].items() if "speaker" not in k}
        state["speaker_embedding.weight"] = state["speaker_embedding.weight"] * 10
        save_checkpoint(run.parent / f"{stage}_spk", Checkpoint(
            stage=stage, step=ckpt.step, epoch=1, config=cfg, symbols_md5=ckpt.symbols_md5, models={key: state},
            extra=ckpt.extra | {"speakers": NAMES}))
    return runs


def _tts(runs: TinyRuns, out: Path, *extra: str, s1: str = "s1_spk", s2: str = "s2_spk") -> int:
    return tts.cli(["--s1-ckpt", str(runs.root / s1), "--s2-ckpt", str(runs.root / s2), "--ref", str(runs.ref),
                    "--ref-text", "参考音频的文字", "--device", "cpu", "-o", str(out), "--text", "你好。",
                    "--max-tokens-per-phoneme", "2", *extra])


def test_tts_speaker_selects_the_voice_and_names_unknown_ones(speaker_runs: TinyRuns, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    assert _tts(speaker_runs, tmp_path / "ann.wav", "--speaker", "ann") == 0
    assert _tts(speaker_runs, tmp_path / "bob.wav", "--speaker", "bob") == 0
    a, b = sf.read(tmp_path / "ann.wav")[0], sf.read(tmp_path / "bob.wav")[0]
    assert len(a) and not (len(a) == len(b) and np.allclose(a, b))
    assert _tts(speaker_runs, tmp_path / "bob2.wav", "--speaker", "bob", s1="s1") == 0  # only S2 has speakers
    for extra, message in ((["--speaker", "zed"], "unknown speaker 'zed'; known speakers: ann, bob"),
                           ([], "was trained with speakers; pass --speaker NAME (known speakers: ann, bob)")):
        capsys.readouterr()
        assert _tts(speaker_runs, tmp_path / "x.wav", *extra) == 2
        err = capsys.readouterr().err
        assert message in err.strip().splitlines()[-1] and "Traceback" not in err
    assert _tts(speaker_runs, tmp_path / "x.wav", "--speaker", "ann", s1="s1", s2="s2") == 2
    assert "neither" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()
    resynth = ["--s2-ckpt", str(speaker_runs.root / "s2_spk"), "--resynth", str(speaker_runs.ref), "--text",
               "参考音频的文字。", "--ssl-model", str(speaker_runs.hubert), "--device", "cpu",
               "-o", str(tmp_path / "r.wav")]
    assert s2_infer.cli(resynth) == 2 and "pass --speaker NAME" in capsys.readouterr().err
    assert s2_infer.cli([*resynth, "--speaker", "bob"]) == 0 and (tmp_path / "r.wav").is_file()


def _config(tmp_path: Path, **model: object) -> Path:
    cfg = json.loads((REPO / "configs/tiny/s1.json").read_text(encoding="utf-8"))
    cfg["model"].update(model)
    cfg["data"]["concat_max_seconds"] = 6.0
    cfg["train"].update(max_batch_tokens=2000, log_interval=1, eval_interval=1000, keep_ckpts=0)
    path = tmp_path / f"s1_{len(model)}.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def _train(dump: Path, run: Path, steps: int, *extra: str) -> S1Trainer:
    args = build_parser().parse_args(["-m", str(run), "--dump", str(dump), "--device", "cpu",
                                      "--max-steps", str(steps), *extra])
    trainer = S1Trainer(args, DistInfo(0, 0, 1, torch.device("cpu")))
    trainer.fit()
    return trainer


def test_s1_training_with_every_option_saves_resumes_and_loads(tmp_path: Path) -> None:
    import gen_filelist_s1

    dump = tmp_path / "dump"
    make_dump(dump)
    config = _config(tmp_path, position="rope", n_speakers=3)
    gen_filelist_s1.main(gen_filelist_s1.build_parser().parse_args(
        ["--dump", str(dump), "--config", str(config), "--val-items", "4"]))
    assert read_joins(dump / JOINS_NAME)  # the config's concat_max_seconds joined items
    run = tmp_path / "run"
    _train(dump, run, 2, "-c", str(config)).board.close()
    ckpt = load_checkpoint(run, stage="s1")
    assert ckpt.extra["speakers"] == ["ann", "bob"] and ckpt.config["model"]["position"] == "rope"
    assert ckpt.models["model"]["speaker_embedding.weight"].shape[0] == 3
    resumed = _train(dump, run, 4, "--resume")
    resumed.board.close()
    assert resumed.step == 4 and resumed.speakers.names == ("ann", "bob")
    loaded = load_s1(run, torch.device("cpu"))
    assert loaded.speakers == SpeakerTable(("ann", "bob")) and loaded.model.rope

    # --init from a run without speakers: the speaker embedding starts fresh, with one line saying so
    plain = tmp_path / "plain"
    _train(dump, plain, 1, "-c", str(_config(tmp_path, position="rope"))).board.close()
    init = S1Trainer(build_parser().parse_args(["-m", str(tmp_path / "init"), "--dump", str(dump), "--device",
                                                 "cpu", "-c", str(config), "--init", str(plain)]),
                     DistInfo(0, 0, 1, torch.device("cpu")))
    init.board.close()
    log = (tmp_path / "init" / "train.log").read_text(encoding="utf-8")
    assert log.count("the speaker embedding starts fresh") == 1
    source = load_checkpoint(plain, stage="s1").models["model"]
    assert torch.equal(init.raw.state_dict()["head.weight"], source["head.weight"])

    # resuming on a dump whose manifest names other speakers is refused
    manifest = dump / "manifest.tsv"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace("\tbob\t", "\tcat\t"), encoding="utf-8")
    with pytest.raises(Exception, match="another speaker table"):
        _train(dump, run, 5, "--resume")
    assert asdict(loaded.cfg.model)["n_speakers"] == 3


def test_s2_training_with_speakers_saves_resumes_and_loads(s2_dump: S2Dump, s2_run: Path, tmp_path: Path) -> None:
    """The pipeline's 4-speaker dump: the table goes into the checkpoint, --resume continues with it,
    inference loads it, and --init from the shared run (no speakers) starts the embedding fresh."""
    config = write_config(tmp_path / "s2.json", model={"n_speakers": 4},
                          train={"eval_interval": 1000, "log_interval": 1, "keep_ckpts": 0})
    run = tmp_path / "run"
    run_train_s2(s2_dump, run, 1, config=config)
    run_train_s2(s2_dump, run, 2, resume=True)
    ckpt = load_checkpoint(run, stage="s2")
    assert ckpt.step == 2 and ckpt.extra["speakers"] == ["spk0", "spk1", "spk2", "spk3"]
    assert ckpt.models["generator"]["speaker_embedding.weight"].shape[0] == 4
    assert load_s2(run, torch.device("cpu")).speakers.names == ("spk0", "spk1", "spk2", "spk3")
    init = tmp_path / "init"
    run_train_s2(s2_dump, init, 1, "--init", s2_run, config=config)
    log = (init / "train.log").read_text(encoding="utf-8")
    assert log.count("the speaker embedding starts fresh") == 1
