"""Train S1 (the text-to-semantic transformer) on the lists made by gen_filelist_s1.py.

    python train_s1.py -c configs/s1.json -m logs/s1                        # one GPU (or CPU)
    torchrun --nproc_per_node=4 train_s1.py -c configs/s1.json -m logs/s1   # 4 GPUs, DDP
    python train_s1.py -m logs/s1 --resume                                  # continue the run exactly
    python train_s1.py -c configs/s1.json -m logs/s1_ft --init pretrained/s1.pt   # fine-tune
    python train_s1.py -c configs/gsv1/s1.json -m logs/s1_ft \
        --init "pretrained/s1bert25hz-2kh-longer-epoch=68e-step=50232.ckpt"      # fine-tune GPT-SoVITS v1

Multi-node: the same torchrun command on every node with --nnodes, --node_rank and
--rdzv_endpoint. Checkpoints (``ckpt_<step>.pt``), the resolved ``config.json``, ``train.log``
and tensorboard events (``tb/``) go to the run directory; watch with
``tensorboard --logdir logs/s1``. Steps count optimizer updates over the whole run.
"""

from __future__ import annotations

import argparse

from common.training import parse_training_args, training_arg_parser


def main(args: argparse.Namespace) -> None:
    """Train; a bad config, checkpoint, run directory, device or data file exits with its message (no
    traceback), Ctrl-C with the checkpoint to continue from."""
    from common.checkpoint import CheckpointError
    from common.config import ConfigError
    from common.dist import DistError
    from common.training import TrainingError, run_training
    from s1.data import S1DataError
    from s1.trainer import run

    run_training("train_s1.py", run, args, (ConfigError, CheckpointError, S1DataError, TrainingError, DistError))


def build_parser() -> argparse.ArgumentParser:
    return training_arg_parser(__doc__, "s1", "s1_train.tsv, s1_val.tsv and semantic.json")


if __name__ == "__main__":
    main(parse_training_args(build_parser()))
