"""How far the demo's recipe learns on a CPU with a larger budget, in the demo's own measures.

    python -m bench.learn                                  # 600 sentences, S2 1000 steps, S1 600 steps
    python -m bench.learn --s2-steps 300 --s1-steps 200    # a shorter run
    python -m bench.learn --lr-zero --out bench_out/learn_lr0   # the control: nothing may be learned

It runs demo.py's pipeline (corpus, every script, held-out measures, demo.png) into
``--out`` with configs/demo/*.json, or with copies whose learning rates are all 0
(``--lr-zero``: a change that stops learning must make every measure fall back to the
untrained model's). Prints one JSON object: the held-out measures (trained and untrained),
the steps, the wall and CPU seconds of the whole run, the load average before and after
(other work on the machine slows the wall time, never the step-based figures), the CPU
model and the torch thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import demo
from bench.machine import machine_facts
from common.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def lr_zero_configs(out: Path) -> tuple[str, str]:
    """Copies of configs/demo/s2.json and s1.json with every learning rate set to 0."""
    s2 = json.loads((ROOT / "configs/demo/s2.json").read_text(encoding="utf-8"))
    s1 = json.loads((ROOT / "configs/demo/s1.json").read_text(encoding="utf-8"))
    s2["train"]["learning_rate"] = 0.0
    s1["train"].update(learning_rate=0.0, lr_init=0.0, lr_end=0.0)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "s2_lr0.json", out / "s1_lr0.json"
    for path, cfg in zip(paths, (s2, s1)):
        atomic_write_text(path, json.dumps(cfg, indent=2) + "\n")
    return str(paths[0]), str(paths[1])


def main(args: argparse.Namespace) -> dict:
    out = (ROOT / args.out).resolve()
    s2_cfg = s1_cfg = None
    if args.lr_zero:
        s2_cfg, s1_cfg = lr_zero_configs(out / "configs")
    argv = ["--out", str(out), "--sentences", str(args.sentences), "--val-items", str(args.val_items),
            "--s2-steps", str(args.s2_steps), "--s1-steps", str(args.s1_steps), "--hubert", args.hubert]
    if s2_cfg:
        argv += ["--s2-config", s2_cfg, "--s1-config", s1_cfg]
    load_before = os.getloadavg()
    machine = machine_facts()
    t0 = time.perf_counter()
    figures = demo.main(demo.parse_args(argv))
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "run": "lr_zero" if args.lr_zero else "demo recipe",
        "sentences": args.sentences, "s2_steps": args.s2_steps, "s1_steps": args.s1_steps,
        "measures": figures["measures"], "held_out_ids": figures["held_out_ids"], "picture": figures["picture"],
        "wall_s": round(wall, 1), "cpu_s": round(sum(u.ru_utime + u.ru_stime for u in usage), 1),
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "machine": machine, "reference": "the untrained models' measures beside the trained ones (measures)",
    }
    atomic_write_text(out / "bench_learn.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_out/learn", help="output directory (default: bench_out/learn)")
    p.add_argument("--sentences", type=int, default=600, help="corpus size (default: 600)")
    p.add_argument("--val-items", type=int, default=8, help="held-out sentences (default: 8)")
    p.add_argument("--s2-steps", type=int, default=1000, help="S2 training steps (default: 1000)")
    p.add_argument("--s1-steps", type=int, default=600, help="S1 training steps (default: 600)")
    p.add_argument("--hubert", default="pretrained/tiny-hubert", help="random HuBERT folder (built when missing)")
    p.add_argument("--lr-zero", action="store_true", help="every learning rate 0: the measures must not improve")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
