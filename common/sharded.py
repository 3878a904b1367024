"""The end of a stage sharded across torchrun ranks (extract_ssl_s2.py, extract_bert_s1.py).

Every rank brings its counts (``processed``, ``skipped``, ...) and its rejected items; the counts
are summed and the rejections merged over the ranks, rank 0 writes them to ``dump/rejected.tsv``
and prints the summary, and every rank exits non-zero when no item at all is done. Without
torchrun the collectives are no-ops.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from common.dist import DistInfo, all_gather_objects, barrier
from common.manifest import REJECTED_NAME
from common.progress import RejectionReport, print_summary


def finish_sharded_stage(stage: str, info: DistInfo, counts: Counter, report: RejectionReport, dump: Path,
                         what: str = "features") -> Counter:
    """Merge, report and check the outcome of every rank (see the module docstring); return the summed counts."""
    merged_counts: Counter = Counter()
    merged = RejectionReport(stage)
    for part_counts, part_rows in all_gather_objects((counts, report.rows)):
        merged_counts.update(part_counts)
        merged.rows.extend(part_rows)
    if info.is_main:
        merged.write(dump / REJECTED_NAME)
        print_summary(stage, merged_counts["processed"], merged_counts["skipped"], merged, dump / REJECTED_NAME)
    barrier()
    if merged_counts["processed"] + merged_counts["skipped"] == 0:
        raise SystemExit(f"{stage}: no item has {what}; see {dump / REJECTED_NAME} for the reasons"
                         if info.is_main else 1)
    return merged_counts
