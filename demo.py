"""The whole AR-VITS pipeline on an embedded synthetic corpus, with tiny models, on a CPU.

    bash demo.sh                 # same as: python demo.py
    python demo.py --quick       # fewer training steps (what the test suite runs)
    python demo.py --clean       # start again from nothing

It synthesizes a small multi-speaker Mandarin corpus with espeak-ng (bundled by the
``espeakng-loader`` package), builds a tiny random HuBERT (there is no network for the real
one), then runs every pipeline script in order, exactly as you would on your own data:
resample → phonemes → SSL features → S2 lists → train S2 → tokens → S1 lists → train S1 →
tts. Everything goes to ``demo_out/`` (and the tiny HuBERT to ``pretrained/tiny-hubert``,
where configs/tiny/s2.json expects it). It proves the machinery, not voice quality: the
models are tiny and trained for minutes.

Rerunning is safe: finished stages skip their work, training resumes from its latest
checkpoint, and a run that already reached its step target is left alone.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TTS_TEXT = "我们一起去吃午饭吧，然后去看电影。"


def stage(n: int, total: int, title: str) -> None:
    print(f"\n=== [{n}/{total}] {title}", flush=True)


def run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run([sys.executable if c == "python" else c for c in cmd], cwd=ROOT, check=True)


def train_cmd(script: str, config: str, run_dir: Path, dump: Path, steps: int) -> list[str]:
    """Resume when the run directory already holds checkpoints (a rerun continues or does nothing)."""
    cmd = ["python", script, "-m", str(run_dir), "--dump", str(dump), "--max-steps", str(steps)]
    if any(run_dir.glob("ckpt_*.pt")):
        return cmd + ["--resume"]
    return cmd + ["-c", config]


def make_reference(corpus: Path, path: Path) -> tuple[Path, str]:
    """A 3-10 s reference: two utterances of one speaker joined (each corpus clip is ~2 s)."""
    import numpy as np
    import soundfile as sf

    clips = [corpus / "zh" / "spk1" / f"{n:03d}.wav" for n in (19, 15)]
    audio = [sf.read(c, dtype="float32") for c in clips]
    sr = audio[0][1]
    pause = np.zeros(int(0.3 * sr), dtype=np.float32)
    sf.write(path, np.concatenate([audio[0][0], pause, audio[1][0]]), sr)
    text = "".join(c.with_suffix(".lab").read_text(encoding="utf-8").strip() for c in clips)
    return path, text


def main(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.corpus import make_corpus
    from tests.tiny_hubert import make_tiny_hubert

    out = (ROOT / args.out).resolve()
    if args.clean and out.exists():
        shutil.rmtree(out)
    corpus, dump, logs = out / "corpus", out / "dump", out / "logs"
    hubert = (ROOT / args.hubert).resolve()
    s2_steps, s1_steps = (40, 150) if args.quick else (args.s2_steps, args.s1_steps)
    t0 = time.perf_counter()
    total = 11

    stage(1, total, "synthesize the demo corpus (espeak-ng, 4 speakers) and a tiny HuBERT")
    if not (corpus / "zh").is_dir():
        make_corpus(corpus, n_sentences=20, speakers=4, form="tree")
    if not (hubert / "config.json").is_file():
        make_tiny_hubert(hubert)
    print(f"corpus in {corpus}, tiny HuBERT in {hubert}")
    stage(2, total, "resample to 32 kHz mono")
    run(["python", "resample.py", "--root", str(corpus), "--dump", str(dump)])
    stage(3, total, "text → phonemes")
    run(["python", "gen_phonemes.py", "--dump", str(dump)])
    stage(4, total, "HuBERT features")
    run(["python", "extract_ssl_s2.py", "--dump", str(dump), "--config", "configs/tiny/s2.json",
         "--ssl-model", str(hubert)])
    stage(5, total, "S2 file lists")
    run(["python", "gen_filelist_s2.py", "--dump", str(dump), "--config", "configs/tiny/s2.json"])
    stage(6, total, f"train S2 ({s2_steps} steps)")
    run(train_cmd("train_s2.py", "configs/tiny/s2.json", logs / "s2", dump, s2_steps))
    stage(7, total, "semantic tokens from the trained S2 codebook")
    run(["python", "extract_vq_s1.py", "--dump", str(dump), "--s2-ckpt", str(logs / "s2"), "--overwrite"])
    stage(8, total, "S1 file lists")
    run(["python", "gen_filelist_s1.py", "--dump", str(dump), "--config", "configs/tiny/s1.json"])
    stage(9, total, f"train S1 ({s1_steps} steps)")
    run(train_cmd("train_s1.py", "configs/tiny/s1.json", logs / "s1", dump, s1_steps))
    stage(10, total, "synthesize a sentence with tts.py")
    ref, ref_text = make_reference(corpus, out / "reference.wav")
    wav = out / "demo.wav"
    run(["python", "tts.py", "--s1-ckpt", str(logs / "s1"), "--s2-ckpt", str(logs / "s2"), "--ref", str(ref),
         "--ref-text", ref_text, "--text", TTS_TEXT, "--ssl-model", str(hubert), "--seed", "0", "-o", str(wav)])
    stage(11, total, "done")
    print(f"wav:          {wav}")
    print(f"tensorboard:  tensorboard --logdir {logs}")
    print(f"wall time:    {time.perf_counter() - t0:.0f} s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--s2-steps", type=int, default=600, help="S2 training steps (default: 600)")
    p.add_argument("--s1-steps", type=int, default=400, help="S1 training steps (default: 400)")
    p.add_argument("--hubert", default="pretrained/tiny-hubert",
                   help="where the tiny random HuBERT is built (default: pretrained/tiny-hubert, the path "
                   "configs/tiny/s2.json names)")
    p.add_argument("--quick", action="store_true", help="a few training steps only (used by the tests)")
    p.add_argument("--clean", action="store_true", help="delete the output directory first")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
