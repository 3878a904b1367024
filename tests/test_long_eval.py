"""bench/long_eval.py and s1/stability.py: token-pattern measures and the comparison of two checkpoints."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from bench import long_eval
from common.checkpoint import Checkpoint, save_checkpoint
from common.config import S1Config, from_dict, load_config, to_dict
from s1.data import SemanticMeta, load_semantic_meta
from s1.model import build_model
from s1.stability import long_runs, output_stats, repeated_fraction, summarize
from tests.test_infer import rig_head
from tests.test_s1_concat import make_dump, run
from text.symbols import SYMBOLS_MD5

REPO = Path(__file__).resolve().parents[1]


def test_repeats_and_long_runs() -> None:
    fresh = list(range(40))
    assert repeated_fraction(fresh) == 0.0
    looped = list(range(20)) + list(range(20))  # the second half says the first again
    assert repeated_fraction(looped) == pytest.approx(0.5)
    assert repeated_fraction(list(range(10))) == 0.0  # too short to judge
    assert long_runs([1] * 30 + [2] * 10 + [3] * 25 + [4]) == 2
    assert long_runs([1, 2] * 40) == 0


def test_output_stats_flag_short_and_long_outputs() -> None:
    short = output_stats([1] * 10, n_phones=10, stop="eos", train_ratio=3.0)
    assert short.short and not short.long and short.ratio == 1.0
    run_on = output_stats(list(range(60)), n_phones=10, stop="length", train_ratio=3.0)
    assert run_on.long and not run_on.short
    summary = summarize([short, run_on], train_ratio=3.0)
    assert summary["stop_eos"] == 0.5 and summary["stop_length_cap"] == 0.5 and summary["short_share"] == 0.5
    assert summary["tokens_per_phone_vs_training"] == pytest.approx(3.5 / 3.0, abs=1e-3)


def _save(run_dir: Path, cfg: S1Config, model: torch.nn.Module, meta: SemanticMeta, speakers: list[str]) -> None:
    extra = {"semantic": asdict(meta)} | ({"speakers": speakers} if speakers else {})
    save_checkpoint(run_dir, Checkpoint(stage="s1", step=3, epoch=0, config=to_dict(cfg), symbols_md5=SYMBOLS_MD5,
                                        models={"model": model.state_dict()}, extra=extra))


def test_long_eval_compares_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dump = tmp_path / "dump"
    make_dump(dump)
    run(dump)
    meta = load_semantic_meta(dump / "semantic.json")
    base = load_config(REPO / "configs/tiny/s1.json", S1Config)
    torch.manual_seed(0)
    eos = build_model(base)  # says EOS as soon as it may
    column = torch.zeros(65)
    column[64] = 10.0
    rig_head(eos, column)
    _save(tmp_path / "eos", base, eos, meta, [])
    rope = from_dict(S1Config, to_dict(base) | {"model": to_dict(base)["model"] | {"position": "rope",
                                                                                   "n_speakers": 2}}
                    | {"inference": to_dict(base)["inference"] | {"max_tokens_per_phoneme": 1.5}})
    looper = build_model(rope)  # never EOS: runs to the cap (or the loop detector)
    column = torch.zeros(65)
    column[7], column[64] = 5.0, -20.0
    rig_head(looper, column)
    _save(tmp_path / "cap", rope, looper, meta, ["ann", "bob"])
    texts = tmp_path / "long.txt"
    texts.write_text("今天天气很好。我想喝一杯热茶。明天早上八点开会。\n这本书一共有三百页。请把窗户关上。\n",
                     encoding="utf-8")
    args = long_eval.build_parser().parse_args(["--dump", str(dump), "--texts", str(texts), "--model",
                                                f"eos={tmp_path / 'eos'}", "--model", f"cap={tmp_path / 'cap'}",
                                                "--out", str(tmp_path / "r.json")])
    report = long_eval.main(args)
    assert (tmp_path / "r.json").is_file() and '"models"' in capsys.readouterr().out
    assert report["texts"] == 2 and report["training"]["items"] == 24
    e, c = report["models"]["eos"], report["models"]["cap"]
    assert e["stop_eos"] == 1.0 and e["short_share"] == 1.0
    assert c["stop_eos"] == 0.0 and c["stop_length_cap"] + c["stop_loop"] == 1.0
    assert c["position"] == "rope" and c["n_speakers"] == 2 and c["tokens_per_phone"] > e["tokens_per_phone"]
