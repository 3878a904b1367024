"""Bad input at run time (inference, training start, conversion, extraction devices): one table of rows,
each a command line a user might type, the one-line message it must give and its exit status.

Not repeated from tests/test_bad_inputs.py (data and list damage per stage) or tests/test_infer.py /
tests/test_tts.py (texts, references, missing checkpoints). The rows run each script's entry point in
this process (``cli(argv)`` for the inference scripts, ``main(args)`` for the others) on tiny random
checkpoints (tests/test_infer.py: ``build_tiny_runs``); the classes below them also run the scripts as
a user would, in a subprocess:

- output paths are checked before any work (``common.fileio.check_output_path``): a model path that
  does not exist is never reached;
- sampling and decoding options are checked before the models load, ``--top-k 0`` is documented,
  ``--seed -1`` is a random seed that is printed and reproduces the output;
- a config with NaN / Infinity names the file and the field and leaves no run directory behind;
- a file that is not a checkpoint gets our own one-line message (never torch's weights_only advice);
- a run directory whose newest checkpoint is damaged resolves to the newest intact one, with a message;
- ``--device cuda`` without CUDA is one line in training, extraction and inference;
- temp files of killed writers are removed by the next run (one line), those of live writers kept.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from common.checkpoint import list_checkpoints, load_checkpoint
from common.fileio import remove_stale_temps
from tests.pipeline import REPO, script_env
from tests.test_infer import TinyRuns, build_tiny_runs

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

TINY_S1 = REPO / "configs" / "tiny" / "s1.json"
TINY_S2 = REPO / "configs" / "tiny" / "s2.json"
INFER = ("tts", "s1_infer", "s2_infer")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    return build_tiny_runs(tmp_path_factory.mktemp("runtime_runs"))


@dataclass
class Ctx:
    runs: TinyRuns
    tmp: Path

    def file(self, name: str, data: bytes | str = "x\n") -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return path

    def tts(self, *extra: object, out: object = None) -> list[object]:
        r = self.runs
        return ["--s1-ckpt", r.s1, "--s2-ckpt", r.s2, "--ref", r.ref, "--ref-text", "你好。",
                "--text", "今天天气很好。", "--ssl-model", r.hubert,
                "-o", out if out is not None else self.tmp / "out.wav", *extra]

    def config(self, base: Path, text_edit: Callable[[str], str]) -> Path:
        return self.file("bad.json", text_edit(base.read_text(encoding="utf-8")))

    def train(self, *extra: object, config: Path = TINY_S1) -> list[object]:
        return ["-c", config, "-m", self.tmp / "run", "--dump", self.tmp / "dump", "--device", "cpu", *extra]


def _json_value(key: str, literal: str) -> Callable[[str], str]:
    """Replace the value of ``"key": <number>`` in a JSON text by ``literal`` (NaN, Infinity, 1e999)."""
    def edit(text: str) -> str:
        new, n = re.subn(rf'("{key}":\s*)[-0-9.e]+', rf"\g<1>{literal}", text, count=1)
        assert n == 1, key
        return new
    return edit


def _truncated_run(c: Ctx) -> Path:
    run = c.tmp / "s1_damaged"
    shutil.copytree(c.runs.s1, run)
    ckpt = list_checkpoints(run)[-1]
    ckpt.write_bytes(ckpt.read_bytes()[:3000])
    return run


def _npz(c: Ctx) -> Path:
    path = c.tmp / "arr.npz"
    np.savez(path, a=np.zeros(3))
    return path


# Each row: what, script, argv from a Ctx, the message (regex, searched in the one line), exit status,
# the path the message must name (from the Ctx; None: no path involved).
Row = tuple[str, str, Callable[[Ctx], list[object]], str, int, Callable[[Ctx], object] | None]
CASES: list[Row] = [
    # tts.py: output paths (before any model is loaded)
    ("-o is a directory", "tts", lambda c: c.tts(out=c.tmp), r"-o .*: is a directory", 2, lambda c: c.tmp),
    ("-o under a regular file", "tts", lambda c: c.tts(out=c.file("afile") / "x.wav"),
     r"afile is a file, not a directory", 2, lambda c: c.tmp / "afile"),
    ("-o in a folder where no file can be created", "tts", lambda c: c.tts(out="/proc/out.wav"),
     r"cannot create files in /proc", 2, lambda c: "/proc/out.wav"),
    # tts.py: sampling / decoding options (before any model is loaded)
    ("--top-k -1", "tts", lambda c: c.tts("--top-k", -1), r"top_k must be >= 0 \(0 = off\), got -1", 2, None),
    ("--top-p 0", "tts", lambda c: c.tts("--top-p", 0), r"top_p must be in \(0, 1\], got 0", 2, None),
    ("--temperature nan", "tts", lambda c: c.tts("--temperature", "nan"),
     r"argument --temperature: must be a finite number, got 'nan'", 2, None),
    ("--repetition-penalty 0", "tts", lambda c: c.tts("--repetition-penalty", 0),
     r"repetition_penalty must be > 0", 2, None),
    ("--min-new-tokens -1", "tts", lambda c: c.tts("--min-new-tokens", -1), r"--min-new-tokens must be >= 0", 2, None),
    ("--seed -2", "tts", lambda c: c.tts("--seed", -2), r"--seed must be in 0\.\.4294967295, or -1", 2, None),
    ("--noise-scale -1", "tts", lambda c: c.tts("--noise-scale", -1), r"--noise-scale must be >= 0", 2, None),
    ("--pause inf", "tts", lambda c: c.tts("--pause", "inf"), r"argument --pause: must be a finite number", 2, None),
    ("--sample-rate 0", "tts", lambda c: c.tts("--sample-rate", 0), r"--sample-rate must be >= 1 Hz", 2, None),
    ("--stream --first-chunk 0", "tts", lambda c: c.tts("--stream", "--first-chunk", 0),
     r"--first-chunk must be >= 1", 2, None),
    # tts.py: devices and checkpoint files
    ("--device cuda without CUDA", "tts", lambda c: c.tts("--device", "cuda"),
     r"--device cuda: CUDA is not available on this machine", 2, None),
    ("--device gpu (no such device)", "tts", lambda c: c.tts("--device", "gpu"),
     r"--device gpu: not a device name", 2, None),
    ("a wav as the S1 checkpoint", "tts", lambda c: c.tts("--s1-ckpt", c.runs.ref),
     r"not a PyTorch checkpoint file \(a WAV \(RIFF\) file\)", 2, lambda c: c.runs.ref),
    ("a text file as the S2 checkpoint", "tts", lambda c: c.tts("--s2-ckpt", c.file("notes.pt", "step 20\n")),
     r"not a PyTorch checkpoint file \(a text file\)", 2, lambda c: c.tmp / "notes.pt"),
    ("a NumPy .npz as the S1 checkpoint", "tts", lambda c: c.tts("--s1-ckpt", _npz(c)),
     r"not a PyTorch checkpoint file \(a zip archive without PyTorch data", 2, lambda c: c.tmp / "arr.npz"),
    ("a run directory whose only checkpoint is truncated", "tts", lambda c: c.tts("--s1-ckpt", _truncated_run(c)),
     r"all 1 checkpoint\(s\) in this directory are damaged", 2, lambda c: c.tmp / "s1_damaged"),
    # s1_infer.py / s2_infer.py
    ("-o is a directory", "s1_infer", lambda c: c.tts(out=c.tmp), r"-o .*: is a directory", 2, lambda c: c.tmp),
    ("--batch-size 0", "s1_infer", lambda c: c.tts("--batch-size", 0, out=c.tmp / "t.npz"),
     r"--batch-size must be >= 1, got 0", 2, None),
    ("several --tokens, -o an existing file", "s2_infer",
     lambda c: ["--s2-ckpt", c.runs.s2, "--tokens", "a.npz", "b.npz", "-o", c.file("existing.wav")],
     r"exists and is not a directory", 2, lambda c: c.tmp / "existing.wav"),
    ("--device cuda:0 without CUDA", "s2_infer",
     lambda c: ["--s2-ckpt", c.runs.s2, "--resynth", c.runs.ref, "--text", "你好。", "-o", c.tmp / "r.wav",
                "--device", "cuda:0"], r"--device cuda:0: CUDA is not available", 2, None),
    # train_s1.py / train_s2.py (exit status 1, as every error of the trainers)
    ("config with NaN", "train_s1", lambda c: c.train(config=c.config(TINY_S1, _json_value("learning_rate", "NaN"))),
     r"train\.learning_rate: must be a finite number, got nan", 1, lambda c: c.tmp / "bad.json"),
    ("config with a number too large for a float", "train_s1",
     lambda c: c.train(config=c.config(TINY_S1, _json_value("grad_clip", "1e999"))),
     r"train\.grad_clip: must be a finite number, got inf", 1, lambda c: c.tmp / "bad.json"),
    ("config with -Infinity", "train_s2",
     lambda c: c.train(config=c.config(TINY_S2, _json_value("c_mel", "-Infinity"))),
     r"train\.c_mel: must be a finite number, got -inf", 1, lambda c: c.tmp / "bad.json"),
    ("-m under a regular file", "train_s1", lambda c: c.train("-m", c.file("afile") / "run"),
     r"-m .*afile is a file, not a directory", 1, lambda c: c.tmp / "afile"),
    ("-m is a regular file", "train_s2", lambda c: c.train("-m", c.file("run.txt"), config=TINY_S2),
     r"exists and is not a directory", 1, lambda c: c.tmp / "run.txt"),
    ("--device cuda without CUDA", "train_s1", lambda c: c.train("--device", "cuda"),
     r"--device cuda: CUDA is not available", 1, None),
    ("--device mps without MPS", "train_s2", lambda c: c.train("--device", "mps", config=TINY_S2),
     r"--device mps: MPS is not available", 1, None),
    ("--dist-timeout nan", "train_s1", lambda c: c.train("--dist-timeout", "nan"),
     r"argument --dist-timeout: must be a finite number", 2, None),
    # convert_checkpoint.py
    ("to-ours on a text file", "convert_checkpoint",
     lambda c: ["to-ours", c.file("s2G.pth", "not weights"), "-o", c.tmp / "x.pt"],
     r"not a PyTorch checkpoint file \(a text file\)", 1, lambda c: c.tmp / "s2G.pth"),
    ("to-v1 -o a directory", "convert_checkpoint", lambda c: ["to-v1", c.runs.s2, "-o", c.tmp],
     r"-o .*: is a directory", 1, lambda c: c.tmp),
    ("to-v1 --d-out under a regular file", "convert_checkpoint",
     lambda c: ["to-v1", c.runs.s2, "-o", c.tmp / "g.pth", "--d-out", c.file("afile") / "d.pth"],
     r"--d-out .*afile is a file, not a directory", 1, lambda c: c.tmp / "afile"),
    # extraction stages
    ("--device cuda without CUDA", "extract_ssl_s2",
     lambda c: ["--dump", c.tmp / "dump", "--config", TINY_S2, "--device", "cuda"],
     r"--device cuda: CUDA is not available", 1, None),
    ("--device cuda:1 without CUDA", "extract_vq_s1",
     lambda c: ["--dump", c.tmp / "dump", "--s2-ckpt", c.runs.s2, "--device", "cuda:1"],
     r"--device cuda:1: CUDA is not available", 1, None),
]


def _parse(module: object, script: str, argv: list[str]) -> object:
    if script == "train_s1":
        from common.training import parse_training_args

        return parse_training_args(module.build_parser(), argv)
    if script == "train_s2":
        return module.parse_args(argv)
    return module.build_parser().parse_args(argv)


def run_entry(script: str, argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """(exit status, the error line, all stderr) of the script's entry point, in this process.

    Any exception other than SystemExit escaping is a traceback a user would see: the test fails.
    """
    module = importlib.import_module(script)
    message = None
    try:
        code = module.cli(argv) if script in INFER else (module.main(_parse(module, script, argv)) or 0)
    except SystemExit as stop:
        code, message = (1, stop.code) if isinstance(stop.code, str) else (stop.code or 0, None)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    return code, message if message is not None else (lines[-1] if lines else ""), err


@pytest.mark.parametrize(("what", "script", "argv", "reason", "status", "bad"), CASES,
                         ids=[f"{script}: {what}" for what, script, *_ in CASES])
def test_bad_runtime_input(what: str, script: str, argv: Callable[[Ctx], list[object]], reason: str, status: int,
                           bad: Callable[[Ctx], object] | None, runs: TinyRuns, tmp_path: Path,
                           capsys: pytest.CaptureFixture) -> None:
    c = Ctx(runs, tmp_path)
    code, line, err = run_entry(script, [str(a) for a in argv(c)], capsys)
    assert code == status, f"exit status {code}, expected {status}: {err[-2000:]}"
    assert re.search(reason, line), f"expected /{reason}/ in: {line!r}"
    assert bad is None or str(bad(c)) in line, f"the message does not name {bad(c)}: {line!r}"
    assert "Traceback" not in err and "weights_only" not in err
    assert not (tmp_path / "out.wav").exists() and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- classes, as a user runs them


def shell(script: str, *args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO, env=script_env(),
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(res: subprocess.CompletedProcess, status: int) -> str:
    assert res.returncode == status, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res.stderr.strip().splitlines()[-1]


def test_output_and_options_are_checked_before_the_models(runs: TinyRuns, tmp_path: Path) -> None:
    """Bad -o or sampling options are reported even though the checkpoints named do not exist: the
    models were never loaded (before: the -o error came after synthesis, the options after loading)."""
    c = Ctx(runs, tmp_path)
    missing = tmp_path / "no_such_run"
    line = one_error_line(shell("tts.py", *c.tts("--s1-ckpt", missing, out=tmp_path)), 2)
    assert line == f"error: -o {tmp_path}: is a directory; give a file name"
    line = one_error_line(shell("tts.py", *c.tts("--s1-ckpt", missing, "--top-k", "-1")), 2)
    assert "top_k must be >= 0" in line
    line = one_error_line(shell("train_s1.py", *c.train("-m", c.file("afile") / "run")), 1)
    assert line == f"train_s1.py: -m {tmp_path / 'afile' / 'run'}: {tmp_path / 'afile'} is a file, not a directory"


def test_help_documents_top_k_off_and_random_seed() -> None:
    out = shell("tts.py", "--help").stdout
    assert "0 = off" in " ".join(out.split()) and "-1 = a random seed" in " ".join(out.split())


def test_seed_minus_one_is_random_printed_and_reproducible(runs: TinyRuns, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    import tts

    c = Ctx(runs, tmp_path)
    seeds, wavs = [], []
    for i in range(2):
        assert tts.cli([str(a) for a in c.tts("--seed", -1, out=tmp_path / f"r{i}.wav")]) == 0
        seeds.append(int(re.search(r"^seed (\d+) \(random; --seed \1 gives", capsys.readouterr().err, re.M)[1]))
        wavs.append((tmp_path / f"r{i}.wav").read_bytes())
    assert seeds[0] != seeds[1]
    assert tts.cli([str(a) for a in c.tts("--seed", seeds[0], out=tmp_path / "again.wav")]) == 0
    assert (tmp_path / "again.wav").read_bytes() == wavs[0]


def test_non_finite_config_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    """Before: NaN passed validation (died in the optimizer), Infinity skipped every batch."""
    c = Ctx(None, tmp_path)  # type: ignore[arg-type]
    for literal, shown in (("NaN", "nan"), ("Infinity", "inf")):
        config = c.config(TINY_S2, _json_value("learning_rate", literal))
        line = one_error_line(shell("train_s2.py", *c.train(config=config)), 1)
        assert line.startswith("train_s2")
        assert line.endswith(f": {config}: config.train.learning_rate: must be a finite number, got {shown}")
        assert not (tmp_path / "run").exists()


def test_a_non_checkpoint_file_gets_our_message(runs: TinyRuns, tmp_path: Path) -> None:
    res = shell("tts.py", *Ctx(runs, tmp_path).tts("--s1-ckpt", runs.ref))
    line = one_error_line(res, 2)
    assert line == f"error: S1 checkpoint {runs.ref}: not a PyTorch checkpoint file (a WAV (RIFF) file)"
    assert "weights_only" not in res.stderr


def test_a_damaged_newest_checkpoint_is_passed_over(runs: TinyRuns, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    """Inference from a run directory uses the newest intact checkpoint, says so and keeps the damaged file
    (resume, which also sets it aside, is in tests/test_reliability_kill_runtime.py)."""
    run = tmp_path / "s2"
    shutil.copytree(runs.s2, run)
    good = list_checkpoints(run)[-1]
    newer = run / "ckpt_00000099.pt"
    newer.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert load_checkpoint(run, stage="s2").path == good
    assert newer.is_file()
    code, _, err = run_entry("tts", [str(a) for a in Ctx(runs, tmp_path).tts("--s2-ckpt", run, "--seed", 0)], capsys)
    assert code == 0, err[-3000:]
    assert f"{newer}: damaged checkpoint (" in err and f"using {good.name} instead" in err


def test_device_cuda_without_cuda_is_one_line(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    c = Ctx(None, tmp_path)  # type: ignore[arg-type]
    line = one_error_line(shell("train_s2.py", *c.train("--device", "cuda", config=TINY_S2)), 1)
    assert line.startswith("train_s2: --device cuda: CUDA is not available on this machine")
    line = one_error_line(shell("extract_ssl_s2.py", "--dump", tmp_path, "--config", TINY_S2, "--device", "cuda"), 1)
    assert line.startswith("ssl: --device cuda: CUDA is not available on this machine")


def test_stale_temp_files_of_dead_writers_are_removed(runs: TinyRuns, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """A killed writer's temp file (here 11 MB, like the one found in a run directory) is removed by the
    next run with one line; the temp file of a writer that is still running is left alone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.wav.tmp-{dead.pid}"
    stale.write_bytes(b"\0" * 11_000_000)
    live = tmp_path / f".other.wav.tmp-{dead.pid + 10**7}"  # no such pid: stale as well
    mine = tmp_path / ".busy.wav.tmp-1"  # pid 1 always runs
    live.write_bytes(b"x")
    mine.write_bytes(b"x")
    code, _, err = run_entry("tts", [str(a) for a in Ctx(runs, tmp_path).tts("--seed", 0)], capsys)
    assert code == 0, err[-3000:]
    assert f"removed 2 temp file(s) of killed runs (11.0 MB) in {tmp_path}" in err
    assert not stale.exists() and not live.exists() and mine.exists()
    assert remove_stale_temps(tmp_path) == 0 and mine.exists()


def test_a_failed_start_leaves_no_run_files(runs: TinyRuns, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A fresh run that fails at start-up (here: no dump) leaves no run directory, config.json or train.log
    (before: both were left); a resume that fails puts config.json and train.log back as they were."""
    c = Ctx(runs, tmp_path)
    res = shell("train_s1.py", *c.train())
    assert "semantic metadata not found" in one_error_line(res, 1)
    assert not (tmp_path / "run").exists()
    run = tmp_path / "s1_run"
    shutil.copytree(runs.s1, run)
    (run / "config.json").write_text(TINY_S1.read_text(encoding="utf-8"), encoding="utf-8")
    (run / "train.log").write_text("earlier lines\n", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    config = c.config(TINY_S1, _json_value("learning_rate", "0.001"))  # same model, other training numbers
    argv = ["-m", run, "--dump", tmp_path / "dump", "--device", "cpu", "-c", config, "--resume"]
    code, line, _ = run_entry("train_s1", [str(a) for a in argv], capsys)
    assert code == 1 and "semantic metadata not found" in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
