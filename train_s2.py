"""Train S2 (the SoVITS decoder + semantic codebook) on the lists made by gen_filelist_s2.py.

    python train_s2.py -c configs/s2.json -m logs/s2                        # one GPU (or CPU)
    torchrun --nproc_per_node=4 train_s2.py -c configs/s2.json -m logs/s2   # 4 GPUs, DDP
    python train_s2.py -m logs/s2 --resume                                  # continue the run exactly
    python train_s2.py -c my_finetune.json -m logs/s2_ft --init pretrained/s2.pt    # fine-tune (weights only)
    python train_s2.py -c configs/gsv1/s2.json -m logs/s2_ft --init pretrained/s2G488k.pth \
        --init-d pretrained/s2D488k.pth                          # fine-tune GPT-SoVITS v1 (G and D)

Multi-node: the same torchrun command on every node with --nnodes, --node_rank and
--rdzv_endpoint. Checkpoints (``ckpt_<step>.pt``), the resolved ``config.json``, ``train.log``
and tensorboard events (``tb/``) go to the run directory; watch with
``tensorboard --logdir logs/s2``. Steps count optimizer updates over the whole run; a fresh
run logs the untrained validation mel L1 at step 0. For fine-tuning, copy configs/s2.json and set
``model.freeze_quantizer`` to true so the codebook (the S1 token vocabulary) stays fixed, and
optionally ``train.text_low_lr_rate`` (0.4 in GPT-SoVITS) for the text encoder and MRTE.
"""

from __future__ import annotations

import argparse

from common.training import parse_training_args, training_arg_parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = training_arg_parser(__doc__, "s2", "s2_train.list, s2_val.list, wav32k/ and ssl/")
    p.add_argument("--init-d", help="with --init: the discriminator to start from (GPT-SoVITS v1 s2D488k.pth, or an "
                   "S2 checkpoint/run directory); default: the --init checkpoint's own, else random")
    args = parse_training_args(p, argv)
    if args.init_d and not args.init:
        p.error("--init-d needs --init (the generator)")
    return args


def main(args: argparse.Namespace) -> None:
    """Train (s2/trainer.py turns the stage's own errors into one line); the run directory, device and
    Ctrl-C are handled as in train_s1.py."""
    from common.training import run_training
    from s2.trainer import run

    run_training("train_s2.py", run, args)


if __name__ == "__main__":
    main(parse_args())
