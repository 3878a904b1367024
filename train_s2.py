"""Train S2 (the SoVITS decoder + semantic codebook) on the lists made by gen_filelist_s2.py.

    python train_s2.py -c configs/s2.json -m logs/s2                    # one GPU (or CPU)
    torchrun --nproc_per_node=4 train_s2.py -c configs/s2.json -m logs/s2   # 4 GPUs, DDP
    python train_s2.py -m logs/s2 --resume                              # continue the run exactly
    python train_s2.py -c configs/s2_finetune.json -m logs/s2_ft --init pretrained/s2.pt   # fine-tune

Multi-node: the same torchrun command on every node with --nnodes, --node_rank and
--rdzv_endpoint. Checkpoints (``ckpt_<step>.pt``), the resolved ``config.json``, ``train.log``
and tensorboard events (``tb/``) go to the run directory; watch with
``tensorboard --logdir logs/s2``.
"""

from __future__ import annotations

import argparse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", help="S2 JSON config (required unless --resume, which reuses the run's config)")
    p.add_argument("-m", "--model-dir", default="logs/s2", help="run directory for checkpoints and logs")
    p.add_argument("--dump", default="dump", help="data directory with s2_train.list, s2_val.list, wav32k/, ssl/")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the run directory")
    p.add_argument("--init", help="fine-tune: start from this S2 checkpoint's weights (file or run directory)")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps in total (0: config)")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA if available)")
    p.add_argument("--dist-timeout", type=float, default=600.0,
                   help="seconds before a hung collective or process-group start fails")
    args = p.parse_args(argv)
    if args.resume and args.init:
        p.error("--resume and --init exclude each other")
    return args


def main(args: argparse.Namespace) -> None:
    from s2.trainer import run

    run(args)


if __name__ == "__main__":
    main(parse_args())
