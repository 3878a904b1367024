"""S1 data: the semantic-token artefacts, the S1 list files, the dataset, collate and sampler.

Files (tab-separated, UTF-8, one header line, rows sorted by id, written atomically):

- ``dump/semantic.tsv`` (extract_vq_s1.py): ``id tokens``; ``tokens`` = space-separated
  codebook indices of one utterance, at ``token_rate`` Hz.
- ``dump/semantic.json`` (extract_vq_s1.py): ``SemanticMeta`` — token rate, codebook size,
  EOS id and the S2 checkpoint that produced the tokens. Every later stage reads these
  facts from here; none of them is typed twice.
- ``dump/s1_train.tsv`` / ``dump/s1_val.tsv`` (gen_filelist_s1.py): ``id phones tokens``;
  ``phones`` = space-separated symbols of ``text.symbols``, ``tokens`` as above.

``S1Dataset`` reads a list file and validates every line (unknown phones, token ids outside
the codebook, empty rows) with errors naming the file and line; for a model with BERT
features (``bert_dim > 0``) it also reads ``dump/bert/<id>.pt`` (fp16 ``[bert_dim, L]``,
extract_bert_s1.py) per item; for a model with a speaker embedding it takes ``speakers`` (item id
-> speaker row, ``s1.concat.item_speakers``) and gives every item its row. ``collate_s1``
right-pads phonemes with 0, tokens with the EOS id and BERT features with zeros.
``TokenBucketSampler`` groups items of similar length into batches bounded by a token budget
and gives every DDP rank the same number of batches::

    ds = S1Dataset("dump/s1_train.tsv", load_semantic_meta("dump/semantic.json"))
    sampler = TokenBucketSampler(ds.lengths, cfg.train.max_batch_tokens, cfg.train.max_batch_size,
                                 shuffle=True, seed=cfg.train.seed, rank=info.rank, world_size=info.world_size)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=ds.collate, num_workers=cfg.train.num_workers)
    sampler.set_epoch(epoch)  # before each epoch; every batch is an S1Batch
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from common.fileio import atomic_write_text
from modules.bert import BertError, bert_path, load_bert_features
from text.symbols import SYMBOL_TO_ID, SYMBOLS_MD5

SEMANTIC_TSV = "semantic.tsv"
SEMANTIC_JSON = "semantic.json"
S1_TRAIN_LIST = "s1_train.tsv"
S1_VAL_LIST = "s1_val.tsv"
SEMANTIC_COLUMNS = ("id", "tokens")
S1_LIST_COLUMNS = ("id", "phones", "tokens")
META_VERSION = 1
PHONE_PAD_ID = 0


class S1DataError(ValueError):
    """An S1 data file or value that cannot be used; the message names the file (and line)."""


# ----------------------------------------------------------------------------- semantic.json


@dataclass
class SemanticMeta:
    """What the tokens in ``semantic.tsv`` mean and where they came from."""

    token_rate: float  # tokens per second (S2 config's token_rate)
    codebook_size: int  # valid token ids are 0 .. codebook_size - 1
    eos_id: int  # = codebook_size; S1's end-of-speech and token padding id
    semantic_frame_rate: str  # "25hz" | "50hz" (S2 model.semantic_frame_rate)
    ssl_dim: int  # feature dimension the S2 model expects
    s2_checkpoint: str  # path of the S2 checkpoint file, as resolved when extracting
    s2_step: int  # its training step
    s2_sha256: str  # sha256 of the checkpoint file: identifies it for resuming
    symbols_md5: str  # phone symbol table of the S2 checkpoint
    n_items: int  # rows in semantic.tsv
    version: int = META_VERSION


def save_semantic_meta(meta: SemanticMeta, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(asdict(meta), indent=2, ensure_ascii=False) + "\n")


def load_semantic_meta(path: str | Path) -> SemanticMeta:
    """Read and check ``semantic.json``; errors name the file and the bad key."""
    path = Path(path)
    if not path.is_file():
        raise S1DataError(f"{path}: semantic metadata not found (run extract_vq_s1.py first)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise S1DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise S1DataError(f"{path}: expected a JSON object")
    names = [f.name for f in fields(SemanticMeta)]
    missing = [n for n in names if n not in raw and n != "version"]
    if missing:
        raise S1DataError(f"{path}: missing key(s) {', '.join(missing)}; rerun extract_vq_s1.py")
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise S1DataError(f"{path}: unknown key(s) {', '.join(unknown)}")
    meta = SemanticMeta(**raw)
    if meta.version != META_VERSION:
        raise S1DataError(f"{path}: version {meta.version} is not supported (need {META_VERSION})")
    if not (isinstance(meta.token_rate, (int, float)) and meta.token_rate > 0):
        raise S1DataError(f"{path}: token_rate must be a positive number, got {meta.token_rate!r}")
    if not (isinstance(meta.codebook_size, int) and meta.codebook_size > 0):
        raise S1DataError(f"{path}: codebook_size must be a positive integer, got {meta.codebook_size!r}")
    if meta.eos_id != meta.codebook_size:
        raise S1DataError(f"{path}: eos_id ({meta.eos_id}) must equal codebook_size ({meta.codebook_size})")
    meta.token_rate = float(meta.token_rate)
    return meta


def check_symbols(meta: SemanticMeta, source: str | Path) -> None:
    """Fail when the tokens were made with an S2 model trained on another phone table."""
    if meta.symbols_md5 != SYMBOLS_MD5:
        raise S1DataError(f"{source}: the S2 checkpoint behind these tokens used a different phone symbol table "
                          f"(md5 {meta.symbols_md5}, this code has {SYMBOLS_MD5}); "
                          "re-extract the tokens with a matching S2 checkpoint")


# ----------------------------------------------------------------------------- tables


def _table_lines(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each non-empty data line, after checking the header and column count."""
    if not path.is_file():
        raise S1DataError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise S1DataError(f"{path}: not valid UTF-8 ({e})") from None
    lines = text.split("\n")
    header = tuple(lines[0].rstrip("\r").split("\t"))
    if header != columns:
        raise S1DataError(f"{path}:1: expected header {' '.join(columns)!r}, got {' '.join(header)!r}")
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue
        cells = line.split("\t")
        if len(cells) != len(columns):
            raise S1DataError(f"{path}:{lineno}: expected {len(columns)} tab-separated columns, got {len(cells)}")
        yield lineno, cells


def parse_tokens(cell: str, where: str) -> list[int]:
    try:
        return [int(t) for t in cell.split()]
    except ValueError:
        raise S1DataError(f"{where}: tokens must be space-separated integers, got {cell[:60]!r}") from None


def read_semantic_tsv(path: str | Path) -> dict[str, list[int]]:
    """``id -> tokens`` from ``semantic.tsv`` (duplicate ids and non-integers are errors)."""
    path = Path(path)
    out: dict[str, list[int]] = {}
    for lineno, (uid, cell) in _table_lines(path, SEMANTIC_COLUMNS):
        if uid in out:
            raise S1DataError(f"{path}:{lineno}: duplicate id {uid!r}")
        out[uid] = parse_tokens(cell, f"{path}:{lineno}")
    return out


def format_semantic_tsv(entries: dict[str, Sequence[int]]) -> str:
    """The text of ``semantic.tsv``: header, then one row per id in sorted order."""
    lines = ["\t".join(SEMANTIC_COLUMNS)]
    lines += [f"{uid}\t{' '.join(str(int(t)) for t in entries[uid])}" for uid in sorted(entries)]
    return "\n".join(lines) + "\n"


def write_semantic_tsv(path: str | Path, entries: dict[str, Sequence[int]]) -> None:
    atomic_write_text(path, format_semantic_tsv(entries))


@dataclass(frozen=True)
class S1ListRow:
    id: str
    phones: list[str]
    tokens: list[int]


def write_s1_list(path: str | Path, rows: Iterable[S1ListRow]) -> None:
    """Write an S1 list file atomically, rows sorted by id."""
    lines = ["\t".join(S1_LIST_COLUMNS)]
    for row in sorted(rows, key=lambda r: r.id):
        lines.append(f"{row.id}\t{' '.join(row.phones)}\t{' '.join(str(int(t)) for t in row.tokens)}")
    atomic_write_text(path, "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- dataset


@dataclass
class S1Item:
    id: str
    phones: Tensor  # [L] int64 phone ids
    tokens: Tensor  # [T] int64 semantic tokens (no EOS)
    bert: Tensor | None = None  # [bert_dim, L] fp16 BERT features, when the model takes them
    speaker: int | None = None  # row of the speaker table, when the model takes speakers


@dataclass
class S1Batch:
    ids: list[str]
    phones: Tensor  # [B, L] int64, right-padded with PHONE_PAD_ID (a real symbol: use phone_lens to mask)
    phone_lens: Tensor  # [B] int64
    tokens: Tensor  # [B, T] int64, right-padded with the EOS id
    token_lens: Tensor  # [B] int64
    bert: Tensor | None = None  # [B, bert_dim, L] fp16, right-padded with zeros (None: no BERT features)
    speakers: Tensor | None = None  # [B] int64 speaker rows (None: the model takes no speakers)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> S1Batch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return S1Batch(self.ids, *(t.to(device, non_blocking=non_blocking)
                                   for t in (self.phones, self.phone_lens, self.tokens, self.token_lens)),
                       bert=move(self.bert), speakers=move(self.speakers))

    def pin_memory(self) -> S1Batch:
        return S1Batch(self.ids, *(t.pin_memory() for t in (self.phones, self.phone_lens, self.tokens,
                                                             self.token_lens)),
                       bert=None if self.bert is None else self.bert.pin_memory(),
                       speakers=None if self.speakers is None else self.speakers.pin_memory())

    @property
    def bert_rows(self) -> Tensor | None:
        """The BERT features as the model takes them: ``[B, L, bert_dim]`` (or None)."""
        return None if self.bert is None else self.bert.transpose(1, 2)


def collate_s1(items: Sequence[S1Item], eos_id: int) -> S1Batch:
    """Right-pad phones with 0, tokens with ``eos_id`` and BERT features (if any) with 0 into an ``S1Batch``."""
    if not items:
        raise ValueError("collate_s1: empty batch")
    b = len(items)
    phone_lens = torch.tensor([len(it.phones) for it in items], dtype=torch.long)
    token_lens = torch.tensor([len(it.tokens) for it in items], dtype=torch.long)
    phones = torch.full((b, int(phone_lens.max())), PHONE_PAD_ID, dtype=torch.long)
    tokens = torch.full((b, int(token_lens.max())), eos_id, dtype=torch.long)
    for i, it in enumerate(items):
        phones[i, : len(it.phones)] = it.phones
        tokens[i, : len(it.tokens)] = it.tokens
    bert = None
    if items[0].bert is not None:
        bert = torch.zeros(b, items[0].bert.shape[0], phones.shape[1], dtype=items[0].bert.dtype)
        for i, it in enumerate(items):
            bert[i, :, : it.bert.shape[1]] = it.bert
    speakers = None if items[0].speaker is None else torch.tensor([it.speaker for it in items], dtype=torch.long)
    return S1Batch([it.id for it in items], phones, phone_lens, tokens, token_lens, bert, speakers)


class S1Dataset(Dataset):
    """Items of an S1 list file, validated on load and held as flat int32 tensors.

    ``semantic_meta`` is the ``SemanticMeta`` of the tokens (or the path of semantic.json):
    it gives the codebook size (token ids must be below it) and the EOS padding id.
    ``bert_dim > 0``: every item also has ``<bert_dump>/bert/<id>.pt`` (``[bert_dim, L]``; a
    missing file is an error at construction, a wrong shape when the item is read).
    ``speakers``: item id -> speaker row, for a model with a speaker embedding (an item without
    one is an error at construction).
    """

    def __init__(self, list_path: str | Path, semantic_meta: SemanticMeta | str | Path, bert_dim: int = 0,
                 bert_dump: str | Path | None = None, speakers: dict[str, int] | None = None):
        self.path = Path(list_path)
        self.bert_dim = bert_dim
        self.bert_dump = Path(bert_dump) if bert_dump is not None else self.path.parent
        meta = semantic_meta if isinstance(semantic_meta, SemanticMeta) else load_semantic_meta(semantic_meta)
        check_symbols(meta, self.path)
        self.meta = meta
        self.eos_id = meta.eos_id
        self.ids: list[str] = []
        phones: list[int] = []
        tokens: list[int] = []
        phone_lens: list[int] = []
        token_lens: list[int] = []
        for lineno, (uid, phone_cell, token_cell) in _table_lines(self.path, S1_LIST_COLUMNS):
            where = f"{self.path}:{lineno}"
            ph = phone_cell.split()
            tok = parse_tokens(token_cell, where)
            if not ph:
                raise S1DataError(f"{where}: item {uid!r} has no phones")
            if not tok:
                raise S1DataError(f"{where}: item {uid!r} has no tokens")
            for p in ph:
                if p not in SYMBOL_TO_ID:
                    raise S1DataError(f"{where}: item {uid!r}: unknown phone {p!r} (not in the symbol table, "
                                      f"md5 {SYMBOLS_MD5})")
            bad = [t for t in tok if not 0 <= t < meta.codebook_size]
            if bad:
                raise S1DataError(f"{where}: item {uid!r}: token {bad[0]} outside the codebook "
                                  f"[0, {meta.codebook_size}) of the S2 model in the semantic metadata")
            self.ids.append(uid)
            phones.extend(SYMBOL_TO_ID[p] for p in ph)
            tokens.extend(tok)
            phone_lens.append(len(ph))
            token_lens.append(len(tok))
        if not self.ids:
            raise S1DataError(f"{self.path}: no items (rerun gen_filelist_s1.py and check its filter counts)")
        if bert_dim > 0:
            missing = [uid for uid in self.ids if not bert_path(self.bert_dump, uid).is_file()]
            if missing:
                raise S1DataError(f"{self.path}: {len(missing)} item(s) have no BERT features, e.g. "
                                  f"{bert_path(self.bert_dump, missing[0])} (run extract_bert_s1.py, then "
                                  "gen_filelist_s1.py)")
        if speakers is not None:
            missing = [uid for uid in self.ids if uid not in speakers]
            if missing:
                raise S1DataError(f"{self.path}: {len(missing)} item(s) have no speaker in the manifest, e.g. "
                                  f"{missing[0]!r} (rerun gen_filelist_s1.py on this dump)")
        self.speakers = speakers
        self.phone_lens = phone_lens
        self.token_lens = token_lens
        self._phones = torch.tensor(phones, dtype=torch.int32)
        self._tokens = torch.tensor(tokens, dtype=torch.int32)
        self._phone_off = list(itertools.accumulate(phone_lens, initial=0))
        self._token_off = list(itertools.accumulate(token_lens, initial=0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> S1Item:
        p0, p1 = self._phone_off[index], self._phone_off[index + 1]
        t0, t1 = self._token_off[index], self._token_off[index + 1]
        return S1Item(self.ids[index], self._phones[p0:p1].long(), self._tokens[t0:t1].long(),
                      self._bert(index, p1 - p0) if self.bert_dim > 0 else None,
                      None if self.speakers is None else self.speakers[self.ids[index]])

    def _bert(self, index: int, n_phones: int) -> Tensor:
        path = bert_path(self.bert_dump, self.ids[index])
        try:
            feats = load_bert_features(path)
        except BertError as err:
            raise S1DataError(str(err)) from None
        if tuple(feats.shape) != (self.bert_dim, n_phones):
            raise S1DataError(f"{path}: BERT features of shape {list(feats.shape)}, expected [{self.bert_dim}, "
                              f"{n_phones}] for the phones in {self.path} (rerun extract_bert_s1.py --overwrite, "
                              "then gen_filelist_s1.py)")
        return feats

    @property
    def lengths(self) -> list[int]:
        """Phones + tokens per item: the sequence length the S1 model sees (for the sampler)."""
        return [p + t for p, t in zip(self.phone_lens, self.token_lens)]

    def collate(self, items: Sequence[S1Item]) -> S1Batch:
        return collate_s1(items, self.eos_id)


# ----------------------------------------------------------------------------- sampler


class TokenBucketSampler(Sampler[list[int]]):
    """Batches of similar-length items bounded by a token budget, the same count on every rank.

    ``lengths[i]`` is item i's sequence length (phones + tokens). Items are sorted by length
    (ties broken at random each epoch when ``shuffle``) and cut greedily into batches whose
    padded size ``len(batch) * max(length in batch)`` is at most ``max_batch_tokens``, with
    at most ``max_batch_size`` items. Batch boundaries depend only on the sorted lengths, so
    the number of batches is the same every epoch. With ``shuffle`` the batch order is
    shuffled with ``seed + epoch`` (call ``set_epoch`` each epoch).

    Under DDP every rank builds the same batch list and takes ``batches[rank::world_size]``,
    so ranks get disjoint batches. When the count is not a multiple of ``world_size`` the
    list is padded by repeating its first batches (``drop_last=False``, default: every item
    is seen, a few twice) or truncated (``drop_last=True``). Every rank yields ``len(self)``
    batches, as DDP needs.

    An item longer than ``max_batch_tokens`` is an error raised here, at construction: it
    could never fit the budget, and it means the config's length filters and batch budget
    disagree (raise ``train.max_batch_tokens`` or lower ``data.max_seconds`` / ``max_phones``).
    """

    def __init__(self, lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False):
        if not lengths:
            raise ValueError("TokenBucketSampler: no items")
        if max_batch_tokens < 1 or max_batch_size < 1:
            raise ValueError(f"max_batch_tokens ({max_batch_tokens}) and max_batch_size ({max_batch_size}) "
                             "must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        too_long = [(i, n) for i, n in enumerate(lengths) if n > max_batch_tokens]
        if too_long:
            i, n = max(too_long, key=lambda x: x[1])
            raise ValueError(f"{len(too_long)} item(s) are longer than max_batch_tokens={max_batch_tokens} "
                             f"(longest: item {i} with {n} phones+tokens); raise train.max_batch_tokens or "
                             "lower data.max_seconds / data.max_phones and rerun gen_filelist_s1.py")
        if any(n < 1 for n in lengths):
            raise ValueError("TokenBucketSampler: every item must have length >= 1")
        self.lengths = list(lengths)
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.n_batches = len(self._batch_sizes(sorted(self.lengths)))
        if drop_last:
            self.per_rank = self.n_batches // world_size
            if self.per_rank == 0:
                raise ValueError(f"only {self.n_batches} batch(es) for {world_size} ranks with drop_last=True")
        else:
            self.per_rank = math.ceil(self.n_batches / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batch_sizes(self, sorted_lengths: list[int]) -> list[int]:
        """Greedy cut of ascending lengths into batch sizes within the budget."""
        sizes: list[int] = []
        count = 0
        for n in sorted_lengths:  # ascending, so n is the batch's max length once added
            if count and ((count + 1) * n > self.max_batch_tokens or count == self.max_batch_size):
                sizes.append(count)
                count = 0
            count += 1
        sizes.append(count)
        return sizes

    def batches(self) -> list[list[int]]:
        """All batches of this epoch, in order, before the split across ranks."""
        rng = random.Random(self.seed + self.epoch)
        if self.shuffle:
            tiebreak = [rng.random() for _ in self.lengths]
            order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], tiebreak[i]))
        else:
            order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], i))
        out, start = [], 0
        for size in self._batch_sizes([self.lengths[i] for i in order]):
            out.append(order[start:start + size])
            start += size
        if self.shuffle:
            rng.shuffle(out)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        total = self.per_rank * self.world_size
        while len(batches) < total:  # pad by repeating batches from the start (deterministic)
            batches.extend(batches[: total - len(batches)])
        return iter(batches[:total][self.rank::self.world_size])

    def __len__(self) -> int:
        return self.per_rank
