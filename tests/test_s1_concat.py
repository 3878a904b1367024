"""Same-speaker concatenation of S1 items: joined == parts + pauses, seeded groups, filters, BERT, lists."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import gen_filelist_s1
from common.manifest import PhonemeEntry, Utterance, write_manifest, write_phonemes
from modules.bert import bert_path, load_bert_features, save_bert_features
from s1.concat import JOINS_NAME, join_bert, join_rows, plan_groups, read_joins, silence_token
from s1.data import S1Dataset, S1ListRow, SemanticMeta, read_semantic_tsv, save_semantic_meta, write_semantic_tsv
from text.symbols import SYMBOLS_MD5

REPO = Path(__file__).resolve().parents[1]
TINY_S1 = REPO / "configs" / "tiny" / "s1.json"
PHONES = ["n", "i2", "h", "ao3", "AH0", "m", "a1", ",", "."]


def row(uid: str, n_phones: int, n_tokens: int, offset: int = 0) -> S1ListRow:
    return S1ListRow(uid, [PHONES[(offset + i) % len(PHONES)] for i in range(n_phones)],
                     [(offset * 5 + i) % 60 + 1 for i in range(n_tokens)])


def test_joined_item_equals_its_parts_with_pauses() -> None:
    a, b, c = row("a", 4, 6, 0), row("b", 3, 5, 1), row("c", 2, 7, 2)
    j = join_rows([a, b, c], pause_token=0, pause_tokens=2)
    assert j.row.id == "a+3" and j.parts == ("a", "b", "c")
    assert j.row.phones == a.phones + ["SP"] + b.phones + ["SP"] + c.phones
    assert j.row.tokens == a.tokens + [0, 0] + b.tokens + [0, 0] + c.tokens
    assert j.phone_starts == (0, 5, 9) and j.token_starts == (0, 8, 15)
    for part, ps, ts in zip((a, b, c), j.phone_starts, j.token_starts):
        assert j.row.phones[ps:ps + len(part.phones)] == part.phones
        assert j.row.tokens[ts:ts + len(part.tokens)] == part.tokens
    single = join_rows([a], 0, 2)
    assert single.row == a and single.parts == ("a",)
    feats = [torch.full((3, n), float(i + 1)) for i, n in enumerate((4, 3, 2))]
    bert = join_bert(feats, j)  # [3, 11]
    assert bert.shape == (3, 11)
    assert bert[:, 4].abs().sum() == 0 and bert[:, 8].abs().sum() == 0  # the SP pauses
    assert torch.equal(bert[:, 5:8], feats[1]) and torch.equal(bert[:, 9:], feats[2])


def test_silence_token_is_the_commonest_edge_token() -> None:
    assert silence_token([[3, 1, 2, 3], [3, 5, 9], [7, 4, 3]]) == 3
    assert silence_token([[2, 9, 1], [1, 8, 2]]) == 1  # tie: smallest id


def test_groups_are_consecutive_same_speaker_seeded_and_within_limits() -> None:
    rows = [row(f"s{s}_{i:02d}", 10, 25 + i, i) for s in range(2) for i in range(15)]
    speakers = {r.id: r.id[:2] for r in rows}
    groups = plan_groups(rows, speakers, max_tokens=150, max_phones=40, pause_tokens=3, seed=1)
    assert groups == plan_groups(rows, speakers, max_tokens=150, max_phones=40, pause_tokens=3, seed=1)
    assert groups != plan_groups(rows, speakers, max_tokens=150, max_phones=40, pause_tokens=3, seed=2)
    assert sorted(r.id for g in groups for r in g) == sorted(r.id for r in rows)
    assert any(len(g) > 1 for g in groups) and any(len(g) == 1 for g in groups)
    for g in groups:
        assert len({speakers[r.id] for r in g}) == 1
        ids = sorted(r.id for r in rows if speakers[r.id] == speakers[g[0].id])
        first = ids.index(g[0].id)
        assert [r.id for r in g] == ids[first:first + len(g)]  # consecutive
        joined = join_rows(g, 0, 3).row
        if len(g) > 1:
            assert len(joined.tokens) <= 150 and len(joined.phones) <= 40


def make_dump(dump: Path, bert_dim: int = 0) -> None:
    """Two speakers, 12 utterances each (1-1.4 s, 10 phones), silence token 0 at both ends."""
    dump.mkdir(parents=True)
    rows = [row(f"{spk}_{i:02d}", 10, 25 + i, i) for spk in ("ann", "bob") for i in range(12)]
    write_semantic_tsv(dump / "semantic.tsv", {r.id: [0, *r.tokens[1:-1], 0] for r in rows})
    write_phonemes(dump / "phonemes.tsv", [PhonemeEntry(r.id, r.phones, [1] * 10, "x") for r in rows])
    write_manifest(dump / "manifest.tsv", [Utterance(r.id, r.id[:3], "zh", "x", 1.0, f"/{r.id}.wav") for r in rows])
    save_semantic_meta(SemanticMeta(token_rate=25.0, codebook_size=64, eos_id=64, semantic_frame_rate="25hz",
                                    ssl_dim=64, s2_checkpoint="x.pt", s2_step=1, s2_sha256="0" * 64,
                                    symbols_md5=SYMBOLS_MD5, n_items=len(rows)), dump / "semantic.json")
    for i, r in enumerate(rows if bert_dim else []):
        save_bert_features(bert_path(dump, r.id), torch.full((bert_dim, 10), float(i + 1)))


def run(dump: Path, *extra: str) -> None:
    gen_filelist_s1.main(gen_filelist_s1.build_parser().parse_args(
        ["--dump", str(dump), "--config", str(TINY_S1), "--val-items", "4", *extra]))


def read_list(path: Path) -> dict[str, tuple[list[str], list[int]]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return {c[0]: (c[1].split(), [int(t) for t in c[2].split()]) for c in (line.split("\t") for line in lines)}


def test_gen_filelist_concatenates_training_items(tmp_path: Path) -> None:
    plain, joined = tmp_path / "plain", tmp_path / "joined"
    make_dump(plain)
    make_dump(joined)
    run(plain)
    run(joined, "--concat-max-seconds", "6")
    assert not (plain / JOINS_NAME).exists()
    base = read_list(plain / "s1_train.tsv")
    out = read_list(joined / "s1_train.tsv")
    assert (joined / "s1_val.tsv").read_bytes() == (plain / "s1_val.tsv").read_bytes()  # val items never joined
    joins = read_joins(joined / JOINS_NAME)
    assert joins and set(joins) <= set(out)
    assert sorted(p for uid in out for p in joins.get(uid, (uid,))) == sorted(base)  # every item exactly once
    semantic = read_semantic_tsv(joined / "semantic.tsv")
    for uid, parts in joins.items():
        phones, tokens = out[uid]
        assert phones == sum(([*base[p][0], "SP"] for p in parts), [])[:-1]
        assert tokens == sum(([*semantic[p], 0, 0, 0, 0, 0] for p in parts), [])[:-5]  # 5 silence tokens
        assert len(tokens) <= 6 * 25 and len({p[:3] for p in parts}) == 1
    again = tmp_path / "again"
    make_dump(again)
    run(again, "--concat-max-seconds", "6")
    assert (again / "s1_train.tsv").read_bytes() == (joined / "s1_train.tsv").read_bytes()
    run(joined)  # concatenation off again: the join points go
    assert not (joined / JOINS_NAME).exists() and read_list(joined / "s1_train.tsv") == base


def test_joined_items_get_joined_bert_features(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    make_dump(dump, bert_dim=4)
    gen_filelist_s1.main(gen_filelist_s1.build_parser().parse_args(
        ["--dump", str(dump), "--config", str(_bert_config(tmp_path)), "--val-items", "4",
         "--concat-max-seconds", "6"]))
    joins = read_joins(dump / JOINS_NAME)
    uid, parts = next(iter(joins.items()))
    feats = load_bert_features(bert_path(dump, uid)).float()  # [4, L]
    first = load_bert_features(bert_path(dump, parts[0])).float()
    assert torch.equal(feats[:, :10], first) and feats[:, 10].abs().sum() == 0
    ds = S1Dataset(dump / "s1_train.tsv", dump / "semantic.json", bert_dim=4)
    item = ds[ds.ids.index(uid)]
    assert item.bert.shape == (4, len(item.phones))


def _bert_config(tmp_path: Path) -> Path:
    cfg = json.loads(TINY_S1.read_text(encoding="utf-8"))
    cfg["model"]["bert_dim"] = 4
    path = tmp_path / "s1_bert.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path
