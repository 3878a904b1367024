"""Stage 1: convert a dataset to mono 32 kHz 16-bit wavs and write the manifest.

Input is either a list file (``wav_path|speaker|lang|text``, relative paths against the
list's folder) or a folder tree ``<root>/<lang>/<speaker>/*.wav`` with a ``.lab``
transcript beside each wav::

    python resample.py --list data/train.list --dump dump
    python resample.py --root data/corpus --dump dump --workers 8

Writes ``dump/wav32k/<id>.wav``, ``dump/manifest.tsv`` (``id speaker lang text duration
source``) and this stage's rows of ``dump/rejected.tsv`` and ``dump/adjusted.tsv``. Source files
are only read. Every item passes the ingest checks of ``common/ingest.py`` first: speaker names
that cannot go into a list, multi-line transcripts, the same recording reached through two paths,
dangling or looping symlinks are rejected; markup entities in transcripts are decoded and audio
peaking above full scale is scaled down to fit (never clipped), each noted in ``adjusted.tsv``.
Rerunning skips items whose output wav is already there and valid (duration limits are
checked again from its header; a changed ``--silence-db`` needs ``--overwrite``);
``--overwrite`` redoes every item. Every rejected item is reported with its reason and counts are printed;
the exit status is non-zero when nothing was accepted.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.audio import AudioError, audio_info, load_audio, save_wav
from common.fileio import remove_stale_temps
from common.ingest import fit_level, previous_notes, vet_items
from common.manifest import (
    ADJUSTED_NAME,
    MANIFEST_NAME,
    REJECTED_NAME,
    WAV_DIR,
    WAV_SAMPLE_RATE,
    Dataset,
    ManifestError,
    Utterance,
    assign_ids,
    normalize_lang,
    prepare_dump,
    read_list,
    read_manifest,
    scan_tree,
    write_manifest,
)
from common.progress import RejectionReport, parallel_map, print_summary

STAGE = "resample"


@dataclass(frozen=True)
class Limits:
    min_seconds: float
    max_seconds: float
    silence_db: float


@dataclass(frozen=True)
class Task:
    source: Path
    output: Path
    limits: Limits
    reuse: bool  # an existing valid output counts as done


@dataclass(frozen=True)
class Outcome:
    status: str  # "processed" | "skipped" | "rejected"
    duration: float = 0.0
    reason: str = ""
    note: str = ""  # how the audio was changed on the way in (common/ingest.py: fit_level)


def _duration_problem(seconds: float, limits: Limits) -> str | None:
    if seconds < limits.min_seconds:
        return f"too short: {seconds:.2f} s < {limits.min_seconds} s"
    if seconds > limits.max_seconds:
        return f"too long: {seconds:.2f} s > {limits.max_seconds} s"
    return None


def _db(value: float) -> float:
    return 20 * math.log10(value) if value > 0 else -math.inf


def _level_db(audio: np.ndarray) -> tuple[float, float]:
    """(RMS, peak) of ``audio`` [T] in dBFS; -inf for digital silence."""
    rms = math.sqrt(float(np.mean(np.square(audio, dtype=np.float64))))
    return _db(rms), _db(float(np.max(np.abs(audio))))


def _reusable(task: Task) -> float | None:
    """Duration of a finished output for ``task``, or None when it must be (re)made."""
    if not task.reuse or not task.output.is_file():
        return None
    try:
        info = audio_info(task.output)
        newer = task.output.stat().st_mtime >= task.source.stat().st_mtime
    except (AudioError, OSError):
        return None
    if info.sample_rate != WAV_SAMPLE_RATE or info.channels != 1 or info.frames == 0 or not newer:
        return None
    return info.duration


def process(task: Task) -> Outcome:
    """Convert one source file; returns what happened (never raises for a bad file)."""
    done = _reusable(task)
    if done is not None:
        problem = _duration_problem(done, task.limits)
        return Outcome("rejected", reason=problem) if problem else Outcome("skipped", duration=done)
    try:
        header = audio_info(task.source)
        if header.duration > task.limits.max_seconds:  # do not decode what will be refused
            return Outcome("rejected", reason=_duration_problem(header.duration, task.limits) or "")
        audio = load_audio(task.source, WAV_SAMPLE_RATE, clip=False)  # [T], peaks may exceed 1
    except AudioError as err:
        return Outcome("rejected", reason=err.reason)
    seconds = len(audio) / WAV_SAMPLE_RATE
    problem = _duration_problem(seconds, task.limits)
    if problem:
        return Outcome("rejected", reason=problem)
    rms_db, peak_db = _level_db(audio)
    if rms_db < task.limits.silence_db:
        levels = f"RMS {rms_db:.1f} dBFS, peak {peak_db:.1f} dBFS"
        return Outcome("rejected", reason=f"silent: {levels} (threshold {task.limits.silence_db} dB)")
    audio, note = fit_level(audio)
    save_wav(task.output, audio, WAV_SAMPLE_RATE)
    return Outcome("processed", duration=seconds, note=note or "")


def _previous_sources(manifest: Path) -> dict[str, str]:
    """id -> source of the last run's manifest; empty if there is none or it is unreadable."""
    if not manifest.is_file():
        return {}
    try:
        return {u.id: u.source for u in read_manifest(manifest, allow_empty=True)}
    except ManifestError as err:
        print(f"{STAGE}: ignoring the previous manifest ({err})", file=sys.stderr)
        return {}


def main(args: argparse.Namespace) -> None:
    try:
        dump = prepare_dump(args.dump, STAGE)  # writable, temp files of killed writers removed
    except ManifestError as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    if args.root and dump.resolve().is_relative_to(Path(args.root).resolve()):
        raise SystemExit(f"{STAGE}: --dump {dump} is inside the dataset folder --root {args.root}; put it elsewhere")
    if not 0 <= args.min_seconds < args.max_seconds:
        raise SystemExit(
            f"{STAGE}: need 0 <= --min-seconds < --max-seconds, got {args.min_seconds} and {args.max_seconds}"
        )
    limits = Limits(args.min_seconds, args.max_seconds, args.silence_db)
    try:
        dataset: Dataset = read_list(args.list) if args.list else scan_tree(args.root)
    except ManifestError as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    wav_dir = dump / WAV_DIR
    wav_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(wav_dir, report=lambda line: print(f"{STAGE}: {line}"))
    vet_items(dataset.items)  # names, paths, transcripts, duplicates: common/ingest.py
    assign_ids(dataset.items)
    previous = {} if args.overwrite else _previous_sources(dump / MANIFEST_NAME)
    old_notes = previous_notes(dump / ADJUSTED_NAME, STAGE)

    report = RejectionReport(STAGE)
    adjusted = RejectionReport(STAGE)  # kept items changed on the way in; same file format
    for origin, reason in dataset.bad_entries:
        report.add("-", origin, reason)
    accepted, tasks = [], []
    for item in dataset.items:
        if item.problem:
            report.add(item.id, item.origin, item.problem)
            continue
        try:
            lang = normalize_lang(item.lang)
        except ValueError as err:
            report.add(item.id, item.origin, str(err))
            continue
        reuse = not args.overwrite and previous.get(item.id, str(item.audio)) == str(item.audio)
        tasks.append(Task(item.audio, wav_dir / f"{item.id}.wav", limits, reuse))
        accepted.append((item, lang))

    counts = {"processed": 0, "skipped": 0}
    utts = []
    for (item, lang), outcome in zip(accepted, parallel_map(process, tasks, args.workers, STAGE)):
        if outcome.status == "rejected":
            report.add(item.id, item.origin, outcome.reason)
            continue
        counts[outcome.status] += 1
        level = [outcome.note] if outcome.note else []
        if outcome.status == "skipped":  # the source was not read again: keep what the run that made it noted
            level = [n for n in old_notes.get(item.id, []) if n.startswith("scaled down")]
        for note in item.notes + level:
            adjusted.add(item.id, item.origin, note)
        utts.append(Utterance(item.id, item.speaker, lang, item.text, outcome.duration, str(item.audio)))

    write_manifest(dump / MANIFEST_NAME, utts)
    report.write(dump / REJECTED_NAME)
    adjusted.write(dump / ADJUSTED_NAME)
    print_summary(STAGE, counts["processed"], counts["skipped"], report, dump / REJECTED_NAME)
    if len(adjusted):
        print(f"{STAGE}: {len(adjusted)} change(s) to kept items on the way in (details in {dump / ADJUSTED_NAME}):")
        for line in adjusted.summary():
            print(line)
    if not utts:
        raise SystemExit(f"{STAGE}: no usable utterance in the dataset; see {dump / REJECTED_NAME} for the reasons")
    print(f"{STAGE}: {len(utts)} utterances in {dump / MANIFEST_NAME}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--list", type=Path, help="list file with lines wav_path|speaker|lang|text")
    src.add_argument("--root", type=Path, help="dataset folder <root>/<lang>/<speaker>/*.wav with .lab transcripts")
    p.add_argument("--dump", type=Path, default=Path("dump"), help="output data directory (default: dump)")
    p.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="worker processes (default: min(4, CPUs))"
    )
    p.add_argument("--overwrite", action="store_true", help="redo items whose output already exists")
    p.add_argument("--min-seconds", type=float, default=0.3, help="reject clips shorter than this (default: 0.3)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="reject clips longer than this (default: 30)")
    p.add_argument(
        "--silence-db", type=float, default=-60.0, help="reject clips whose RMS level is below this dBFS (default: -60)"
    )
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
