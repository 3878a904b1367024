"""Helpers shared by the preprocessing stages: a parallel map with a progress bar, and the
rejection report.

``dump/rejected.tsv`` has the columns ``stage id source reason`` and holds one block of
rows per stage. A stage replaces only its own block (rows sorted), so rerunning a stage
leaves the file byte-identical and never loses another stage's rows. A reason reads
``category: detail``; counts are printed per category.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from common.manifest import ManifestError, clean_field, write_text_if_changed

T = TypeVar("T")
R = TypeVar("R")

REJECTED_COLUMNS = ("stage", "id", "source", "reason")


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int, desc: str) -> list[R]:
    """``[fn(item) for item in items]`` with a tqdm bar on stderr.

    ``workers <= 1`` runs in this process; otherwise a process pool (``fn`` must be a
    module-level function). ``fn`` should return per-item failures as values: an
    exception it raises is a bug and propagates.
    """
    results: list[R] = []
    with tqdm(total=len(items), desc=desc, unit="item", file=sys.stderr, dynamic_ncols=True) as bar:
        if workers <= 1 or len(items) <= 1:
            for item in items:
                results.append(fn(item))
                bar.update(1)
            return results
        chunksize = max(1, min(32, len(items) // (workers * 8)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(fn, items, chunksize=chunksize):
                results.append(result)
                bar.update(1)
    return results


def reason_category(reason: str) -> str:
    """The groupable part of a reason: the text before the first colon."""
    return reason.split(":", 1)[0].strip()


class RejectionReport:
    """Rejected items of one stage; ``write`` merges them into the shared report file."""

    def __init__(self, stage: str):
        self.stage = stage
        self.rows: list[tuple[str, str, str]] = []

    def add(self, item_id: str, source: str, reason: str) -> None:
        self.rows.append((clean_field(item_id) or "-", clean_field(source), clean_field(reason)))

    def __len__(self) -> int:
        return len(self.rows)

    def counts(self) -> dict[str, int]:
        """Rejections per reason category, most frequent first."""
        return dict(Counter(reason_category(r) for _, _, r in self.rows).most_common())

    def write(self, path: str | Path) -> None:
        """Replace this stage's block in ``path`` (created if missing), atomically."""
        path = Path(path)
        blocks: dict[str, list[str]] = {}
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            if not lines or tuple(lines[0].split("\t")) != REJECTED_COLUMNS:
                raise ManifestError(f"{path}:1: expected header {' '.join(REJECTED_COLUMNS)!r}; delete the file")
            for lineno, line in enumerate(lines[1:], start=2):
                if not line:
                    continue
                cells = line.split("\t")
                if len(cells) != len(REJECTED_COLUMNS):
                    raise ManifestError(f"{path}:{lineno}: expected {len(REJECTED_COLUMNS)} columns, got {len(cells)}")
                blocks.setdefault(cells[0], []).append(line)
        blocks[self.stage] = ["\t".join((self.stage, *row)) for row in sorted(set(self.rows))]
        out = ["\t".join(REJECTED_COLUMNS)] + [line for block in blocks.values() for line in block]
        write_text_if_changed(path, "\n".join(out) + "\n")

    def summary(self) -> list[str]:
        """Lines ``  <category>: <count>`` for printing."""
        return [f"  {cat}: {n}" for cat, n in self.counts().items()]


def print_summary(stage: str, processed: int, skipped: int, report: RejectionReport, report_path: Path) -> None:
    """Print the end-of-stage counts: processed, skipped (already done), rejected per reason."""
    print(f"{stage}: processed {processed}, skipped {skipped} (already done), rejected {len(report)}")
    if len(report):
        print(f"{stage}: rejected items per reason (details in {report_path}):")
        for line in report.summary():
            print(line)
