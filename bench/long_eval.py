"""Long-text stability of S1 checkpoints: how generation of texts of several sentences ends.

    python -m bench.long_eval --dump bench_out/learn/dump --model base=bench_out/learn/logs/s1 \
        --model rope=logs/s1_rope --demo-texts 24
    python -m bench.long_eval --dump dump --model a=logs/s1_a --model b=logs/s1_b --texts long.txt --lang zh

Every model continues the same prompt (a held-out item of the dump: its phonemes and its real
tokens, ``--prompt-id``, default the first item of ``s1_val.tsv``) with each long text, sampled
with the checkpoint's own ``inference`` settings, seed ``--seed + i`` for text ``i``, the loop
detector on (``s1/loops.py``) and the cap of ``inference.max_tokens_per_phoneme`` new tokens per
target phoneme, as tts.py does for one piece. Texts: ``--texts`` (one text per line, never
split), or ``--demo-texts N``: N texts of ``--sentences-per-text`` sentences of the demo's
generator (tests/corpus.py) that are not in the dump's manifest (held out, same vocabulary).

Printed JSON (also written to ``--out``): per model the share of texts that ended with EOS,
the length cap or the loop detector; new tokens per target phoneme (and relative to the
training set's tokens per phoneme, from the dump's semantic.tsv and phonemes.tsv); the
repeated share, long single-code runs per text and the shares of too-short (likely skipped
text) and too-long outputs (``s1/stability.py``). ``training`` holds the repeated share and
long runs of real speech of the same length (consecutive training utterances of one speaker,
as many as a text has sentences) to read those against. Speaker models generate as the
prompt item's speaker.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from common.fileio import atomic_write_text
from common.manifest import MANIFEST_NAME, PHONEMES_NAME, read_manifest, read_phonemes
from infer.engine import sampling_params
from infer.loading import load_s1, speaker_row
from infer.text_input import phonemize
from s1.data import S1_VAL_LIST, SEMANTIC_TSV, read_semantic_tsv
from s1.generate import LoopDetector, generate_detailed
from s1.stability import long_runs, output_stats, repeated_fraction, summarize
from text.symbols import SYMBOL_TO_ID

ROOT = Path(__file__).resolve().parents[1]


def demo_texts(n: int, per_text: int, exclude: set[str], seed: int) -> list[str]:
    """``n`` texts of ``per_text`` demo sentences each, none of them in ``exclude``."""
    sys.path.insert(0, str(ROOT))
    from tests.corpus import demo_sentences

    pool = [s for s in demo_sentences(2000, seed=seed + 1) if s not in exclude]
    if len(pool) < n * per_text:
        raise SystemExit(f"long_eval: only {len(pool)} held-out demo sentences for {n} x {per_text}")
    return ["".join(pool[i * per_text:(i + 1) * per_text]) for i in range(n)]


def training_reference(semantic: dict[str, list[int]], phonemes: dict[str, list[str]],
                       speakers: dict[str, str], per_text: int) -> dict:
    """Tokens per phoneme over the dump, and the token-pattern measures of real speech of text length."""
    ids = sorted(set(semantic) & set(phonemes))
    ratio = sum(len(semantic[i]) for i in ids) / sum(len(phonemes[i]) for i in ids)
    by_speaker: dict[str, list[str]] = {}
    for uid in ids:
        by_speaker.setdefault(speakers.get(uid, ""), []).append(uid)
    joined = [sum((semantic[u] for u in group[k:k + per_text]), [])
              for group in by_speaker.values() for k in range(0, len(group) - per_text + 1, per_text)]
    return {"items": len(ids), "tokens_per_phone": round(ratio, 3), "stretches": len(joined),
            "repeated_share": round(sum(map(repeated_fraction, joined)) / max(len(joined), 1), 4),
            "long_runs_per_text": round(sum(map(long_runs, joined)) / max(len(joined), 1), 3)}


def evaluate(name: str, path: str, texts: list[list[int]], prompt: tuple[list[int], list[int]],
             prompt_speaker: str | None, train_ratio: float, args: argparse.Namespace) -> dict:
    """Generate every text with one checkpoint and summarize the outputs."""
    s1 = load_s1(path, torch.device("cpu"))
    inf = s1.cfg.inference
    params = sampling_params(inf)
    row = speaker_row(s1, prompt_speaker) if s1.speakers is not None else None
    phones_p, tokens_p = prompt
    stats, t0 = [], time.perf_counter()
    for start in tqdm(range(0, len(texts), args.batch_size), desc=name, file=sys.stderr, dynamic_ncols=True):
        chunk = texts[start:start + args.batch_size]
        result = generate_detailed(
            s1.model, [torch.tensor(phones_p + t) for t in chunk], [torch.tensor(tokens_p)] * len(chunk), params,
            max_new_tokens=[math.ceil(inf.max_tokens_per_phoneme * len(t)) for t in chunk],
            max_tokens_per_phoneme=None, min_new_tokens=inf.min_new_tokens,
            seed=[args.seed + start + i for i in range(len(chunk))], loop_detector=LoopDetector(),
            speakers=None if row is None else torch.full((len(chunk),), row))
        stats += [output_stats(tok.tolist(), len(t), reason, train_ratio)
                  for tok, t, reason in zip(result.tokens, chunk, result.stop_reasons)]
    summary = summarize(stats, train_ratio)
    m = s1.cfg.model
    return {"checkpoint": str(s1.path), "step": s1.step, "position": m.position, "n_speakers": m.n_speakers,
            "concat_max_seconds": s1.cfg.data.concat_max_seconds, **summary,
            "seconds": round(time.perf_counter() - t0, 1)}


def main(args: argparse.Namespace) -> dict:
    dump = Path(args.dump)
    semantic = read_semantic_tsv(dump / SEMANTIC_TSV)
    entries = read_phonemes(dump / PHONEMES_NAME)
    phonemes = {e.id: e.phones for e in entries}
    manifest = read_manifest(dump / MANIFEST_NAME)
    speakers = {u.id: u.speaker for u in manifest}
    if args.texts:
        raw = [line.strip() for line in Path(args.texts).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        raw = demo_texts(args.demo_texts, args.sentences_per_text, {u.text for u in manifest}, args.seed)
    texts = [phonemize(t, args.lang, f"text {i + 1}").ids for i, t in enumerate(raw)]
    prompt_id = args.prompt_id or (dump / S1_VAL_LIST).read_text(encoding="utf-8").splitlines()[1].split("\t")[0]
    if prompt_id not in semantic or prompt_id not in phonemes:
        raise SystemExit(f"long_eval: prompt item {prompt_id!r} has no tokens or phonemes in {dump}")
    prompt = ([SYMBOL_TO_ID[p] for p in phonemes[prompt_id]], semantic[prompt_id])
    train = training_reference(semantic, phonemes, speakers, args.sentences_per_text)
    models = {}
    for spec in args.model:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"long_eval: --model takes NAME=CHECKPOINT, got {spec!r}")
        models[name] = evaluate(name, path, texts, prompt, speakers.get(prompt_id), train["tokens_per_phone"], args)
    report = {"dump": str(dump), "texts": len(texts), "mean_target_phones": round(sum(map(len, texts)) / len(texts), 1),
              "prompt_id": prompt_id, "seed": args.seed, "training": train, "models": models,
              "torch_threads": torch.get_num_threads()}
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dump", required=True, help="data directory the models were trained on (tokens, phonemes)")
    p.add_argument("--model", action="append", required=True, metavar="NAME=CHECKPOINT",
                   help="an S1 checkpoint file or run directory under a short name (repeat to compare)")
    p.add_argument("--texts", default=None, help="file with one long text per line (default: --demo-texts)")
    p.add_argument("--demo-texts", type=int, default=24, help="held-out demo texts to make (default: 24)")
    p.add_argument("--sentences-per-text", type=int, default=4, help="demo sentences per text (default: 4)")
    p.add_argument("--lang", default="zh", help="language of the texts (default: zh)")
    p.add_argument("--prompt-id", default=None, help="dump item used as prompt (default: first of s1_val.tsv)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed of text 0 (text i: seed + i)")
    p.add_argument("--batch-size", type=int, default=8, help="texts generated together (default: 8)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
