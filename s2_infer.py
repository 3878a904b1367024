"""S2 inference: tokens files (from s1_infer.py) -> wav, or resynthesis of a recording through S2 alone.

    python s2_infer.py --s2-ckpt logs/s2 --tokens tokens.npz --ref ref.wav -o out.wav
    python s2_infer.py --s2-ckpt logs/s2 --tokens a.npz b.npz c.npz --ref ref.wav -o out_dir/
    python s2_infer.py --s2-ckpt logs/s2 --resynth input.wav --text "input 的文字。" --ref ref.wav -o resynth.wav

Tokens mode: every piece of a tokens file is decoded in one batch (``--batch-size`` pieces at
a time) and the pieces are joined with short pauses. The seed defaults to the one stored in
the file and the reference to the one recorded there (the same window of it is used), so
the result is the wav tts.py gives for the same arguments. With several tokens files ``-o``
is a directory and each file gives ``<name>.wav``.

Resynthesis (a check of S2 alone): HuBERT features of ``--resynth`` -> S2 quantizer ->
tokens -> decode with the phonemes of ``--text`` (its transcript; S2 needs phonemes) and the
style of ``--ref`` (default: the input itself). The output has the input's length to within
one token (40 ms at 25 Hz).

Exit status: 0 on success, 2 for bad input (missing or invalid tokens file, reference,
checkpoint, text).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from common.audio import load_audio, save_wav
from infer.cli import (
    add_decode_args,
    add_reference_args,
    log,
    output_path,
    reference_options,
    run_script,
)
from infer.decoder import (
    DEFAULT_BATCH_SIZE,
    DecodeOptions,
    decode_pieces,
    decode_tokens_file,
    join_pieces,
    to_sample_rate,
)
from infer.errors import InferenceError
from infer.loading import LoadedS2, load_s2, pick_device
from infer.reference import audio_tokens, load_reference, reference_spectrogram
from infer.text_input import phonemize
from infer.tokens_file import TokensFile, load_tokens_file
from modules.ssl import load_ssl_model


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--s2-ckpt", required=True, help="S2 checkpoint file or run directory (e.g. logs/s2)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokens", nargs="+", default=None, help="tokens file(s) written by s1_infer.py")
    src.add_argument("--resynth", default=None, help="a recording to resynthesize through S2 (needs --text)")
    p.add_argument("-o", "--output", required=True,
                   help="output wav; a directory when several --tokens files are given")
    p.add_argument("--text", default=None, help="--resynth only: the transcript of the recording")
    p.add_argument("--lang", default="zh", help="--resynth only: language of --text: zh, en, ja (default: zh)")
    add_reference_args(p, required=False)
    add_decode_args(p, seed_help="seed of the S2 noise (default: the seed in the tokens file; 0 for --resynth)")
    p.set_defaults(batch_size=None)
    p.add_argument("--speaker", default=None,
                   help="speaker name, for an S2 checkpoint trained with speakers (default: the tokens file's)")
    p.add_argument("--device", default=None, help="cuda, cuda:N, mps or cpu (default: the best available)")
    p.add_argument("--ssl-model", default=None,
                   help="--resynth only: HuBERT folder or hub id (default: data.ssl_model of the S2 config)")
    return p


def _options(args: argparse.Namespace, seed: int, file_batch_size: int | None) -> DecodeOptions:
    """Decode options: ``--batch-size``, else the tokens file's (as tts.py would have used), else the default."""
    return DecodeOptions(seed=seed, noise_scale=args.noise_scale, pause_seconds=args.pause,
                         batch_size=args.batch_size or file_batch_size or DEFAULT_BATCH_SIZE,
                         precision=args.s2_precision, speaker=args.speaker)


def _output_paths(args: argparse.Namespace) -> list[Path]:
    if len(args.tokens) == 1:
        return [output_path(args.output)]
    out_dir = Path(args.output)
    if out_dir.suffix.lower() == ".wav" or out_dir.is_file():
        raise InferenceError(f"-o {out_dir}: with {len(args.tokens)} tokens files -o must be a directory")
    names = [Path(t).stem for t in args.tokens]
    if len(set(names)) != len(names):
        raise InferenceError("tokens files with the same name would write the same wav: "
                             + ", ".join(str(t) for t in args.tokens))
    out_dir.mkdir(parents=True, exist_ok=True)
    return [out_dir / f"{n}.wav" for n in names]


def _save(path: Path, wav, s2: LoadedS2, rate: int | None) -> None:
    rate = rate or s2.sample_rate
    save_wav(path, to_sample_rate(wav, s2.sample_rate, rate), rate)
    log.info("wrote %s (%.2f s at %d Hz)", path, len(wav) / s2.sample_rate, rate)


def decode_files(args: argparse.Namespace) -> None:
    files: list[TokensFile] = [load_tokens_file(t) for t in args.tokens]  # validate all before loading S2
    outputs = _output_paths(args)
    s2 = load_s2(args.s2_ckpt, pick_device(args.device))
    spectrograms = {}
    for path, tf, out in zip(args.tokens, files, outputs):
        ref_path = args.ref or tf.meta.get("reference")
        if not ref_path:
            raise InferenceError(f"{path}: no reference recorded in the tokens file; pass --ref")
        opts = reference_options(args, tf.meta.get("reference_options"))
        key = (str(ref_path), opts)
        if key not in spectrograms:
            ref = load_reference(ref_path, s2.sample_rate, opts)
            spectrograms[key] = reference_spectrogram(ref.wav, s2)
        seed = args.seed if args.seed is not None else int(tf.meta["seed"])
        wav = decode_tokens_file(s2, tf, spectrograms[key], _options(args, seed, tf.meta.get("batch_size")))
        _save(out, wav, s2, args.sample_rate)


def resynthesize(args: argparse.Namespace) -> None:
    if not args.text:
        raise InferenceError("--resynth needs --text, the transcript of the recording (S2 decodes with phonemes)")
    piece = phonemize(args.text, args.lang, f"--text {args.text!r}")
    s2 = load_s2(args.s2_ckpt, pick_device(args.device))
    ssl = load_ssl_model(args.ssl_model or s2.cfg.data.ssl_model, s2.device)
    wav = load_audio(args.resynth, s2.sample_rate)
    tokens = audio_tokens(wav, ssl, s2)
    if tokens.numel() == 0:
        raise InferenceError(f"{args.resynth}: too short to give a single token")
    ref = load_reference(args.ref or args.resynth, s2.sample_rate, reference_options(args))
    opts = _options(args, args.seed if args.seed is not None else 0, None)
    pieces = decode_pieces(s2, [tokens], [torch.tensor(piece.ids)], reference_spectrogram(ref.wav, s2), opts)
    _save(output_path(args.output), join_pieces(pieces, s2.sample_rate, 0.0), s2, args.sample_rate)


def main(args: argparse.Namespace) -> None:
    if args.tokens:
        if args.text is not None:
            raise InferenceError("--text is for --resynth; the tokens file already holds the phonemes")
        decode_files(args)
    else:
        resynthesize(args)


def cli(argv: Sequence[str] | None = None) -> int:
    return run_script(main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(cli())
