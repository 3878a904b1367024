"""Stage 7: write S1's training and validation lists from the tokens and the phonemes.

    python gen_filelist_s1.py --dump dump --config configs/s1.json
    python gen_filelist_s1.py --dump dump --config configs/s1.json --seed 7 --val-items 16
    python gen_filelist_s1.py --dump dump --config configs/s1.json --concat-max-seconds 20

Reads ``dump/semantic.tsv``, ``dump/semantic.json`` (the token rate and codebook size come
from here, never from an assumption) and ``dump/phonemes.tsv``. An item needs both tokens
and phonemes; it is then filtered with the config's ``data`` section, in this order:

- ``too few tokens``: fewer than ``min_tokens`` tokens;
- ``too long``: more than ``max_seconds * token_rate`` tokens;
- ``too many phones``: more than ``max_phones`` phones;
- ``unknown phone``: a phone not in the symbol table;
- ``phone rate``: phones per second outside ``[min_phones_per_second, max_phones_per_second]``,
  with seconds = tokens / token_rate;
- ``no BERT features`` / ``stale BERT features`` (only when the config's ``model.bert_dim > 0``):
  ``dump/bert/<id>.pt`` is missing or unreadable (run extract_bert_s1.py; its rejections say why),
  or is not ``[bert_dim, n_phones]`` (rerun extract_bert_s1.py with ``--overwrite``).

Writes ``dump/s1_train.tsv`` and ``dump/s1_val.tsv``: a header ``id<TAB>phones<TAB>tokens``,
then one row per item sorted by id, ``phones`` = space-separated symbols, ``tokens`` =
space-separated token ids. ``--val-items`` items (default: the config's ``data.val_items``)
are drawn for validation with ``--seed`` (default: ``train.seed``); the same inputs and seed
give byte-identical files. Dropped items go to ``dump/rejected.tsv`` (stage ``s1_list``)
and are counted per reason; an empty training list is an error (non-zero exit).

Concatenation (``data.concat_max_seconds > 0`` or ``--concat-max-seconds``; ``s1/concat.py``):
after the split, consecutive training utterances of one speaker (speakers from
``dump/manifest.tsv``) are joined into items of up to that many seconds with a pause between
them (an ``SP`` phone and ``data.concat_pause_tokens`` silence tokens; zero BERT features,
written to ``dump/bert/<joined id>.pt``). A joined item must pass the filters above, else its
parts stay single items. Validation items are never joined. The join points go to
``dump/s1_joins.tsv`` (removed when concatenation is off).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

from common.config import ConfigError, S1Config, S1DataConfig, load_config
from common.listcheck import features_shape, write_pair
from common.manifest import (
    MANIFEST_NAME,
    PHONEMES_NAME,
    REJECTED_NAME,
    ManifestError,
    prepare_dump,
    read_manifest,
    read_phonemes,
)
from common.progress import RejectionReport
from modules.bert import BertError, bert_path, load_bert_features, save_bert_features
from s1.concat import JOINS_NAME, Joined, join_bert, join_rows, plan_groups, silence_token, write_joins
from s1.data import (
    S1_TRAIN_LIST,
    S1_VAL_LIST,
    SEMANTIC_JSON,
    SEMANTIC_TSV,
    S1DataError,
    S1ListRow,
    SemanticMeta,
    check_symbols,
    load_semantic_meta,
    read_semantic_tsv,
    write_s1_list,
)
from text.symbols import SYMBOL_TO_ID

STAGE = "s1_list"


@dataclass
class Selection:
    rows: list[S1ListRow]  # items that passed every filter, sorted by id
    report: RejectionReport  # the others, with reasons


def filter_reason(phones: list[str], n_tokens: int, token_rate: float, data: S1DataConfig) -> str | None:
    """Why an item is left out of S1 training (``category: detail``), or None to keep it."""
    n_phones = len(phones)
    max_tokens = data.max_seconds * token_rate
    if n_tokens < data.min_tokens or n_tokens == 0:
        return f"too few tokens: {n_tokens} < min_tokens={data.min_tokens}"
    if n_tokens > max_tokens:
        return (f"too long: {n_tokens} tokens = {n_tokens / token_rate:.2f} s > max_seconds={data.max_seconds:g} "
                f"at {token_rate:g} tokens/s")
    if n_phones > data.max_phones:
        return f"too many phones: {n_phones} > max_phones={data.max_phones}"
    unknown = [p for p in phones if p not in SYMBOL_TO_ID]
    if unknown:
        return f"unknown phone: {unknown[0]!r} is not in the symbol table"
    rate = n_phones / (n_tokens / token_rate)
    if not data.min_phones_per_second <= rate <= data.max_phones_per_second:
        return (f"phone rate: {rate:.2f} phones/s outside [{data.min_phones_per_second:g}, "
                f"{data.max_phones_per_second:g}] ({n_phones} phones, {n_tokens / token_rate:.2f} s)")
    return None


def bert_reason(dump: Path, uid: str, bert_dim: int, n_phones: int) -> str | None:
    """Why the BERT features of ``uid`` cannot be used (``category: detail``), or None."""
    path = bert_path(dump, uid)
    shape, error = features_shape(path)  # header only (common/listcheck.py)
    if shape is None:
        return f"no BERT features: {error} (run extract_bert_s1.py)"
    if shape != (bert_dim, n_phones):
        return (f"stale BERT features: {path} has shape {list(shape)}, expected [{bert_dim}, {n_phones}] "
                "(rerun extract_bert_s1.py --overwrite)")
    return None


def select(semantic: dict[str, list[int]], phonemes: dict[str, list[str]], meta: SemanticMeta,
           data: S1DataConfig, sources: tuple[Path, Path], bert_dim: int = 0) -> Selection:
    """Join tokens and phonemes by id and apply the filters (and, if ``bert_dim > 0``, need BERT
    features in the dump directory holding ``sources``)."""
    sem_path, ph_path = sources
    report = RejectionReport(STAGE)
    rows = []
    for uid in sorted(set(semantic) | set(phonemes)):
        if uid not in phonemes:
            report.add(uid, str(sem_path), f"no phonemes: id has tokens but no row in {ph_path.name}")
            continue
        if uid not in semantic:
            report.add(uid, str(ph_path), f"no tokens: id has phonemes but no row in {sem_path.name}")
            continue
        reason = filter_reason(phonemes[uid], len(semantic[uid]), meta.token_rate, data)
        if reason is None and bert_dim > 0:
            reason = bert_reason(ph_path.parent, uid, bert_dim, len(phonemes[uid]))
        if reason:
            report.add(uid, str(sem_path), reason)
        else:
            rows.append(S1ListRow(uid, phonemes[uid], semantic[uid]))
    return Selection(rows, report)


def split(rows: list[S1ListRow], val_items: int, seed: int) -> tuple[list[S1ListRow], list[S1ListRow]]:
    """(train, val): ``val_items`` rows drawn with ``seed`` from the id-sorted rows; both sorted by id."""
    ordered = sorted(rows, key=lambda r: r.id)
    picked = list(range(len(ordered)))
    random.Random(seed).shuffle(picked)
    val_idx = set(picked[:val_items])
    train = [r for i, r in enumerate(ordered) if i not in val_idx]
    val = [r for i, r in enumerate(ordered) if i in val_idx]
    return train, val


def concatenate(train: list[S1ListRow], speakers: dict[str, str], semantic: dict[str, list[int]],
                meta: SemanticMeta, data: S1DataConfig, max_seconds: float, seed: int) -> list[Joined]:
    """The training rows as joined items (single-part items for rows left alone); see the module docstring."""
    max_tokens = int(min(max_seconds, data.max_seconds) * meta.token_rate)
    pause = silence_token(list(semantic.values()))
    joined = []
    for group in plan_groups(train, speakers, max_tokens, data.max_phones, data.concat_pause_tokens, seed):
        item = join_rows(group, pause, data.concat_pause_tokens)
        if len(group) > 1 and filter_reason(item.row.phones, len(item.row.tokens), meta.token_rate, data):
            joined.extend(join_rows([row], pause, 0) for row in group)
        else:
            joined.append(item)
    return joined


def write_joined_bert(dump: Path, joined: list[Joined]) -> None:
    """``dump/bert/<joined id>.pt`` for every multi-part item, from its parts' features."""
    for item in joined:
        if len(item.parts) > 1:
            feats = [load_bert_features(bert_path(dump, uid)) for uid in item.parts]
            save_bert_features(bert_path(dump, item.row.id), join_bert(feats, item))


def main(args: argparse.Namespace) -> None:
    try:
        dump = prepare_dump(args.dump, STAGE)  # writable, temp files of killed writers removed
    except ManifestError as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    try:
        cfg = load_config(args.config, S1Config)
        meta = load_semantic_meta(dump / SEMANTIC_JSON)
        check_symbols(meta, dump / SEMANTIC_JSON)
        if cfg.model.codebook_size != meta.codebook_size:
            raise S1DataError(f"{args.config}: model.codebook_size={cfg.model.codebook_size}, but the tokens in "
                              f"{dump / SEMANTIC_TSV} come from an S2 codebook of {meta.codebook_size} codes "
                              f"({dump / SEMANTIC_JSON}); set model.codebook_size to {meta.codebook_size}")
        semantic = read_semantic_tsv(dump / SEMANTIC_TSV)
        for uid, toks in semantic.items():
            if toks and not 0 <= min(toks) <= max(toks) < meta.codebook_size:
                raise S1DataError(f"{dump / SEMANTIC_TSV}: id {uid!r} has a token outside the codebook "
                                  f"[0, {meta.codebook_size}) of {dump / SEMANTIC_JSON}; rerun extract_vq_s1.py "
                                  "with --overwrite")
        phonemes = {e.id: e.phones for e in read_phonemes(dump / PHONEMES_NAME)}
    except (ConfigError, S1DataError, ManifestError) as err:
        raise SystemExit(f"{STAGE}: {err}") from None
    seed = cfg.train.seed if args.seed is None else args.seed
    val_items = cfg.data.val_items if args.val_items is None else args.val_items
    if val_items < 0:
        raise SystemExit(f"{STAGE}: --val-items must be >= 0, got {val_items}")

    sel = select(semantic, phonemes, meta, cfg.data, (dump / SEMANTIC_TSV, dump / PHONEMES_NAME), cfg.model.bert_dim)
    sel.report.write(dump / REJECTED_NAME)
    print(f"{STAGE}: {len(semantic)} items with tokens, {len(phonemes)} with phonemes; kept {len(sel.rows)}, "
          f"left out {len(sel.report)} (token rate {meta.token_rate:g}/s from {dump / SEMANTIC_JSON})")
    if len(sel.report):
        print(f"{STAGE}: left out per reason (details in {dump / REJECTED_NAME}):")
        for line in sel.report.summary():
            print(line)
    if len(sel.rows) <= val_items:
        raise SystemExit(f"{STAGE}: only {len(sel.rows)} item(s) passed the filters, which leaves nothing to train "
                         f"on after {val_items} validation item(s); see the counts above and {dump / REJECTED_NAME} "
                         "(lower --val-items, or relax the data section of the config)")
    train, val = split(sel.rows, val_items, seed)
    concat_s = cfg.data.concat_max_seconds if args.concat_max_seconds is None else args.concat_max_seconds
    if concat_s < 0:
        raise SystemExit(f"{STAGE}: --concat-max-seconds must be >= 0, got {concat_s:g}")
    if concat_s > 0:
        try:
            speakers = {u.id: u.speaker for u in read_manifest(dump / MANIFEST_NAME)}
            joined = concatenate(train, speakers, semantic, meta, cfg.data, concat_s, seed)
            if cfg.model.bert_dim > 0:
                write_joined_bert(dump, joined)
        except (ManifestError, S1DataError, BertError) as err:
            raise SystemExit(f"{STAGE}: concatenation: {err}") from None
        write_joins(dump / JOINS_NAME, joined)
        multi = [j for j in joined if len(j.parts) > 1]
        print(f"{STAGE}: concatenation up to {concat_s:g} s: {len(train)} training utterances -> {len(joined)} "
              f"items ({len(multi)} joined from {sum(len(j.parts) for j in multi)}); join points in "
              f"{dump / JOINS_NAME}")
        train = [j.row for j in joined]
    else:
        (dump / JOINS_NAME).unlink(missing_ok=True)
    write_pair(dump / S1_VAL_LIST, lambda: write_s1_list(dump / S1_TRAIN_LIST, train),
               lambda: write_s1_list(dump / S1_VAL_LIST, val))  # never the lists of two runs side by side
    hours = sum(len(r.tokens) for r in train) / meta.token_rate / 3600
    print(f"{STAGE}: {len(train)} training items ({hours:.2f} h) in {dump / S1_TRAIN_LIST}, "
          f"{len(val)} validation items in {dump / S1_VAL_LIST} (seed {seed})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dump", type=Path, default=Path("dump"), help="data directory (default: dump)")
    p.add_argument("--config", "-c", type=Path, default=Path("configs/s1.json"),
                   help="S1 config; its data section holds the filters (default: configs/s1.json)")
    p.add_argument("--seed", type=int, default=None, help="seed of the validation draw (default: train.seed)")
    p.add_argument("--val-items", type=int, default=None,
                   help="number of validation items (default: data.val_items of the config)")
    p.add_argument("--concat-max-seconds", type=float, default=None,
                   help="join a speaker's consecutive training utterances into items up to this long "
                        "(default: data.concat_max_seconds of the config; 0 = off)")
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
