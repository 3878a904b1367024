"""Stage 4: the S2 training and validation lists.

    python gen_filelist_s2.py --dump dump --config configs/s2.json
    python gen_filelist_s2.py --dump dump --config configs/s2.json --val-items 16 --seed 1234

Reads ``dump/manifest.tsv``, ``dump/phonemes.tsv``, the wav headers of ``dump/wav32k`` and
the presence of ``dump/ssl/<id>.pt``; writes ``dump/s2_train.list`` and ``dump/s2_val.list``.

List format (UTF-8, one utterance per line, sorted by id, no header)::

    id|speaker|lang|n_frames

``n_frames`` is the spectrogram frame count ``n_samples // hop_length`` of the 32 kHz wav
(equal to the SSL feature length), used by the length-bucketed sampler. The phonemes and
features are looked up by id in the dump directory.

An utterance is listed when it has its wav, a phonemes row and a features file no older
than the wav, and its duration is within ``[data.min_seconds, data.max_seconds]`` of the
config; every other one is left out and counted by reason. The split is reproducible:
ids are sorted, shuffled with ``--seed``, and the first ``val_items`` go to validation
(``--val-items``, default ``data.val_items``; clamped so that training keeps at least one
item and validation has at least one when there are two or more; with a single item it
is used for both). Same inputs and seed give byte-identical lists. No usable item is an
error (non-zero exit).
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

from common.audio import AudioError, audio_info
from common.config import ConfigError, S2Config, load_config
from common.manifest import (
    MANIFEST_NAME,
    PHONEMES_NAME,
    S2_TRAIN_LIST,
    S2_VAL_LIST,
    SSL_DIR,
    WAV_DIR,
    ManifestError,
    S2ListItem,
    read_manifest,
    read_phonemes,
    write_s2_list,
)

STAGE = "filelist_s2"


def collect_items(dump: Path, cfg: S2Config) -> tuple[list[S2ListItem], Counter]:
    """Usable utterances sorted by id, and the count of left-out ones per reason."""
    utts = read_manifest(dump / MANIFEST_NAME)
    phonemes = dump / PHONEMES_NAME
    with_phones = {e.id for e in read_phonemes(phonemes)} if phonemes.is_file() else set()
    sr, hop = cfg.data.sampling_rate, cfg.data.hop_length
    kept: list[S2ListItem] = []
    left_out: Counter = Counter()
    for utt in sorted(utts, key=lambda u: u.id):
        wav = dump / WAV_DIR / f"{utt.id}.wav"
        ssl = dump / SSL_DIR / f"{utt.id}.pt"
        try:
            header = audio_info(wav)
        except AudioError as err:
            left_out["missing wav" if err.reason == "file not found" else "unreadable wav"] += 1
            continue
        if utt.id not in with_phones:
            left_out["no phonemes"] += 1
        elif not ssl.is_file():
            left_out["no ssl"] += 1
        elif ssl.stat().st_mtime < wav.stat().st_mtime:
            left_out["stale ssl (older than the wav; rerun extract_ssl_s2.py)"] += 1
        elif header.frames / sr < cfg.data.min_seconds:
            left_out[f"too short (< {cfg.data.min_seconds} s)"] += 1
        elif header.frames / sr > cfg.data.max_seconds:
            left_out[f"too long (> {cfg.data.max_seconds} s)"] += 1
        else:
            kept.append(S2ListItem(utt.id, utt.speaker, utt.lang, header.frames // hop))
    return kept, left_out


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
    dump = Path(args.dump)
    try:
        cfg = load_config(args.config, S2Config)
        items, left_out = collect_items(dump, cfg)
    except (ConfigError, ManifestError) as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    if left_out:
        print(f"{STAGE}: left out {sum(left_out.values())} utterance(s):")
        for reason, n in left_out.most_common():
            print(f"  {reason}: {n}")
    if not items:
        raise SystemExit(f"{STAGE}: no usable utterance in {dump} (see the counts above): run resample.py, "
                         "gen_phonemes.py and extract_ssl_s2.py first")
    val_items = cfg.data.val_items if args.val_items is None else args.val_items
    train, val = split_items(items, val_items, args.seed)
    if len(items) == 1:
        print(f"{STAGE}: only one usable utterance: it is used for both training and validation")
    try:
        write_s2_list(dump / S2_TRAIN_LIST, train)
        write_s2_list(dump / S2_VAL_LIST, val)
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
