"""The whole AR-VITS pipeline on a synthetic corpus, trained on a CPU, and what it learned, measured.

    bash demo.sh                 # installs what is missing, then: python demo.py
    python demo.py --quick       # the tiny test configs and a small corpus (what the test suite runs)
    python demo.py --clean       # start again from nothing

It synthesizes a Mandarin corpus with espeak-ng (bundled by the ``espeakng-loader`` package;
one voice, every sentence different), builds a small random HuBERT (there is no network for
the real one), then runs every pipeline script in order, exactly as you would on your own
data: resample → phonemes → SSL features → S2 lists → train S2 → tokens → S1 lists → train
S1 → tts. The validation sentences are held out of both trainings. At the end it measures,
on those held-out sentences, what the models learned — each figure beside the same figure
of the untrained models — and writes:

    demo_out/demo.wav        tts.py on a held-out sentence (a 3-10 s reference gives voice and prompt)
    demo_out/resynth.wav     s2_infer.py --resynth of that sentence's recording (S2 alone)
    demo_out/demo.png        spectrograms: the recording (espeak-ng), the resynthesis, the TTS; envelopes
    demo_out/measures.json   the figures (common/learning.py, infer/heldout.py)

Rerunning is safe: finished stages skip their work, training resumes from its latest
checkpoint, and a run that already reached its step target is left alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOKEN_SOURCE = "tokens_from.json"  # in the S1 run: which S2 checkpoint's tokens it was trained on
SPLIT_SEED = 1234  # the S2 and S1 validation lists are drawn with the same seed and size: the same ids



def plain_statement(t, u, n_train: int) -> str:
    """What the models can and cannot do, read off the trained (``t``) and untrained (``u``) scores."""
    env, env0 = t.s2_prior["env_corr"], u.s2_prior["env_corr"]
    post = t.s2_posterior["env_corr"] if t.s2_posterior else float("nan")
    lines = [f"What these models can and cannot do at this size (minutes of CPU training on {n_train} sentences of "
             "one synthetic voice, a random HuBERT):"]
    if env >= 0.6:
        lines.append(f"- S2 turns the tokens of a recording it never saw back into speech-shaped sound that follows "
                     f"its syllables and pauses (envelope correlation {env:.2f}; untrained {env0:.2f}).")
    elif env >= 0.3:
        lines.append(f"- S2 turns the tokens of a recording it never saw back into sound that partly follows its "
                     f"syllables and pauses (envelope correlation {env:.2f}; untrained {env0:.2f}; from the "
                     f"spectrogram itself, the posterior path, {post:.2f}): the prior is still catching up.")
    elif post >= 0.5:
        lines.append(f"- S2's decoder renders a held-out recording's syllables and pauses from its own analysis of "
                     f"the spectrogram (posterior path, envelope correlation {post:.2f}), but not yet from tokens "
                     f"alone, which is what inference uses (prior path {env:.2f}; untrained {env0:.2f}): the prior "
                     "has not caught up with the posterior at this budget.")
    else:
        lines.append(f"- S2 does not make speech-shaped sound yet (envelope correlation {env:.2f}, posterior path "
                     f"{post:.2f}; untrained {env0:.2f}).")
    lines.append("  Its timbre is not the voice's: it is buzzy and the high frequencies are smeared.")
    ratio = t.token_ratio
    length = ("about the right length" if 0.75 <= ratio <= 1.33 else
              f"{ratio:.2f}x the true length" + (" (it stops too early)" if ratio < 1 else " (it runs on)"))
    lines.append(f"- S1 predicts the next semantic token of held-out text {t.s1_top1:.0%} of the time (untrained "
                 f"{u.s1_top1:.0%}); its generated sentences come out {length} (untrained "
                 f"{u.token_ratio:.2f}x).")
    lines.append(f"- Text to speech of held-out text is {t.mcd:.1f} dB MCD from espeak-ng's own rendering (untrained "
                 f"{u.mcd:.1f} dB): it is not intelligible at this size.")
    lines.append("- A real voice needs the real HuBERT, the full-size configs and hours of GPU training (README).")
    return "\n".join(lines)


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


def token_source(dump: Path) -> str:
    """The S2 checkpoint (sha256) the dump's semantic tokens were extracted with."""
    return json.loads((dump / "semantic.json").read_text(encoding="utf-8"))["s2_sha256"]


def retire_stale_s1(s1_run: Path, dump: Path) -> None:
    """An S1 run trained on tokens of another S2 checkpoint (a rerun that extended S2) is moved to
    ``<run>.old`` so that S1 is trained again from scratch on the new tokens."""
    marker = s1_run / TOKEN_SOURCE
    if not any(s1_run.glob("ckpt_*.pt")):
        return
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("s2_sha256") == token_source(dump):
        return
    old = s1_run.with_name(s1_run.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    s1_run.rename(old)
    print(f"S1 in {s1_run} was trained on tokens of another S2 checkpoint: moved to {old}, training S1 again")


def write_token_source(s1_run: Path, dump: Path) -> None:
    from common.fileio import atomic_write_text

    atomic_write_text(s1_run / TOKEN_SOURCE, json.dumps({"s2_sha256": token_source(dump)}) + "\n")


def make_reference(dump: Path, ids: list[str], path: Path) -> tuple[Path, str]:
    """A 3-6 s reference written to ``path``: the first training utterance of that length, else
    consecutive ones joined with 0.3 s pauses until 3 s (a small corpus of short sentences).

    One utterance where possible, not several joined: the prompt (its phonemes and tokens) goes in
    front of the target, and S1 only learns where to stop for inputs as long as those it was
    trained on (single sentences, and joined ones up to ``data.concat_max_seconds``).
    """
    import numpy as np
    import soundfile as sf

    from common.manifest import MANIFEST_NAME, WAV_DIR, read_manifest

    if not ids:
        raise SystemExit(f"{dump}: no training utterance to use as the reference")
    texts = {u.id: u.text for u in read_manifest(dump / MANIFEST_NAME)}
    fitting = [uid for uid in ids if 3.0 <= sf.info(dump / WAV_DIR / f"{uid}.wav").duration <= 6.0]
    audio, text, sr = [], "", 32000
    for uid in fitting[:1] or ids:
        wav, sr = sf.read(dump / WAV_DIR / f"{uid}.wav", dtype="float32")
        audio += [wav, np.zeros(int(0.3 * sr), dtype=np.float32)]
        text += texts[uid]
        if sum(map(len, audio[:-1])) / sr >= 3.0:
            break
    sf.write(path, np.concatenate(audio[:-1]), sr)
    return path, text


def report(out: Path, dump: Path, s1_run: Path, s2_run: Path, hubert: Path, ref: Path, ref_text: str,
           limit: int) -> dict:
    """Held-out measures (trained vs untrained), demo.png and measures.json; returns the figures."""
    from common.audio import load_audio
    from common.fileio import atomic_write_text
    from common.learning import format_measures
    from common.manifest import WAV_DIR, read_s2_list
    from common.plots import write_panels
    from infer.heldout import evaluate_pipeline

    rep = evaluate_pipeline(s1_run, s2_run, dump, ref, ref_text, str(hubert), limit=limit)
    print(format_measures(rep.measures, f"held-out measures ({len(rep.ids)} sentences)"))
    uid = rep.ids[0]
    rec = load_audio(dump / WAV_DIR / f"{uid}.wav", 32000)
    resynth = load_audio(out / "resynth.wav", 32000)
    panels = [(f"espeak-ng recording of held-out {uid} (the target)", rec),
              ("S2 resynthesis of that recording (tokens -> S2), trained", resynth),
              ("text to speech of the same text (S1 + S2), trained", rep.trained.tts_wavs[uid]),
              ("text to speech of the same text, untrained models", rep.untrained.tts_wavs[uid])]
    png = write_panels(out / "demo.png", panels, 32000, 640)
    figures = rep.as_dict() | {"picture": str(png)}
    atomic_write_text(out / "measures.json", json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    t, u = rep.trained, rep.untrained
    n_train = len(read_s2_list(dump / "s2_train.list"))
    print(plain_statement(t, u, n_train))
    if not all(m.improved for m in rep.measures):
        print("note: some measures are not better than the untrained model's (see the table); train longer")
    return figures


def main(args: argparse.Namespace) -> dict:
    """Run every stage; returns the held-out figures (as measures.json)."""
    sys.path.insert(0, str(ROOT))
    from tests.corpus import demo_sentences, make_corpus
    from tests.tiny_hubert import make_tiny_hubert

    out = (ROOT / args.out).resolve()
    if args.clean and out.exists():
        shutil.rmtree(out)
    corpus, dump, logs = out / "corpus", out / "dump", out / "logs"
    hubert = (ROOT / args.hubert).resolve()
    configs = "configs/tiny" if args.quick else "configs/demo"
    s2_cfg, s1_cfg = args.s2_config or f"{configs}/s2.json", args.s1_config or f"{configs}/s1.json"
    sentences, s2_steps, s1_steps, val_items = ((24, 20, 60, 3) if args.quick else
                                                (args.sentences, args.s2_steps, args.s1_steps, args.val_items))
    t0 = time.perf_counter()
    total = 12

    stage(1, total, f"synthesize the demo corpus (espeak-ng, {sentences} sentences, one voice) and a random HuBERT")
    if not (corpus / "zh").is_dir():
        make_corpus(corpus, speakers=1, sentences=demo_sentences(sentences))
    if not (hubert / "config.json").is_file():
        make_tiny_hubert(hubert)
    print(f"corpus in {corpus}, random HuBERT in {hubert}")
    stage(2, total, "resample to 32 kHz mono")
    run(["python", "resample.py", "--root", str(corpus), "--dump", str(dump)])
    stage(3, total, "text → phonemes")
    run(["python", "gen_phonemes.py", "--dump", str(dump)])
    stage(4, total, "HuBERT features")
    run(["python", "extract_ssl_s2.py", "--dump", str(dump), "--config", s2_cfg, "--ssl-model", str(hubert)])
    stage(5, total, f"S2 file lists ({val_items} held-out sentences)")
    split = ["--val-items", str(val_items), "--seed", str(SPLIT_SEED)]
    run(["python", "gen_filelist_s2.py", "--dump", str(dump), "--config", s2_cfg, *split])
    stage(6, total, f"train S2 ({s2_steps} steps)")
    run(train_cmd("train_s2.py", s2_cfg, logs / "s2", dump, s2_steps))
    stage(7, total, "semantic tokens from the trained S2 codebook")
    run(["python", "extract_vq_s1.py", "--dump", str(dump), "--s2-ckpt", str(logs / "s2"), "--overwrite"])
    stage(8, total, "S1 file lists (the same held-out sentences)")
    run(["python", "gen_filelist_s1.py", "--dump", str(dump), "--config", s1_cfg, *split])
    stage(9, total, f"train S1 ({s1_steps} steps)")
    retire_stale_s1(logs / "s1", dump)
    run(train_cmd("train_s1.py", s1_cfg, logs / "s1", dump, s1_steps))
    write_token_source(logs / "s1", dump)

    stage(10, total, "synthesize a held-out sentence with tts.py and resynthesize its recording with s2_infer.py")
    from common.manifest import MANIFEST_NAME, S2_TRAIN_LIST, WAV_DIR, read_manifest, read_s2_list
    from infer.heldout import heldout_ids

    held = heldout_ids(dump)
    texts = {u.id: u.text for u in read_manifest(dump / MANIFEST_NAME)}
    ref, ref_text = make_reference(dump, [it.id for it in read_s2_list(dump / S2_TRAIN_LIST)], out / "reference.wav")
    wav = out / "demo.wav"
    run(["python", "tts.py", "--s1-ckpt", str(logs / "s1"), "--s2-ckpt", str(logs / "s2"), "--ref", str(ref),
         "--ref-text", ref_text, "--text", texts[held[0]], "--ssl-model", str(hubert), "--seed", "0", "-o", str(wav)])
    run(["python", "s2_infer.py", "--s2-ckpt", str(logs / "s2"), "--resynth", str(dump / WAV_DIR / f"{held[0]}.wav"),
         "--text", texts[held[0]], "--ssl-model", str(hubert), "-o", str(out / "resynth.wav")])
    stage(11, total, "measure what was learned on the held-out sentences (trained vs untrained)")
    figures = report(out, dump, logs / "s1", logs / "s2", hubert, ref, ref_text, limit=val_items)
    stage(12, total, "done")
    print(f"held-out text: {texts[held[0]]}")
    print(f"wav:          {wav} (and {out / 'resynth.wav'})")
    print(f"picture:      {out / 'demo.png'}")
    print(f"figures:      {out / 'measures.json'}")
    print(f"tensorboard:  tensorboard --logdir {logs}")
    print(f"wall time:    {time.perf_counter() - t0:.0f} s")
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--sentences", type=int, default=400, help="corpus size in sentences (default: 400)")
    p.add_argument("--val-items", type=int, default=8, help="held-out sentences (default: 8)")
    p.add_argument("--s2-steps", type=int, default=500, help="S2 training steps (default: 500)")
    p.add_argument("--s1-steps", type=int, default=300, help="S1 training steps (default: 300)")
    p.add_argument("--hubert", default="pretrained/tiny-hubert",
                   help="where the random HuBERT is built (default: pretrained/tiny-hubert, the path the demo and "
                   "tiny configs name)")
    p.add_argument("--s2-config", default=None, help="S2 config (default: configs/demo/s2.json)")
    p.add_argument("--s1-config", default=None, help="S1 config (default: configs/demo/s1.json)")
    p.add_argument("--quick", action="store_true", help="tiny configs and a small corpus (used by the tests)")
    p.add_argument("--clean", action="store_true", help="delete the output directory first")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
