"""Stage 6: turn the SSL features into S1's semantic tokens with a trained S2 model.

    python extract_vq_s1.py --dump dump --s2-ckpt logs/s2
    python extract_vq_s1.py --dump dump --s2-ckpt logs/s2/ckpt_00100000.pt --device cuda:1
    torchrun --nproc_per_node=4 extract_vq_s1.py --dump dump --s2-ckpt logs/s2

Reads every ``dump/ssl/<id>.pt`` (``[ssl_dim, T50]``) and the S2 checkpoint (a file, or a
run directory whose latest checkpoint is used). Tokens come from the S2 generator's
``extract_codes`` (the quantizer's ``encode``: fp32 distances, no codebook update), on
batches of similar length; padding does not change an item's tokens. An item of T50
frames gets ``T50 // frames_per_token`` tokens (2 frames per token at 25 Hz).

Writes ``dump/semantic.tsv`` (``id tokens``, sorted by id), ``dump/semantic.json`` (token
rate, codebook size, EOS id, checkpoint path/step/sha256, symbol-table md5: see
``s1.data.SemanticMeta``) and this stage's rows (stage ``vq``) of ``dump/rejected.tsv``:
unreadable features, a feature dimension other than the S2 config's ``ssl_dim``,
non-finite values, fewer frames than one token needs.

Under torchrun rank r takes every world-th item; each rank writes a part file and rank 0
merges them (the dump folder must be shared by all ranks). Rerunning with the same
checkpoint computes only ids missing from ``semantic.tsv``; with another checkpoint the
stage refuses unless ``--overwrite`` (tokens of two codebooks must never be mixed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from common.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, load_model_state
from common.config import ConfigError, S2Config, from_dict
from common.dist import DistInfo, barrier, distributed_stage
from common.fileio import atomic_write_text
from common.gsv1.files import ENC_Q
from common.manifest import REJECTED_NAME
from common.progress import RejectionReport, print_summary
from common.script import exit_on_interrupt
from modules.ssl import SSL_DIR, SSLError, feature_path, load_features
from s1.data import (
    SEMANTIC_JSON,
    SEMANTIC_TSV,
    S1DataError,
    SemanticMeta,
    load_semantic_meta,
    read_semantic_tsv,
    save_semantic_meta,
    write_semantic_tsv,
)
from text.symbols import SYMBOLS_MD5

STAGE = "vq"
PART_GLOB = "semantic.part-*.json"


class ExtractError(RuntimeError):
    """The stage cannot run; the message says why and what to do."""


@dataclass
class S2Tokenizer:
    """The S2 generator used as a tokenizer, with the facts the tokens depend on."""

    generator: torch.nn.Module
    cfg: S2Config
    path: Path  # the checkpoint file
    step: int
    sha256: str
    symbols_md5: str

    @property
    def frames_per_token(self) -> int:
        """SSL frames (sampling_rate / hop_length per second) per semantic token."""
        return round(self.cfg.data.sampling_rate / self.cfg.data.hop_length / self.cfg.token_rate)

    def meta(self, n_items: int) -> SemanticMeta:
        c = self.cfg
        return SemanticMeta(token_rate=c.token_rate, codebook_size=c.model.codebook_size,
                            eos_id=c.model.codebook_size, semantic_frame_rate=c.model.semantic_frame_rate,
                            ssl_dim=c.data.ssl_dim, s2_checkpoint=str(self.path), s2_step=self.step,
                            s2_sha256=self.sha256, symbols_md5=self.symbols_md5, n_items=n_items)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file, or a run directory's latest checkpoint."""
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise ExtractError(f"{path}: no S2 checkpoint (ckpt_*.pt) in this directory; train S2 first")
        return latest
    if not path.is_file():
        raise ExtractError(f"{path}: S2 checkpoint not found")
    return path


def load_tokenizer(ckpt_file: Path, sha256: str, device: torch.device) -> S2Tokenizer:
    """Rebuild the S2 generator from the checkpoint's own config; fp32, eval mode."""
    from s2.model import build_model  # deferred: the S2 model is only needed once there is work to do

    ckpt = load_checkpoint(ckpt_file, stage="s2", symbols_md5=SYMBOLS_MD5)
    cfg = from_dict(S2Config, ckpt.config, where=f"{ckpt_file} config")
    if "generator" not in ckpt.models:
        raise ExtractError(f"{ckpt_file}: no 'generator' weights in this S2 checkpoint")
    state = ckpt.models["generator"]
    uninit = [k for k, v in state.items() if k.endswith("inited") and v.numel() == 1 and float(v) == 0.0]
    if uninit:
        raise ExtractError(f"{ckpt_file}: the S2 codebook was never initialised ({uninit[0]} = 0): this "
                           "checkpoint has not been trained, its tokens would mean nothing")
    generator, _ = build_model(cfg)
    load_model_state(generator, state, ckpt_file, optional=(ENC_Q,))  # exports carry no posterior encoder
    generator.to(device=device, dtype=torch.float32).eval()
    return S2Tokenizer(generator, cfg, ckpt_file, ckpt.step, sha256, ckpt.symbols_md5)


# ----------------------------------------------------------------------------- features


def check_ssl(x: object, ssl_dim: int, frames_per_token: int) -> str | None:
    """Why a loaded feature tensor cannot be tokenised (``category: detail``), or None."""
    if not isinstance(x, Tensor):
        return f"bad ssl: expected a tensor, got {type(x).__name__}"
    if x.dim() != 2 or not x.is_floating_point():
        return f"bad ssl: expected a float tensor [ssl_dim, T], got {x.dtype} shape {tuple(x.shape)}"
    if x.size(0) != ssl_dim:
        return f"wrong ssl dim: {x.size(0)} features, the S2 model expects ssl_dim={ssl_dim}"
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        return f"non-finite ssl: {int((~finite).sum())} NaN/inf values"
    if x.size(1) < frames_per_token:
        return f"too short: {x.size(1)} frame(s), one token needs {frames_per_token}"
    return None


class SSLFiles(Dataset):
    """Loads and checks ``ssl/<id>.pt`` files (in DataLoader workers): (id, features | None, reason | None)."""

    def __init__(self, dump: Path, ids: list[str], ssl_dim: int, frames_per_token: int):
        self.dump, self.ids, self.ssl_dim, self.fpt = dump, ids, ssl_dim, frames_per_token

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[str, Tensor | None, str | None]:
        uid = self.ids[i]
        try:
            x = load_features(feature_path(self.dump, uid))
        except SSLError as e:
            return uid, None, f"unreadable ssl: {e}"
        reason = check_ssl(x, self.ssl_dim, self.fpt)
        return (uid, None, reason) if reason else (uid, x, None)


def ssl_ids(ssl_dir: Path) -> list[str]:
    """Ids of ``ssl_dir/<id>.pt``, sorted (temp files of killed writers are ignored)."""
    if not ssl_dir.is_dir():
        return []
    return sorted(p.name[: -len(".pt")] for p in ssl_dir.iterdir()
                  if p.name.endswith(".pt") and not p.name.startswith(".") and p.is_file())


@torch.inference_mode()
def tokens_for_batch(tok: S2Tokenizer, feats: list[Tensor], device: torch.device) -> list[list[int]]:
    """Tokens of each ``[D, T_i]`` feature tensor, computed on one zero-padded batch ``[B, D, T]``."""
    lengths = torch.tensor([f.size(1) for f in feats], dtype=torch.long)
    batch = torch.zeros(len(feats), feats[0].size(0), int(lengths.max()), dtype=torch.float32)
    for i, f in enumerate(feats):
        batch[i, :, : f.size(1)] = f.float()
    with torch.autocast(device_type=device.type, enabled=False):
        codes = tok.generator.extract_codes(batch.to(device), lengths.to(device))  # [B, T25]
    codes = codes.cpu()
    n_tokens = (lengths // tok.frames_per_token).tolist()
    if codes.dim() != 2 or codes.size(0) != len(feats) or codes.size(1) < max(n_tokens):
        raise ExtractError(f"extract_codes returned shape {tuple(codes.shape)} for {len(feats)} items of up to "
                           f"{int(lengths.max())} frames (expected [B, >= {max(n_tokens)}])")
    return [codes[i, :n].tolist() for i, n in enumerate(n_tokens)]


def extract_shard(tok: S2Tokenizer, dump: Path, ids: list[str], device: torch.device, batch_size: int,
                  num_workers: int, show_progress: bool) -> tuple[dict[str, list[int]], list[tuple[str, str]]]:
    """Tokens of ``ids`` (batched by length within chunks) and the rejected (id, reason) pairs."""
    loader = DataLoader(SSLFiles(dump, ids, tok.cfg.data.ssl_dim, tok.frames_per_token), batch_size=None,
                        num_workers=num_workers)
    tokens: dict[str, list[int]] = {}
    rejected: list[tuple[str, str]] = []
    pending: list[tuple[str, Tensor]] = []
    chunk = batch_size * 16  # items sorted together; bounds host memory

    def flush() -> None:
        pending.sort(key=lambda p: (p[1].size(1), p[0]))
        for start in range(0, len(pending), batch_size):
            group = pending[start:start + batch_size]
            for (uid, _), toks in zip(group, tokens_for_batch(tok, [f for _, f in group], device)):
                tokens[uid] = toks
            bar.update(len(group))
        pending.clear()

    with tqdm(total=len(ids), desc=STAGE, unit="item", file=sys.stderr, dynamic_ncols=True,
              disable=not show_progress) as bar:
        for uid, feats, reason in loader:
            if reason is not None:
                rejected.append((uid, reason))
                bar.update(1)
                continue
            pending.append((uid, feats))
            if len(pending) >= chunk:
                flush()
        flush()
    return tokens, rejected


# ----------------------------------------------------------------------------- resume and merge


def plan(dump: Path, ids: list[str], ckpt_file: Path, sha256: str, overwrite: bool) -> tuple[dict, list[str]]:
    """(tokens kept from the previous run, ids still to compute); refuses a different checkpoint."""
    tsv, js = dump / SEMANTIC_TSV, dump / SEMANTIC_JSON
    if overwrite or not tsv.is_file():
        return {}, ids
    if not js.is_file():
        raise ExtractError(f"{tsv} exists but {js} does not, so the S2 checkpoint behind it is unknown; "
                           "rerun with --overwrite to re-extract every item")
    old = load_semantic_meta(js)
    if old.s2_sha256 != sha256:
        raise ExtractError(f"{tsv} was made with S2 checkpoint {old.s2_checkpoint} (step {old.s2_step}, sha256 "
                           f"{old.s2_sha256[:12]}), not with {ckpt_file} (sha256 {sha256[:12]}); tokens of "
                           "different checkpoints must not be mixed. Rerun with --overwrite to re-extract every "
                           "item (then rerun gen_filelist_s1.py and retrain S1 on the new tokens)")
    existing = read_semantic_tsv(tsv)
    wanted = set(ids)
    kept = {uid: t for uid, t in existing.items() if uid in wanted}
    return kept, [uid for uid in ids if uid not in existing]


def part_path(dump: Path, rank: int, world: int) -> Path:
    return dump / f"semantic.part-{rank:05d}-of-{world:05d}.json"


def drop_meta_of_other_checkpoint(js: Path, sha256: str) -> None:
    """Delete ``semantic.json`` unless it describes the checkpoint ``sha256``, before semantic.tsv is replaced.

    The two tables are written one after the other; a run killed (or out of disk) between them must
    not leave new tokens under the old checkpoint's metadata. Without the JSON, a rerun refuses to
    reuse the table and asks for --overwrite.
    """
    try:
        same = load_semantic_meta(js).s2_sha256 == sha256
    except S1DataError:  # missing or unreadable: nothing to trust either way
        same = False
    if not same:
        js.unlink(missing_ok=True)


def merge(dump: Path, world: int, kept: dict[str, list[int]], tok: S2Tokenizer, n_skipped: int) -> None:
    """Rank 0: fold every rank's part into semantic.tsv / .json and the rejection report."""
    tokens = dict(kept)
    report = RejectionReport(STAGE)
    n_new = 0
    for r in range(world):
        path = part_path(dump, r, world)
        part = json.loads(path.read_text(encoding="utf-8"))
        n_new += len(part["tokens"])
        tokens.update(part["tokens"])
        for uid, reason in part["rejected"]:
            report.add(uid, str(feature_path(dump, uid)), reason)
    report.write(dump / REJECTED_NAME)
    print_summary(STAGE, n_new, n_skipped, report, dump / REJECTED_NAME)
    if not tokens:
        raise ExtractError(f"no item could be tokenised; see {dump / REJECTED_NAME} for the reasons")
    drop_meta_of_other_checkpoint(dump / SEMANTIC_JSON, tok.sha256)
    write_semantic_tsv(dump / SEMANTIC_TSV, tokens)
    save_semantic_meta(tok.meta(len(tokens)), dump / SEMANTIC_JSON)
    for stale in [*dump.glob(PART_GLOB), *dump.glob(".semantic.*.tmp-*")]:  # parts, and temps of killed runs
        stale.unlink(missing_ok=True)
    print(f"{STAGE}: {len(tokens)} items in {dump / SEMANTIC_TSV} ({tok.cfg.token_rate:g} tokens/s, "
          f"codebook {tok.cfg.model.codebook_size}, S2 step {tok.step})")


def main(args: argparse.Namespace) -> None:
    with exit_on_interrupt(STAGE, lambda: "semantic.tsv is the previous one or complete; run the same command "
                           "again"), distributed_stage(STAGE, args.device, timeout_s=4 * 3600.0) as info:
        _main(args, info)


def _main(args: argparse.Namespace, info: DistInfo) -> None:
    if info.device.type == "cuda":  # plain fp32 (no TF32) so tokens match a CPU extraction, e.g. of a prompt
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    try:
        dump = Path(args.dump)
        ids = ssl_ids(dump / SSL_DIR)
        if not ids:
            raise ExtractError(f"{dump / SSL_DIR}: no SSL features (*.pt); run extract_ssl_s2.py first")
        ckpt_file = resolve_checkpoint(Path(args.s2_ckpt))
        sha256 = file_sha256(ckpt_file)
        kept, todo = plan(dump, ids, ckpt_file, sha256, args.overwrite)
        tok = load_tokenizer(ckpt_file, sha256, info.device)
        if info.is_main:
            print(f"{STAGE}: {len(ids)} feature files, {len(kept)} already tokenised, {len(todo)} to do "
                  f"on {info.world_size} rank(s), S2 checkpoint {ckpt_file} (step {tok.step})")
        mine = todo[info.rank::info.world_size]
        tokens, rejected = extract_shard(tok, dump, mine, info.device, args.batch_size, args.num_workers,
                                         show_progress=info.is_main)
        atomic_write_text(part_path(dump, info.rank, info.world_size),
                          json.dumps({"tokens": tokens, "rejected": rejected}))
        barrier()
        if info.is_main:
            merge(dump, info.world_size, kept, tok, len(kept))
        barrier()
    except (ExtractError, S1DataError, CheckpointError, ConfigError) as err:
        raise SystemExit(f"{STAGE}: {err}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dump", type=Path, default=Path("dump"), help="data directory with ssl/ (default: dump)")
    p.add_argument("--s2-ckpt", type=Path, default=Path("logs/s2"),
                   help="S2 checkpoint file, or a run directory whose latest checkpoint is used (default: logs/s2)")
    p.add_argument("--device", default=None,
                   help="device, e.g. cuda, cuda:1, cpu (default: CUDA if available; under torchrun cuda:LOCAL_RANK)")
    p.add_argument("--batch-size", type=int, default=16, help="utterances per forward pass (default: 16)")
    p.add_argument("--num-workers", type=int, default=2, help="feature-loading worker processes (default: 2)")
    p.add_argument("--overwrite", action="store_true",
                   help="re-extract every item, replacing tokens made by any checkpoint")
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
