"""Streaming synthesis: time to first audio and real-time factor, beside the one-shot time (fp32, CPU by default).

    python -m bench.stream                       # full size, 10 s sentence, CPU
    python -m bench.stream --threads 2 --first-chunk 10 --lively

Full-size models (configs/s1.json, configs/s2.json), random weights, loaded as tts.py loads
them (``bench.tts.build_engine``). One piece of ``--n-phones`` random phonemes after a prompt
of ``--prompt-phones`` phonemes and ``--prompt-tokens`` tokens; EOS is blocked so that S1
makes ``--seconds`` x 25 tokens (250 for 10 s). Prints one JSON object:

- ``one_shot``: ``TTSEngine.generate`` then ``decode_tokens_file`` (what tts.py does):
  ``s1_s``, ``s2_s``, ``total_s``, ``rtf`` = total / audio seconds.
- ``stream``: ``TTSEngine.stream`` (what ``tts.py --stream`` does) with a first chunk of
  ``--first-chunk`` tokens: ``first_audio_s`` (call to first chunk), ``total_s``, ``rtf``,
  ``chunks``, ``first_audio_fraction`` = first_audio_s / one-shot total_s (target <= 0.25),
  and ``snr_db`` of the joined stream against the one-shot wav (same tokens, same noise).
- ``snr_lively_db`` (``--lively``): the same SNR with S2's flow and generator convolutions
  re-drawn with fan-in scaled weights. At the default initialisation (HiFi-GAN's N(0, 0.01)
  weights, a zero flow) the random S2 puts out a nearly constant waveform whatever its tokens,
  so ``snr_db`` there says little; ``content_snr_db`` (the one-shot wav against the wav of other
  tokens) shows how much the output depends on the tokens at all.
- ``machine``: CPU model, logical CPUs, load average before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.machine import load_now, machine_facts
from bench.tts import build_engine
from infer.decoder import DecodeOptions, decode_pieces, decode_tokens_file
from infer.engine import GenerationOptions, Prompt, TTSEngine
from infer.reference import reference_spectrogram
from infer.stream import StreamOptions
from infer.text_input import TextPiece
from s1.sampling import PRESETS
from text.symbols import SYMBOLS

ROOT = Path(__file__).resolve().parents[1]


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    """10 log10(|ref|² / |ref - x|²) over the whole signal."""
    err = float(np.sum((ref.astype(np.float64) - x) ** 2))
    return float(10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / max(err, 1e-30)))


def lively(engine: TTSEngine, seed: int = 0) -> None:
    """Re-draw S2's flow and generator conv weights as N(0, 1/fan_in): random weights that carry the signal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in engine.s2.generator.named_modules():
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)) and name.startswith(("dec", "flow")):
                w = m.weight
                fan_in = w[0].numel() if isinstance(m, nn.Conv1d) else w.size(0) * w.size(2) // m.stride[0]
                w.copy_(torch.randn(w.shape, generator=g) * fan_in ** -0.5)


def run(engine: TTSEngine, piece: TextPiece, prompt: Prompt, gen: GenerationOptions, spec: torch.Tensor,
        dec: DecodeOptions, sopts: StreamOptions) -> tuple[dict, dict, np.ndarray, np.ndarray, list[torch.Tensor]]:
    """One-shot and streamed synthesis of ``piece``: (one-shot figures, stream figures, wavs, tokens)."""
    t0 = time.perf_counter()
    tf = engine.generate([piece], prompt, gen)
    t1 = time.perf_counter()
    one = decode_tokens_file(engine.s2, tf, spec, dec)
    t2 = time.perf_counter()
    audio_s = len(one) / engine.s2.sample_rate
    one_shot = {"s1_s": t1 - t0, "s2_s": t2 - t1, "total_s": t2 - t0, "rtf": (t2 - t0) / audio_s}
    chunks: list[np.ndarray] = []
    first = None
    t3 = time.perf_counter()
    for chunk in engine.stream([piece], prompt, gen, spec, dec, sopts):
        if first is None:
            first = time.perf_counter() - t3
        chunks.append(chunk)
    total = time.perf_counter() - t3
    streamed = np.concatenate(chunks)
    stream = {"first_chunk_tokens": sopts.first_chunk_tokens, "chunk_tokens": sopts.chunk_tokens,
              "lookahead_tokens": sopts.lookahead_tokens, "first_audio_s": first, "total_s": total,
              "rtf": total / audio_s, "chunks": len(chunks), "first_audio_fraction": first / one_shot["total_s"],
              "snr_db": snr_db(one, streamed) if len(streamed) == len(one) else None}
    return one_shot, stream, one, streamed, [torch.from_numpy(t) for t in tf.tokens]


def main(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    logging.getLogger("infer").setLevel(logging.ERROR)
    load_before = [round(x, 2) for x in os.getloadavg()]
    machine = machine_facts(args.device)
    device = torch.device(args.device)
    engine = build_engine(Path(args.s1_config), Path(args.s2_config), device, with_hubert=False)
    s2 = engine.s2
    g = torch.Generator().manual_seed(0)
    n_tokens = round(args.seconds * s2.token_rate)
    piece = TextPiece(text="(random phonemes)", phones=[],
                      ids=torch.randint(1, len(SYMBOLS), (args.n_phones,), generator=g).tolist())
    prompt = Prompt(text="(random prompt)", phone_ids=torch.randint(1, len(SYMBOLS), (args.prompt_phones,),
                                                                     generator=g).tolist(),
                    tokens=torch.randint(0, s2.codebook_size, (args.prompt_tokens,), generator=g))
    gen = GenerationOptions(sampling=PRESETS["gshead"], seed=0, min_new_tokens=n_tokens - 1,
                            max_tokens_per_phoneme=1e-3)  # cap = n_tokens, EOS blocked until then
    ref = torch.randn(s2.sample_rate * 3, generator=g).numpy() * 0.1
    spec = reference_spectrogram(ref, s2)
    dec = DecodeOptions(seed=0)
    sopts = StreamOptions(first_chunk_tokens=args.first_chunk)
    engine.generate([piece], prompt, GenerationOptions(sampling=PRESETS["gshead"], min_new_tokens=4,
                                                       max_tokens_per_phoneme=0.05))  # warm-up
    one_shot, stream, one, _, tokens = run(engine, piece, prompt, gen, spec, dec, sopts)
    other = decode_pieces(s2, [torch.roll(tokens[0], 37)], [torch.tensor(piece.ids)], spec, dec)[0]
    out = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__, "dtype": "fp32",
           "s1_config": args.s1_config, "s2_config": args.s2_config, "audio_s": len(one) / s2.sample_rate,
           "one_shot": one_shot, "stream": stream, "content_snr_db": snr_db(one, other)}
    if args.lively:
        lively(engine)
        _, stream_l, one_l, _, tokens = run(engine, piece, prompt, gen, spec, dec, sopts)
        other_l = decode_pieces(s2, [torch.roll(tokens[0], 37)], [torch.tensor(piece.ids)], spec, dec)[0]
        out.update({"snr_lively_db": stream_l["snr_db"], "content_snr_lively_db": snr_db(one_l, other_l)})
    out["machine"] = {**machine, "load_avg_before": load_before, "load_avg_after": load_now()}
    out["reference"] = "one-shot synthesis of the same text (one_shot) beside the stream"
    print(json.dumps(out, indent=2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--s1-config", default=str(ROOT / "configs" / "s1.json"), help="S1 config (default: full size)")
    p.add_argument("--s2-config", default=str(ROOT / "configs" / "s2.json"), help="S2 config (default: full size)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps (default: cpu)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of audio (default: 10 = 250 tokens)")
    p.add_argument("--n-phones", type=int, default=100, help="phonemes of the text (default: 100)")
    p.add_argument("--prompt-phones", type=int, default=30, help="phonemes of the prompt transcript (default: 30)")
    p.add_argument("--prompt-tokens", type=int, default=75, help="prompt tokens (default: 75 = 3 s)")
    p.add_argument("--first-chunk", type=int, default=StreamOptions.first_chunk_tokens,
                   help=f"tokens in the first audio chunk (default: {StreamOptions.first_chunk_tokens})")
    p.add_argument("--lively", action="store_true", help="also measure the SNR with signal-carrying random weights")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
