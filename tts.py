"""Text to speech with trained S1 and S2 checkpoints, in one step.

    python tts.py --s1-ckpt logs/s1 --s2-ckpt logs/s2 --ref ref.wav --ref-text "参考音频的文字。" \\
        --text "要合成的句子。" -o out.wav
    python tts.py --s1-ckpt logs/s1 --s2-ckpt logs/s2 --ref ref.wav --ref-text "..." \\
        --text-file chapter.txt --preset stable --seed 3 --device cuda --sample-rate 24000 -o chapter.wav

Checkpoint arguments take a file or a run directory (its latest checkpoint). Long text is
split at punctuation, then by length; the pieces are generated as one batch by S1, decoded
as one batch by S2 and joined with short pauses. The reference (3-10 s works best) gives the
voice: with its transcript it is also the prompt that S1 continues; a reference outside
3-10 s is cut or used whole for style only, with a message. The same arguments and seed give
the same wav as ``s1_infer.py`` followed by ``s2_infer.py``.

Streaming (``--stream``): audio is written while S1 is still generating — each piece is
generated alone and its audio decoded in growing windows (``infer/stream.py``); the first
chunk is ``--first-chunk`` tokens (0.4 s at 25 Hz by default). The wav grows on disk as it
is written (a player can follow it) and is a valid wav at the end; ``-o -`` writes raw 16-bit
mono PCM to stdout instead (``--raw`` writes raw PCM to a file)::

    python tts.py --s1-ckpt logs/s1 --s2-ckpt logs/s2 --ref ref.wav --ref-text "..." --text "..." \\
        --stream -o - | ffplay -f s16le -ar 32000 -ac 1 -nodisp -

The streamed audio approximates the one-shot wav (same tokens; S2's attention sees only the
tokens known so far, see ``bench/stream.py`` for the measured difference).

Exit status: 0 on success, 2 for bad input (text without anything pronounceable, unreadable
or silent reference, wrong or missing checkpoint), 1 if S1 produced nothing for a piece.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

from common.audio import save_wav
from infer.cli import (
    add_decode_args,
    add_device_args,
    add_reference_args,
    add_sampling_args,
    add_text_args,
    decode_options,
    log,
    output_path,
    prepare,
    run_script,
    text_to_tokens,
)
from infer.decoder import decode_tokens_file, to_sample_rate
from infer.errors import InferenceError
from infer.reference import reference_spectrogram
from infer.stream import StreamOptions
from infer.wav_stream import StreamWriter


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--s1-ckpt", required=True, help="S1 checkpoint file or run directory (e.g. logs/s1)")
    p.add_argument("--s2-ckpt", required=True, help="S2 checkpoint file or run directory (e.g. logs/s2)")
    p.add_argument("-o", "--output", required=True, help="output wav (16-bit PCM); with --stream, '-' writes raw "
                                                         "PCM to stdout")
    add_text_args(p)
    add_reference_args(p)
    add_sampling_args(p)
    add_decode_args(p, seed_help="seed of S1 sampling and S2 noise (default: 0)")
    add_device_args(p)
    g = p.add_argument_group("streaming")
    g.add_argument("--stream", action="store_true", help="write audio while it is being generated")
    g.add_argument("--raw", action="store_true", help="with --stream: raw 16-bit little-endian mono PCM, no header")
    g.add_argument("--first-chunk", type=int, default=StreamOptions.first_chunk_tokens,
                   help=f"with --stream: tokens in the first audio chunk (default: {StreamOptions.first_chunk_tokens}"
                        f"; later chunks: {StreamOptions.chunk_tokens})")
    return p


def stream(args: argparse.Namespace) -> None:
    """--stream: chunks to a growing wav (or raw PCM) as S1 produces tokens."""
    prep = prepare(args)
    engine = prep.engine
    spec = reference_spectrogram(prep.ref.wav, engine.s2)
    opts = replace(StreamOptions(), first_chunk_tokens=args.first_chunk)
    chunks = engine.stream(prep.pieces, prep.prompt, prep.gen_opts, spec, decode_options(args, prep.gen_opts.seed),
                           opts)
    out = "-" if args.output == "-" else output_path(args.output)
    writer = StreamWriter(out, engine.s2.sample_rate, raw=args.raw, out_rate=args.sample_rate)
    try:
        for chunk in chunks:
            writer.write(chunk)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    log.info("wrote %s (%.2f s at %d Hz, %d piece(s), streamed)", "stdout" if out == "-" else out, writer.seconds,
             writer.rate, len(prep.pieces))


def main(args: argparse.Namespace) -> None:
    if args.stream:
        return stream(args)
    if args.output == "-" or args.raw:
        raise InferenceError("-o - and --raw are for --stream")
    engine, ref, tf = text_to_tokens(args)
    spec = reference_spectrogram(ref.wav, engine.s2)
    wav = decode_tokens_file(engine.s2, tf, spec, decode_options(args, seed=tf.meta["seed"]))
    rate = args.sample_rate or engine.s2.sample_rate
    out = output_path(args.output)
    save_wav(out, to_sample_rate(wav, engine.s2.sample_rate, rate), rate)
    log.info("wrote %s (%.2f s at %d Hz, %d piece(s))", out, len(wav) / engine.s2.sample_rate, rate, tf.n_pieces)


def cli(argv: Sequence[str] | None = None) -> int:
    return run_script(main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(cli())
