"""Stage 6b: BERT word features of every utterance, for S1 models with ``model.bert_dim > 0``.

    python extract_bert_s1.py --dump dump --config configs/s1.json
    python extract_bert_s1.py --dump dump --config configs/s1.json --bert-model pretrained/chinese-roberta-wwm-ext-large
    torchrun --nproc_per_node=4 extract_bert_s1.py --dump dump --config configs/s1.json

Reads ``dump/manifest.tsv`` (text and language) and ``dump/phonemes.tsv``; writes
``dump/bert/<id>.pt`` (fp16 ``[bert_dim, n_phones]``, see ``modules/bert.py``: the masked-LM's
``hidden_states[-3]`` per character of each Chinese part, repeated per phone by word2ph, zeros
elsewhere) and this stage's rows of ``dump/rejected.tsv``. ``--bert-model`` is a local
directory (``save_pretrained`` layout) or a hub id; without it the S1 config's
``data.bert_model`` is used (inference reads the same field from the S1 checkpoint). With
``model.bert_dim`` 0 in the config there is nothing to do, and the stage says so.

The text is run through the text frontend again (for its per-language parts); the phones it
gives must equal those in ``phonemes.tsv``, otherwise the stage stops and asks to rerun
gen_phonemes.py (the frontend or the transcripts changed since). Rerunning skips items whose
file is there with the right shape; ``--overwrite`` redoes them (use it after editing
transcripts). Files are written atomically. Texts whose characters do not line up with the
BERT tokenizer, and non-finite features, are rejected with their reason; gen_filelist_s1.py
leaves items without features out. Under torchrun each rank takes every ``world``-th item;
rank 0 merges the rejections and prints the counts. Exit status non-zero when no item has
features.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from common.config import ConfigError, S1Config, load_config
from common.dist import DistInfo, all_gather_objects, barrier, distributed_stage
from common.fileio import remove_stale_temps
from common.manifest import MANIFEST_NAME, PHONEMES_NAME, ManifestError, read_manifest, read_phonemes
from common.progress import RejectionReport
from common.script import ITEMS_KEPT, exit_on_interrupt
from common.sharded import finish_sharded_stage
from modules.bert import (
    BERT_DIR,
    BertError,
    LoadedBert,
    bert_features,
    bert_features_batch,
    bert_path,
    load_bert_features,
    load_bert_model,
    save_bert_features,
)
from text.cleaner import clean_text
from text.errors import MissingDependencyError, TextFrontendError
from text.result import G2PResult

STAGE = "bert"
CHUNK = 32  # utterances whose Chinese parts are encoded together


@dataclass(frozen=True)
class Job:
    id: str
    text: str
    lang: str
    phones: list[str]  # from phonemes.tsv
    source: str  # the original audio file (for the rejection report)


def is_done(path: Path, bert_dim: int, n_phones: int) -> bool:
    """A finished output: a readable fp16 [bert_dim, n_phones] file."""
    if not path.is_file():
        return False
    try:
        return tuple(load_bert_features(path, mmap=True).shape) == (bert_dim, n_phones)
    except BertError:
        return False


def frontend(job: Job) -> G2PResult | str:
    """The job's ``G2PResult``, or why its phones differ from phonemes.tsv's."""
    try:
        result = clean_text(job.text, job.lang)
    except TextFrontendError as err:
        return f"the text frontend now fails on it ({err})"
    except MissingDependencyError as err:
        return f"the text frontend needs a package that is not installed ({err})"
    if result.phones != job.phones:
        return f"the text frontend now gives {len(result.phones)} phones where {PHONEMES_NAME} has {len(job.phones)}"
    return result


def process_chunk(bert: LoadedBert, dump: Path, jobs: list[Job], counts: Counter, report: RejectionReport,
                  stale: list[str]) -> None:
    """Features of ``jobs`` (one batched BERT pass; an item that fails is retried alone to get its reason)."""
    results: list[tuple[Job, G2PResult]] = []
    for job in jobs:
        outcome = frontend(job)
        if isinstance(outcome, str):
            stale.append(f"{job.id}: {outcome}")
        else:
            results.append((job, outcome))
    try:
        feats = bert_features_batch(bert, [r for _, r in results])
    except BertError:  # find the culprit(s): per item
        feats = None
    for i, (job, result) in enumerate(results):
        try:
            save_bert_features(bert_path(dump, job.id), feats[i] if feats is not None else bert_features(bert, result))
        except BertError as err:
            counts["rejected"] += 1
            report.add(job.id, job.source, f"bert: {err}")
            continue
        counts["processed"] += 1


def _extract_shard(args: argparse.Namespace, info: DistInfo, cfg: S1Config) -> tuple[Counter, RejectionReport,
                                                                                     list[str]]:
    dump = Path(args.dump)
    bert_dim = cfg.model.bert_dim
    try:
        texts = {u.id: u for u in read_manifest(dump / MANIFEST_NAME)}
        entries = read_phonemes(dump / PHONEMES_NAME)
        bert = load_bert_model(args.bert_model or cfg.data.bert_model, info.device)
    except (ManifestError, BertError) as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    if bert.hidden_size != bert_dim:
        raise SystemExit(f"{STAGE}: BERT model {bert.source} has hidden size {bert.hidden_size}, but {args.config} "
                         f"has model.bert_dim = {bert_dim}; use the matching model or config")
    out_dir = dump / BERT_DIR
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out_dir)  # before any rank starts writing
    barrier()

    counts: Counter = Counter()
    report = RejectionReport(STAGE)
    stale: list[str] = []
    mine = entries[info.rank::info.world_size]
    desc = STAGE if info.world_size == 1 else f"{STAGE} (rank 0 of {info.world_size})"
    todo: list[Job] = []
    for n, entry in enumerate(tqdm(mine, desc=desc, unit="item", file=sys.stderr, dynamic_ncols=True,
                                   disable=not info.is_main), start=1):
        utt = texts.get(entry.id)
        if utt is None:
            counts["rejected"] += 1
            report.add(entry.id, str(dump / PHONEMES_NAME), f"not in manifest: no row in {MANIFEST_NAME} "
                       "(rerun gen_phonemes.py)")
        elif not args.overwrite and is_done(bert_path(dump, entry.id), bert_dim, len(entry.phones)):
            counts["skipped"] += 1
        else:
            todo.append(Job(entry.id, utt.text, utt.lang, entry.phones, utt.source))
        if len(todo) == CHUNK or (todo and n == len(mine)):
            process_chunk(bert, dump, todo, counts, report, stale)
            todo = []
    return counts, report, stale


def main(args: argparse.Namespace) -> None:
    try:
        cfg = load_config(args.config, S1Config)
    except ConfigError as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    if cfg.model.bert_dim == 0:
        if os.environ.get("RANK", "0") == "0":
            print(f"{STAGE}: {args.config} has model.bert_dim = 0: the S1 model takes no BERT features, nothing to do")
        return
    with exit_on_interrupt(STAGE, lambda: ITEMS_KEPT), distributed_stage(STAGE, args.device) as info:
        counts, report, stale = _extract_shard(args, info, cfg)
        dump = Path(args.dump)
        stale = sorted(s for part in all_gather_objects(stale) for s in part)
        if stale:
            raise SystemExit(f"{STAGE}: {len(stale)} item(s) of {dump / PHONEMES_NAME} are out of date (first: "
                             f"{stale[0]}); rerun gen_phonemes.py --overwrite, then this stage" if info.is_main else 1)
        finish_sharded_stage(STAGE, info, counts, report, dump, what="BERT features")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dump", type=Path, default=Path("dump"), help="data directory (default: dump)")
    p.add_argument("--config", "-c", type=Path, default=Path("configs/s1.json"),
                   help="S1 config: model.bert_dim and data.bert_model (default: configs/s1.json)")
    p.add_argument("--bert-model", default=None,
                   help="masked-LM BERT model: a local save_pretrained directory or a Hugging Face hub id "
                   "(default: the config's data.bert_model)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: CUDA if available; "
                   "under torchrun each rank uses its local GPU)")
    p.add_argument("--overwrite", action="store_true", help="redo items whose features already exist")
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
