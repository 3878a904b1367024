"""Stage 2: turn the manifest's transcripts into phones (``dump/phonemes.tsv``).

::

    python gen_phonemes.py --dump dump
    python gen_phonemes.py --dump dump --workers 8 --overwrite

Reads ``dump/manifest.tsv`` (written by resample.py) and writes ``dump/phonemes.tsv``
(``id phones word2ph norm_text``; phones and word2ph space-separated), sorted by id and
written atomically, so a rerun gives a byte-identical file. Items already in the table
are skipped unless ``--overwrite`` (use it after editing transcripts); rows of ids no
longer in the manifest are dropped. Texts the frontend cannot handle (unknown characters,
no phones) go to ``dump/rejected.tsv`` with the reason; counts are printed at the end.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from common.manifest import (
    MANIFEST_NAME,
    PHONEMES_NAME,
    REJECTED_NAME,
    ManifestError,
    PhonemeEntry,
    prepare_dump,
    read_manifest,
    read_phonemes,
    write_phonemes,
)
from common.progress import RejectionReport, parallel_map, print_summary
from text.cleaner import TextFrontendError, clean_text
from text.errors import MissingDependencyError

STAGE = "gen_phonemes"


@dataclass(frozen=True)
class G2POutcome:
    id: str
    entry: PhonemeEntry | None
    reason: str = ""
    missing_dependency: str = ""  # a setup problem: the whole stage stops


def g2p(job: tuple[str, str, str]) -> G2POutcome:
    """Phones of one (id, text, lang) job; frontend errors come back as a reason."""
    uid, text, lang = job
    try:
        result = clean_text(text, lang)
    except TextFrontendError as err:
        return G2POutcome(uid, None, reason=f"text: {err}")
    except MissingDependencyError as err:
        return G2POutcome(uid, None, missing_dependency=str(err))
    if not result.phones:
        return G2POutcome(uid, None, reason="text: no phones")
    return G2POutcome(uid, PhonemeEntry(uid, list(result.phones), list(result.word2ph), result.norm_text))


def main(args: argparse.Namespace) -> None:
    try:
        dump = prepare_dump(args.dump, STAGE)  # writable, temp files of killed writers removed
    except ManifestError as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    out_path = dump / PHONEMES_NAME
    try:
        utts = read_manifest(dump / MANIFEST_NAME)
        done = {} if args.overwrite or not out_path.exists() else {e.id: e for e in read_phonemes(out_path)}
    except ManifestError as err:
        raise SystemExit(f"{STAGE}: {err}") from None

    wanted = {u.id for u in utts}
    kept = {uid: e for uid, e in done.items() if uid in wanted}
    todo = [u for u in utts if u.id not in kept]
    source = {u.id: u.source for u in todo}
    outcomes = parallel_map(g2p, [(u.id, u.text, u.lang) for u in todo], args.workers, STAGE)

    missing = sorted({o.missing_dependency for o in outcomes if o.missing_dependency})
    if missing:
        raise SystemExit(f"{STAGE}: " + "; ".join(missing))
    report = RejectionReport(STAGE)
    entries = dict(kept)
    for o in outcomes:
        if o.entry is None:
            report.add(o.id, source[o.id], o.reason)
        else:
            entries[o.id] = o.entry

    write_phonemes(out_path, entries.values())
    report.write(dump / REJECTED_NAME)
    processed = len(outcomes) - len(report)
    print_summary(STAGE, processed, len(kept), report, dump / REJECTED_NAME)
    if not entries:
        raise SystemExit(f"{STAGE}: no transcript could be converted; see {dump / REJECTED_NAME} for the reasons")
    print(f"{STAGE}: {len(entries)} of {len(utts)} utterances in {out_path}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dump", type=Path, default=Path("dump"), help="data directory written by resample.py")
    p.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="worker processes (default: min(4, CPUs))"
    )
    p.add_argument("--overwrite", action="store_true", help="redo items already in phonemes.tsv")
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
