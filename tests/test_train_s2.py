"""train_s2.py end to end on the synthetic corpus (tiny config, CPU): it learns, runs under torchrun
(2 ranks, gloo), checkpoints and resumes exactly, refuses unsafe run directories, fine-tunes with --init."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import train_s2
from common.checkpoint import Checkpoint, load_checkpoint
from common.config import S2Config, load_config
from modules.commons import fold_weight_norm
from modules.hifigan import Generator
from s2.model import build_generator
from s2.trainer import LOW_LR_PREFIXES, STEP_KEYS, param_groups
from tests.pipeline import S2_RUN_STEPS, TINY_S2, S2Dump, read_scalars, read_tensorboard, run_train_s2, write_config


def adam_steps(ckpt: Checkpoint, name: str) -> set[int]:
    """AdamW's per-parameter step counters in a checkpoint's optimizer state."""
    return {int(s["step"]) for s in ckpt.optimizers[name]["state"].values()}


def state_shapes(ckpt: Checkpoint, name: str) -> dict:
    return {(i, k): tuple(v.shape) for i, s in ckpt.optimizers[name]["state"].items() for k, v in s.items()}


def test_training_lowers_the_validation_mel_l1(s2_run: Path) -> None:
    """The shared run (tests/conftest.py: 30 steps, validated every 10) learns the corpus.

    Measured on this corpus and configs/tiny/s2.json (CPU): the untrained model gives a
    validation mel L1 of about 5.05; after 10 steps about 3.0, 20 about 1.76, 30 about 1.62,
    then a plateau near 1.5 (the GAN phase) by step 80. We require the untrained value above
    4 (it really starts from noise) and, after 30 steps, below 2.5: under half of it, with
    about 0.9 of margin over what we measured.
    """
    scalars = read_scalars(s2_run)
    val = dict(scalars["val/mel_l1"])
    assert sorted(val) == [0, 10, 20, S2_RUN_STEPS]
    assert val[0] > 4.0
    assert val[S2_RUN_STEPS] < 2.5 and val[S2_RUN_STEPS] < 0.5 * val[0]
    mel = scalars["loss/g/mel"]  # training mel L1, means over 5 steps: ≈ 4.9 at first, ≈ 1.65 at the end
    assert [s for s, _ in mel] == list(range(5, S2_RUN_STEPS + 1, 5))
    assert mel[-1][1] < 0.5 * mel[0][1]
    assert "step 30: validation mel L1" in (s2_run / "train.log").read_text(encoding="utf-8")


def test_torchrun_trains_checkpoints_and_resumes(s2_dump: S2Dump, tmp_path: Path) -> None:
    config = write_config(tmp_path / "s2.json", train={"log_interval": 2, "eval_interval": 4, "keep_ckpts": 0})
    run_dir = tmp_path / "run"
    run_train_s2(s2_dump, run_dir, 4, config=config, nproc=2)
    first = load_checkpoint(run_dir / "ckpt_00000004.pt", stage="s2")
    run_train_s2(s2_dump, run_dir, 8, resume=True, nproc=2)
    last = load_checkpoint(run_dir / "ckpt_00000008.pt", stage="s2")

    assert (first.step, last.step) == (4, 8)
    assert len(first.extra["rng"]) == len(last.extra["rng"]) == 2  # every rank's RNG, for an exact resume
    for name in ("generator", "discriminator"):
        assert adam_steps(first, name) == {4}
        assert adam_steps(last, name) == {8}  # the saved optimizer state went on; a fresh one would say 4
        assert state_shapes(first, name) == state_shapes(last, name)
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert "S2 training on cpu x2" in log and "6 batches per epoch per rank" in log  # 11 batches split over 2
    assert "resuming from" in log and "at step 4 (epoch 0, batch 4)" in log

    board = read_tensorboard(run_dir)
    scalars = board.Tags()["scalars"]
    for tag in (*STEP_KEYS, "lr", "throughput/frames_per_s", "throughput/steps_per_s", "val/mel_l1",
                "val/env_corr", "val/posterior/mel_l1", "val/posterior/env_corr"):  # prior and posterior paths apart
        assert tag in scalars, tag
    assert [e.step for e in board.Scalars("loss/g/mel")] == [2, 4, 6, 8]  # the resumed run continues the count
    assert [e.step for e in board.Scalars("val/mel_l1")] == [0, 4, 8]
    assert {"val/mel_generated", "val/mel_real"} <= set(board.Tags()["images"])
    clips = board.Audio("val/audio_generated")
    assert [c.step for c in clips] == [0, 4, 8] and clips[0].sample_rate == 32000
    assert clips[-1].length_frames > 32000 * 0.5  # a whole validation utterance


def test_the_discriminator_waits_for_disc_start_step(s2_dump: S2Dump, tmp_path: Path) -> None:
    """Before ``disc_start_step`` only the generator learns (no D update, adversarial losses 0); from it, both.
    The offset loss (``c_dc``) is logged at every step."""
    config = write_config(tmp_path / "s2.json", train={"disc_start_step": 2, "c_dc": 10.0, "log_interval": 1,
                                                        "eval_interval": 2, "keep_ckpts": 0})
    run_dir = tmp_path / "run"
    run_train_s2(s2_dump, run_dir, 3, config=config)
    at2, at3 = (load_checkpoint(run_dir / f"ckpt_0000000{n}.pt", stage="s2") for n in (2, 3))
    assert adam_steps(at2, "generator") == {2} and adam_steps(at2, "discriminator") == set()
    assert adam_steps(at3, "generator") == {3} and adam_steps(at3, "discriminator") == {1}
    assert not any(torch.equal(at2.models["discriminator"][k], v) for k, v in at3.models["discriminator"].items()
                   if k.endswith("weight_v") or k.endswith("weight"))
    scalars = read_scalars(run_dir)
    for tag in ("loss/d/total", "loss/g/fm", "loss/g/gen", "grad_norm/d"):
        values = dict(scalars[tag])
        assert values[1] == values[2] == 0.0 and values[3] > 0.0, tag
    assert all(dict(scalars[tag])[1] > 0.0 for tag in ("loss/g/mel", "loss/g/dc"))


def test_resume_with_nothing_to_resume_is_an_error(s2_dump: S2Dump, tmp_path: Path) -> None:
    run_dir = tmp_path / "empty"
    result = run_train_s2(s2_dump, run_dir, 2, resume=True, check=False)
    assert result.returncode != 0
    assert "--resume given but there is no checkpoint to resume from" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(run_dir.glob("ckpt_*.pt"))


def test_a_fresh_run_into_a_run_directory_is_refused(s2_dump: S2Dump, s2_run: Path, tmp_path: Path) -> None:
    run_dir = shutil.copytree(s2_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run_dir.glob("*.*") if p.name != "train.log"}
    args = train_s2.parse_args(["-c", str(TINY_S2), "-m", str(run_dir), "--dump", str(s2_dump.dump),
                                "--device", "cpu", "--max-steps", "1"])
    with pytest.raises(SystemExit, match="already holds checkpoints; pass --resume"):
        train_s2.main(args)
    assert {p.name: p.read_bytes() for p in run_dir.glob("*.*") if p.name != "train.log"} == before


def test_a_frozen_codebook_needs_trained_weights(s2_dump: S2Dump, tmp_path: Path) -> None:
    config = write_config(tmp_path / "frozen.json", model={"freeze_quantizer": True})
    args = train_s2.parse_args(["-c", str(config), "-m", str(tmp_path / "run"), "--dump", str(s2_dump.dump),
                                "--device", "cpu"])
    with pytest.raises(SystemExit, match="freeze_quantizer is true but the codebook was never trained"):
        train_s2.main(args)


def test_init_fine_tunes_with_a_frozen_codebook(s2_dump: S2Dump, s2_run: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "ft.json", model={"freeze_quantizer": True}, train={"text_low_lr_rate": 0.4})
    run_dir = tmp_path / "ft"
    run_train_s2(s2_dump, run_dir, 3, "--init", s2_run, config=config)
    source, tuned = load_checkpoint(s2_run, stage="s2"), load_checkpoint(run_dir, stage="s2")
    assert (source.step, tuned.step, tuned.epoch) == (S2_RUN_STEPS, 3, 0)
    assert adam_steps(tuned, "generator") == {3}  # weights only: the optimizer started fresh
    g0, g1 = source.models["generator"], tuned.models["generator"]
    codebook = ("quantizer.embed", "quantizer.embed_avg", "quantizer.cluster_size", "quantizer.inited",
                "ssl_proj.weight", "ssl_proj.bias")
    for key in codebook:
        assert torch.equal(g0[key], g1[key]), key
    moved = {k.split(".")[0] for k in g0 if not torch.equal(g0[k], g1[k])}
    assert moved == {"enc_p", "enc_q", "flow", "dec", "ref_enc"}
    # the control: without the freeze the codebook moves (EMA) between two checkpoints of the source run
    earlier = load_checkpoint(s2_run / "ckpt_00000020.pt", stage="s2").models["generator"]
    assert not torch.equal(earlier["quantizer.embed"], g0["quantizer.embed"])
    lr = load_config(TINY_S2, S2Config).train.learning_rate
    assert [g["lr"] for g in tuned.optimizers["generator"]["param_groups"]] == pytest.approx([lr, 0.4 * lr])
    assert "initialised weights from" in (run_dir / "train.log").read_text(encoding="utf-8")


def test_text_low_lr_rate_makes_two_param_groups() -> None:
    cfg = load_config(TINY_S2, S2Config)
    net = build_generator(cfg)
    net.freeze_quantizer()
    one = param_groups(net, 1e-3, 1.0)
    base, low = param_groups(net, 1e-3, 0.25)
    assert len(one) == 1 and base["lr"] == 1e-3 and low["lr"] == pytest.approx(2.5e-4)
    named = dict(net.named_parameters())
    low_names = {n for n, p in named.items() if any(p is q for q in low["params"])}
    assert low_names == {n for n in named if n.startswith(LOW_LR_PREFIXES)}
    assert {n.split(".")[1] for n in low_names} == {"text_embedding", "encoder_text", "mrte"}
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert {id(p) for p in base["params"] + low["params"]} == trainable == {id(p) for p in one[0]["params"]}
    assert not named["ssl_proj.weight"].requires_grad and id(named["ssl_proj.weight"]) not in trainable


def test_resume_continues_exactly(s2_dump: S2Dump, tmp_path: Path) -> None:
    """10 steps in one go vs 5 + resume 5: with batch 16 an epoch is 6 batches, so the split falls
    mid-epoch and the end is in epoch 1; lr_decay 0.5 makes the per-epoch decay visible."""
    config = write_config(tmp_path / "s2.json", train={"batch_size": 16, "lr_decay": 0.5, "log_interval": 1,
                                                       "eval_interval": 1000, "keep_ckpts": 0, "num_workers": 0})
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_train_s2(s2_dump, straight, 10, config=config)
    run_train_s2(s2_dump, split, 5, config=config)
    run_train_s2(s2_dump, split, 10, resume=True)
    half = load_checkpoint(split / "ckpt_00000005.pt", stage="s2")
    a, b = load_checkpoint(straight / "ckpt_00000010.pt"), load_checkpoint(split / "ckpt_00000010.pt")
    assert (half.epoch, half.extra["batch_in_epoch"]) == (0, 5)
    assert (a.step, a.epoch, a.extra["batch_in_epoch"]) == (b.step, b.epoch, b.extra["batch_in_epoch"]) == (10, 1, 4)
    lr = load_config(TINY_S2, S2Config).train.learning_rate
    for ckpt in (a, b):
        assert ckpt.optimizers["generator"]["param_groups"][0]["lr"] == pytest.approx(lr * 0.5)
        assert ckpt.schedulers["generator"]["last_epoch"] == 1
        assert adam_steps(ckpt, "generator") == adam_steps(ckpt, "discriminator") == {10}
    for name in ("generator", "discriminator"):
        assert state_shapes(a, name) == state_shapes(b, name)
        for key, value in a.models[name].items():  # same RNG, same batches, same arithmetic: the same weights
            torch.testing.assert_close(b.models[name][key], value, rtol=0, atol=0, msg=f"{name} {key}")
    losses_a, losses_b = read_scalars(straight)["loss/g/total"], read_scalars(split)["loss/g/total"]
    assert [s for s, _ in losses_b] == list(range(1, 11))  # the resumed run goes on at step 6
    assert losses_b == losses_a


def plain_generator(gen: Generator, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The HiFi-GAN generator written plainly (VITS): no shared activations, nothing in place."""
    k = gen.num_kernels
    x = gen.conv_pre(x) + gen.cond(g)
    for i, up in enumerate(gen.ups):
        x = up(F.leaky_relu(x, 0.1))
        outs = []
        for block in gen.resblocks[i * k:(i + 1) * k]:
            y = x
            for c1, c2 in zip(block.convs1, block.convs2):
                y = y + c2(F.leaky_relu(c1(F.leaky_relu(y, 0.1)), 0.1))
            outs.append(y)
        x = sum(outs) / k
    return torch.tanh(gen.conv_post(F.leaky_relu(x, 0.01)))


def test_generator_fast_path_matches_the_plain_formula() -> None:
    """The generator shares each stage's first activation and sums in place (fewer passes over memory,
    bench/s2.py); outputs and the training gradients must be those of the plain formula."""
    torch.manual_seed(0)
    gen = Generator(6, [3, 5, 7], [[1, 3, 5], [1, 3, 5], [1, 3, 5]], [4, 2, 2], 16, [8, 4, 4], gin_channels=5)
    x, g = torch.randn(2, 6, 9, requires_grad=True), torch.randn(2, 5, 1)
    fast, plain = gen(x, g), plain_generator(gen, x, g)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-6)
    grads_fast = torch.autograd.grad(fast.square().sum(), [x, *gen.parameters()])
    grads_plain = torch.autograd.grad(plain.square().sum(), [x, *gen.parameters()])
    for a, b in zip(grads_fast, grads_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    with torch.inference_mode():
        gen.eval()
        fold_weight_norm(gen)
        torch.testing.assert_close(gen(x, g), plain_generator(gen, x, g), rtol=0, atol=1e-6)
