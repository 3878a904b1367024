"""Convert between GPT-SoVITS v1 files and AR-VITS checkpoints, both ways.

    # v1 -> ours (the pretrained files, or WebUI exports; the kind is recognised by content)
    python convert_checkpoint.py to-ours pretrained/s2G488k.pth --d pretrained/s2D488k.pth -o pretrained/s2_v1.pt
    python convert_checkpoint.py to-ours "pretrained/s1bert25hz-2kh-longer-epoch=68e-step=50232.ckpt" \\
        -o pretrained/s1_v1.pt

    # ours -> v1 (for the GPT-SoVITS WebUI/API: fp16 {"weight", "config", "info"}; D as {"weight"})
    python convert_checkpoint.py to-v1 logs/s2_ft -o exported/voice_s2G.pth --d-out exported/voice_s2D.pth
    python convert_checkpoint.py to-v1 logs/s2_ft -o exported/voice.pth --no-enc-q     # like WebUI exports
    python convert_checkpoint.py to-v1 logs/s1_ft -o exported/voice-e15.ckpt

Every script that takes a checkpoint also takes the v1 files directly, so ``to-ours`` is
only needed to store them in our format. ``to-v1`` writes the config as a plain dict that
also holds our own config: GPT-SoVITS reads the file with its own loaders (the config
needs no pickled class), and ``to-ours`` gives back exactly the checkpoint it came from
(``--fp32`` keeps fp32 weights so the round trip is bit-identical; the default fp16, as
GPT-SoVITS writes, is exact only for weights that fp16 represents). A model GPT-SoVITS v1
cannot build (other hard-coded sizes, e.g. the tiny test configs) is refused unless
``--any-shape``. Files are read with weights-only loading: nothing in them is executed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common.checkpoint import CheckpointError, load_checkpoint, load_discriminator_state, read_torch_file
from common.fileio import atomic_write_with, check_output_path, remove_stale_temps

PROG = "convert_checkpoint.py"


def _shapes(model: torch.nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in model.state_dict().items()}


def to_ours(args: argparse.Namespace) -> list[Path]:
    """A v1 S1 or S2-generator file (+ optional v1 D) -> one AR-VITS checkpoint file at ``args.output``."""
    from common.config import S1Config, S2Config, from_dict, to_dict
    from common.gsv1.configs import discriminator_config
    from common.gsv1.files import V1_S1, V1_S2G, checkpoint_from_v1, detect_v1
    from common.gsv1.keys import check_keys
    from s1.model import build_model as build_s1
    from s2.model import build_discriminator, build_generator

    raw = read_torch_file(args.input)
    kind = detect_v1(raw)
    if kind not in (V1_S1, V1_S2G):
        what = ("a v1 discriminator: pass it with --d next to its generator" if kind
                else "not a GPT-SoVITS v1 S1/S2 file")
        raise CheckpointError(f"{args.input}: {what}")
    ckpt = checkpoint_from_v1(raw, args.input, kind)
    if ckpt.stage == "s2":
        cfg = from_dict(S2Config, ckpt.config)
        if args.d:
            ckpt.models["discriminator"] = load_discriminator_state(args.d)
            for key, value in discriminator_config(ckpt.models["discriminator"], str(args.d)).items():
                setattr(cfg.model, key, value)
            ckpt.config = to_dict(cfg)
        with torch.device("meta"):  # shapes only, no memory
            check_keys(ckpt.models["generator"], _shapes(build_generator(cfg)), str(args.input), optional=("enc_q.",))
            if args.d:
                check_keys(ckpt.models["discriminator"], _shapes(build_discriminator(cfg)), str(args.d))
        if ckpt.extra.get("without_enc_q"):
            print(f"note: {args.input} has no posterior encoder (enc_q): fine for inference; fine-tuning starts it "
                  "from random weights")
    else:
        with torch.device("meta"):
            check_keys(ckpt.models["model"], _shapes(build_s1(from_dict(S1Config, ckpt.config))), str(args.input))
    ckpt.extra["source"]["file"] = str(args.input)
    payload = ckpt.to_dict()
    atomic_write_with(args.output, lambda f: torch.save(payload, f))
    return [Path(args.output)]


def to_v1(args: argparse.Namespace) -> list[Path]:
    """One AR-VITS checkpoint -> v1 file(s): S1 ``.ckpt``, or S2 generator (+ discriminator with --d-out)."""
    from common.gsv1.files import v1_files

    ckpt = load_checkpoint(args.input)
    files = v1_files(ckpt, fp16=not args.fp32, enc_q=not args.no_enc_q, check_v1_shapes=not args.any_shape)
    written = []
    main = files.get("s1") or files["s2g"]
    atomic_write_with(args.output, lambda f: torch.save(main, f))
    written.append(Path(args.output))
    if args.d_out:
        if "s2d" not in files:
            raise CheckpointError(f"{ckpt.path}: --d-out given but this checkpoint holds no discriminator")
        atomic_write_with(args.d_out, lambda f: torch.save(files["s2d"], f))
        written.append(Path(args.d_out))
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("direction", choices=["to-ours", "to-v1"], help="to-ours: GPT-SoVITS v1 -> AR-VITS; "
                   "to-v1: AR-VITS -> GPT-SoVITS v1")
    p.add_argument("input", type=Path, help="to-ours: a v1 S1 .ckpt or S2 generator .pth; to-v1: an AR-VITS "
                   "checkpoint file or run directory (its latest checkpoint)")
    p.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    p.add_argument("--d", type=Path, help="to-ours: the v1 discriminator (s2D488k.pth) to include")
    p.add_argument("--d-out", type=Path, help="to-v1: also write the S2 discriminator to this file")
    p.add_argument("--fp32", action="store_true", help="to-v1: keep fp32 weights (default fp16, as GPT-SoVITS)")
    p.add_argument("--no-enc-q", action="store_true", help="to-v1: leave out the posterior encoder (like WebUI "
                   "exports: smaller, inference only)")
    p.add_argument("--any-shape", action="store_true", help="to-v1: write the v1 layout even for a model "
                   "GPT-SoVITS v1 cannot build (readable by AR-VITS only)")
    return p


def main(args: argparse.Namespace) -> None:
    """Convert; the output paths are checked first, every error is one line, Ctrl-C leaves no partial file."""
    from common.config import ConfigError
    from common.gsv1.keys import KeyMapError
    from common.script import exit_on_interrupt

    try:
        with exit_on_interrupt(PROG, lambda: "no partial file was left (outputs are only put in place when complete)"):
            for out, what in ((args.output, "-o"), (args.d_out, "--d-out")):
                if out is not None:
                    remove_stale_temps(check_output_path(out, what=what).parent, report=print)
            written = to_ours(args) if args.direction == "to-ours" else to_v1(args)
    except (CheckpointError, ConfigError, KeyMapError, OSError) as err:
        raise SystemExit(f"{PROG}: {err}") from None
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main(build_parser().parse_args())
