"""Stage 4: the S2 training and validation lists.

    python gen_filelist_s2.py --dump dump --config configs/s2.json
    python gen_filelist_s2.py --dump dump --config configs/s2.json --val-items 16 --seed 1234

Reads ``dump/manifest.tsv``, ``dump/phonemes.tsv``, the wav headers of ``dump/wav32k`` and
the headers of ``dump/ssl/<id>.pt``; writes ``dump/s2_train.list``, ``dump/s2_val.list`` and this
stage's rows of ``dump/rejected.tsv``.

List format (UTF-8, one utterance per line, sorted by id, no header)::

    id|speaker|lang|n_frames

``n_frames`` is the spectrogram frame count ``n_samples // hop_length`` of the 32 kHz wav
(equal to the SSL feature length), used by the length-bucketed sampler. The phonemes and
features are looked up by id in the dump directory.

An utterance is listed when its wav opens as mono ``data.sampling_rate`` audio, it has a
phonemes row, its duration is within ``[data.min_seconds, data.max_seconds]`` of the config,
its speaker name can be written to a list, and its features file is no older than the wav and
opens as fp16 ``[data.ssl_dim, n_frames]`` (headers only, common/listcheck.py); every other one
is left out, with its reason in ``dump/rejected.tsv`` and counted by reason on stdout (one bad
item never stops the stage). The split is reproducible:
ids are sorted, shuffled with ``--seed``, and the first ``val_items`` go to validation
(``--val-items``, default ``data.val_items``; clamped so that training keeps at least one
item and validation has at least one when there are two or more; with a single item it
is used for both). Same inputs and seed give byte-identical lists. The validation list is
removed before the training list is written and written after it, so a killed run never
leaves the lists of two runs side by side. No usable item is an error (non-zero exit).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from common.config import ConfigError, S2Config, load_config
from common.ingest import name_problem
from common.listcheck import features_shape, wav_check, write_pair
from common.manifest import (
    MANIFEST_NAME,
    PHONEMES_NAME,
    REJECTED_NAME,
    S2_TRAIN_LIST,
    S2_VAL_LIST,
    SSL_DIR,
    WAV_DIR,
    ManifestError,
    S2ListItem,
    Utterance,
    prepare_dump,
    read_manifest,
    read_phonemes,
    write_s2_list,
)
from common.progress import RejectionReport

STAGE = "filelist_s2"


def item_reason(dump: Path, utt: Utterance, with_phones: set[str], cfg: S2Config) -> tuple[int, str | None]:
    """(n_frames, None) for a listable utterance, else (0, reason ``category: detail``); see the module docstring."""
    sr, hop = cfg.data.sampling_rate, cfg.data.hop_length
    wav = dump / WAV_DIR / f"{utt.id}.wav"
    ssl = dump / SSL_DIR / f"{utt.id}.pt"
    frames, problem = wav_check(wav, sr)
    if problem:
        return 0, problem
    if utt.id not in with_phones:
        return 0, f"no phonemes: no row for {utt.id} in {dump / PHONEMES_NAME} (run gen_phonemes.py)"
    if frames / sr < cfg.data.min_seconds:
        return 0, f"too short (< {cfg.data.min_seconds} s): {wav} has {frames / sr:.2f} s"
    if frames / sr > cfg.data.max_seconds:
        return 0, f"too long (> {cfg.data.max_seconds} s): {wav} has {frames / sr:.2f} s"
    problem = name_problem("speaker", utt.speaker)
    if problem:
        return 0, f"{problem} (fix the dataset, then rerun resample.py)"
    if not ssl.is_file():
        return 0, f"no ssl: {ssl} not found (run extract_ssl_s2.py)"
    if ssl.stat().st_mtime < wav.stat().st_mtime:
        return 0, f"stale ssl (older than the wav; rerun extract_ssl_s2.py): {ssl}"
    shape, error = features_shape(ssl)
    if shape is None:
        return 0, f"unreadable ssl: {error} (rerun extract_ssl_s2.py --overwrite)"
    if shape[0] != cfg.data.ssl_dim:
        return 0, (f"ssl dimension: {ssl} has dimension {shape[0]}, but data.ssl_dim is {cfg.data.ssl_dim} "
                   "(extract the features with the SSL model of this config)")
    if shape[1] != frames // hop:
        return 0, (f"ssl length mismatch: {ssl} has {shape[1]} frames but {wav} has {frames // hop} "
                   "(rerun extract_ssl_s2.py --overwrite)")
    return frames // hop, None


def collect_items(dump: Path, cfg: S2Config) -> tuple[list[S2ListItem], RejectionReport]:
    """Usable utterances sorted by id, and the left-out ones with their reasons."""
    utts = read_manifest(dump / MANIFEST_NAME)
    phonemes = dump / PHONEMES_NAME
    with_phones = {e.id for e in read_phonemes(phonemes)} if phonemes.is_file() else set()
    kept: list[S2ListItem] = []
    report = RejectionReport(STAGE)
    for utt in sorted(utts, key=lambda u: u.id):
        n_frames, reason = item_reason(dump, utt, with_phones, cfg)
        if reason:
            report.add(utt.id, utt.source, reason)
        else:
            kept.append(S2ListItem(utt.id, utt.speaker, utt.lang, n_frames))
    return kept, report


def split_items(items: list[S2ListItem], val_items: int, seed: int) -> tuple[list[S2ListItem], list[S2ListItem]]:
    """Seeded split (see the module docstring); both parts sorted by id."""
    ordered = sorted(items, key=lambda it: it.id)
    if len(ordered) <= 1:
        return ordered, list(ordered)
    random.Random(seed).shuffle(ordered)
    n_val = max(1, min(val_items, len(ordered) - 1))
    val, train = ordered[:n_val], ordered[n_val:]
    return sorted(train, key=lambda it: it.id), sorted(val, key=lambda it: it.id)


def main(args: argparse.Namespace) -> None:
    try:
        dump = prepare_dump(args.dump, STAGE)  # writable, temp files of killed writers removed
    except ManifestError as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    if args.val_items is not None and args.val_items < 0:
        raise SystemExit(f"{STAGE}: --val-items must be >= 0, got {args.val_items}")
    try:
        cfg = load_config(args.config, S2Config)
        items, left_out = collect_items(dump, cfg)
        left_out.write(dump / REJECTED_NAME)
    except (ConfigError, ManifestError) as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    if len(left_out):
        print(f"{STAGE}: left out {len(left_out)} utterance(s) (details in {dump / REJECTED_NAME}):")
        for line in left_out.summary():
            print(line)
    if not items:
        raise SystemExit(f"{STAGE}: no usable utterance in {dump} (see the counts above): run resample.py, "
                         "gen_phonemes.py and extract_ssl_s2.py first")
    val_items = cfg.data.val_items if args.val_items is None else args.val_items
    train, val = split_items(items, val_items, args.seed)
    if len(items) == 1:
        print(f"{STAGE}: only one usable utterance: it is used for both training and validation")
    try:
        write_pair(dump / S2_VAL_LIST, lambda: write_s2_list(dump / S2_TRAIN_LIST, train),
                   lambda: write_s2_list(dump / S2_VAL_LIST, val))
    except ManifestError as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    seconds = sum(it.n_frames for it in items) * cfg.data.hop_length / cfg.data.sampling_rate
    total = f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
    print(f"{STAGE}: {len(train)} training and {len(val)} validation utterance(s) ({total}) in "
          f"{dump / S2_TRAIN_LIST} and {dump / S2_VAL_LIST}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dump", type=Path, default=Path("dump"), help="data directory (default: dump)")
    p.add_argument("--config", type=Path, default=Path("configs/s2.json"),
                   help="S2 config: duration limits, hop length, val_items (default: configs/s2.json)")
    p.add_argument("--val-items", type=int, default=None,
                   help="validation utterances (default: data.val_items of the config)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the train/val split (default: 1234)")
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
