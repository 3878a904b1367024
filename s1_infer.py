"""S1 inference: text + reference -> semantic tokens, written to a tokens file for s2_infer.py.

    python s1_infer.py --s1-ckpt logs/s1 --s2-ckpt logs/s2 --ref ref.wav --ref-text "参考音频的文字。" \\
        --text "要合成的句子。" -o tokens.npz
    python s1_infer.py --s1-ckpt logs/s1 --s2-ckpt logs/s2 --ref ref.wav --ref-text "..." \\
        --text-file chapter.txt --preset expressive --seed 7 -o chapter.npz
    python s2_infer.py --s2-ckpt logs/s2 --tokens tokens.npz --ref ref.wav -o out.wav

The S2 checkpoint is needed here too: its quantizer turns the reference into prompt tokens
and its config names the HuBERT (``--ssl-model`` overrides). The tokens file (``.npz``)
holds, per text piece, only the NEW tokens and the TARGET phoneme ids, plus metadata
(checkpoints and steps, seed, sampling parameters, token rate, reference, piece texts); see
``infer/tokens_file.py``. s2_infer.py on this file gives the same wav as tts.py with the
same arguments. Exit status as tts.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from infer.cli import (
    SEED_HELP,
    add_device_args,
    add_reference_args,
    add_sampling_args,
    add_text_args,
    log,
    output_path,
    run_script,
    text_to_tokens,
)
from infer.decoder import DEFAULT_BATCH_SIZE
from infer.tokens_file import save_tokens_file


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--s1-ckpt", required=True, help="S1 checkpoint file or run directory (e.g. logs/s1)")
    p.add_argument("--s2-ckpt", required=True, help="S2 checkpoint file or run directory (for prompt tokens)")
    p.add_argument("-o", "--output", required=True, help="output tokens file (.npz)")
    add_text_args(p)
    add_reference_args(p)
    add_sampling_args(p)
    g = p.add_argument_group("generation")
    g.add_argument("--seed", type=int, default=None,
                   help="seed of S1 sampling, stored in the tokens file for the S2 noise (default: 0)" + SEED_HELP)
    g.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"pieces generated together (default: {DEFAULT_BATCH_SIZE})")
    add_device_args(p)
    return p


def main(args: argparse.Namespace) -> None:
    _, _, tf = text_to_tokens(args)
    out = save_tokens_file(output_path(args.output), tf)
    n_tokens = sum(len(t) for t in tf.tokens)
    log.info("wrote %s (%d piece(s), %d tokens = %.2f s)", out, tf.n_pieces, n_tokens,
             n_tokens / tf.meta["token_rate"])


def cli(argv: Sequence[str] | None = None) -> int:
    return run_script(main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(cli())
