"""Text frontend speed: sentences per second of ``text.cleaner.clean_text`` on the golden sets.

    python -m bench.frontend                         # this checkout
    python -m bench.frontend --code /tmp/old_tree    # the frontend of another checkout (its text/)
    python -m bench.frontend --repeats 5 --lang zh

Sentences come from ``tests/data/golden_zh.tsv`` and ``tests/data/golden_en.tsv`` (of this
checkout, whichever frontend is timed). The first pass over the sentences loads the dictionaries
(jieba, pypinyin, CMUdict) and is reported apart as ``warmup_s``; ``sentences_per_s`` is the best
of ``--repeats`` further passes (the machine may be shared). A sentence the frontend refuses is
counted in ``refused`` and its time is still included. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.machine import load_now, machine_facts

ROOT = Path(__file__).resolve().parents[1]


def sentences(lang: str) -> list[str]:
    path = ROOT / "tests" / "data" / f"golden_{lang}.tsv"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[1] for line in lines if line.strip() and not line.startswith("#")]


def one_pass(clean_text, texts: list[str], lang: str) -> tuple[float, int]:
    refused = 0
    start = time.perf_counter()
    for text in texts:
        try:
            clean_text(text, lang)
        except ValueError:
            refused += 1
    return time.perf_counter() - start, refused


def main(args: argparse.Namespace) -> dict:
    if args.code:
        sys.path.insert(0, str(Path(args.code).resolve()))
    from text.cleaner import clean_text

    report: dict = {"bench": "frontend", "machine": machine_facts(),
                    "reference": "none in this run; --code <another checkout> times that checkout's text/ frontend",
                    "code": str(Path(args.code).resolve()) if args.code else str(ROOT)}
    for lang in args.lang:
        texts = sentences(lang)
        if not texts:
            continue
        warmup, refused = one_pass(clean_text, texts, lang)
        best = min(one_pass(clean_text, texts, lang)[0] for _ in range(args.repeats))
        report[lang] = {
            "sentences": len(texts), "refused": refused, "warmup_s": round(warmup, 3),
            "sentences_per_s": round(len(texts) / best, 1),
        }
    report["load_avg_after"] = load_now()
    print(json.dumps(report))
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=None, help="root of another checkout whose text/ package is timed")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the best is reported")
    parser.add_argument("--lang", nargs="+", default=["zh", "en"], choices=["zh", "en"], help="golden sets to time")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
