"""Stage 3: HuBERT features of every utterance, for S2 training.

    python extract_ssl_s2.py --dump dump --config configs/s2.json --ssl-model pretrained/chinese-hubert-base
    python extract_ssl_s2.py --dump dump --config configs/s2.json --ssl-model TencentGameMate/chinese-hubert-base
    torchrun --nproc_per_node=4 extract_ssl_s2.py --dump dump --config configs/s2.json \\
        --ssl-model pretrained/chinese-hubert-base --fp16

Reads ``dump/manifest.tsv`` and ``dump/wav32k/<id>.wav``; writes ``dump/ssl/<id>.pt``
(fp16 ``[ssl_dim, n_samples // hop]``, see ``modules/ssl.py`` for the conventions) and
this stage's rows of ``dump/rejected.tsv``. ``--ssl-model`` is a local directory
(``save_pretrained`` layout) or a hub id (needs network or the HF cache); without it the
config's ``data.ssl_model`` is used (inference reads the same field from the S2 checkpoint).

Rerunning skips items whose features are already there, newer than the wav and of the
right shape; ``--overwrite`` redoes them. Files are written atomically, so an interrupted
run leaves no partial file under a final name. Non-finite features (in ``--fp16`` mode
after a retry in fp32), missing or unreadable wavs are rejected with their reason and
counted. Under torchrun each rank takes every ``world``-th item of the manifest; rank 0
merges the rejections and prints the counts. The exit status is non-zero when no item
has features.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from common.audio import AudioError, audio_info, load_audio
from common.config import ConfigError, S2Config, load_config
from common.dist import DistInfo, barrier, distributed_stage
from common.fileio import remove_stale_temps
from common.manifest import MANIFEST_NAME, WAV_DIR, ManifestError, Utterance, read_manifest
from common.progress import RejectionReport
from common.script import ITEMS_KEPT, exit_on_interrupt
from common.sharded import finish_sharded_stage
from modules.ssl import (
    SSL_DIR,
    NonFiniteFeatures,
    SSLError,
    SSLModel,
    extract_features,
    feature_path,
    load_features,
    load_ssl_model,
    save_features,
)

STAGE = "ssl"


@dataclass(frozen=True)
class Outcome:
    status: str  # "processed" | "skipped" | "rejected"
    reason: str = ""
    retried_fp32: bool = False


def _is_done(out: Path, wav: Path, ssl_dim: int, n_frames: int) -> bool:
    """A finished output: readable fp16 [ssl_dim, n_frames], not older than its wav."""
    if not out.is_file() or out.stat().st_mtime < wav.stat().st_mtime:
        return False
    try:
        feats = load_features(out, mmap=True)
    except SSLError:
        return False
    return tuple(feats.shape) == (ssl_dim, n_frames)


def process(model: SSLModel, cfg: S2Config, dump: Path, uid: str, overwrite: bool) -> Outcome:
    """Extract and save the features of one utterance; failures come back as a rejected outcome."""
    sr, hop = cfg.data.sampling_rate, cfg.data.hop_length
    wav_path = dump / WAV_DIR / f"{uid}.wav"
    out = feature_path(dump, uid)
    try:
        header = audio_info(wav_path)
        if header.sample_rate != sr:  # not made by resample.py: its frames would not match the spectrogram's
            return Outcome("rejected", reason=f"wrong sample rate: {header.sample_rate} Hz, expected {sr} Hz "
                           "(rerun resample.py)")
        n_frames = header.frames // hop
        if not overwrite and _is_done(out, wav_path, cfg.data.ssl_dim, n_frames):
            return Outcome("skipped")
        wav = load_audio(wav_path, sr)  # [N]
    except AudioError as err:
        return Outcome("rejected", reason=err.reason)
    retried = False
    try:
        try:
            feats = extract_features(model, wav, hop=hop, sample_rate=sr)  # [D, N // hop]
        except NonFiniteFeatures:
            if not model.fp16:
                raise
            retried = True
            feats = extract_features(model, wav, hop=hop, sample_rate=sr, fp16=False)
        save_features(out, feats)
    except SSLError as err:
        return Outcome("rejected", reason=str(err), retried_fp32=retried)
    return Outcome("processed", retried_fp32=retried)


def _extract_shard(args: argparse.Namespace, info: DistInfo) -> tuple[Counter, RejectionReport]:
    dump = Path(args.dump)
    try:
        cfg = load_config(args.config, S2Config)
        utts: list[Utterance] = read_manifest(dump / MANIFEST_NAME)
        model = load_ssl_model(args.ssl_model or cfg.data.ssl_model, info.device, fp16=args.fp16)
    except (ConfigError, ManifestError, SSLError) as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    if model.hidden_size != cfg.data.ssl_dim:
        raise SystemExit(f"{STAGE}: SSL model {model.source} has hidden size {model.hidden_size}, but "
                         f"{args.config} has data.ssl_dim = {cfg.data.ssl_dim}; use the matching model or config")
    out_dir = dump / SSL_DIR
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out_dir)  # before any rank starts writing
    barrier()

    mine = utts[info.rank::info.world_size]
    counts: Counter = Counter()
    report = RejectionReport(STAGE)
    desc = STAGE if info.world_size == 1 else f"{STAGE} (rank 0 of {info.world_size})"
    bar = tqdm(mine, desc=desc, unit="item", file=sys.stderr, dynamic_ncols=True, disable=not info.is_main)
    for utt in bar:
        outcome = process(model, cfg, dump, utt.id, args.overwrite)
        counts[outcome.status] += 1
        counts["retried_fp32"] += outcome.retried_fp32
        if outcome.status == "rejected":
            report.add(utt.id, str(dump / WAV_DIR / f"{utt.id}.wav"), outcome.reason)
    return counts, report


def main(args: argparse.Namespace) -> None:
    with exit_on_interrupt(STAGE, lambda: ITEMS_KEPT), distributed_stage(STAGE, args.device) as info:
        counts, report = _extract_shard(args, info)
        merged_counts = finish_sharded_stage(STAGE, info, counts, report, Path(args.dump))
        if info.is_main and merged_counts["retried_fp32"]:
            print(f"{STAGE}: {merged_counts['retried_fp32']} item(s) gave non-finite fp16 features and were "
                  "retried in fp32")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dump", type=Path, default=Path("dump"), help="data directory (default: dump)")
    p.add_argument("--config", type=Path, default=Path("configs/s2.json"),
                   help="S2 config: sampling rate, hop length, ssl_dim (default: configs/s2.json)")
    p.add_argument("--ssl-model", default=None,
                   help="HuBERT model: a local save_pretrained directory or a Hugging Face hub id "
                   "(default: the config's data.ssl_model)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: CUDA if available; "
                   "under torchrun each rank uses its local GPU)")
    p.add_argument("--fp16", action="store_true",
                   help="run HuBERT under fp16 autocast; items with non-finite output are retried in fp32")
    p.add_argument("--overwrite", action="store_true", help="redo items whose features already exist")
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
