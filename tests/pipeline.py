"""Build a real S2 dump and a trained tiny S2 run by running the pipeline scripts as a user would.

Every stage is a subprocess with the real command line (``resample.py`` → ``gen_phonemes.py``
→ ``extract_ssl_s2.py`` with a tiny random HuBERT → ``gen_filelist_s2.py`` → ``train_s2.py``),
so what the tests and the demo get is exactly what a user's shell would produce. Training
subprocesses run with one intra-op thread (``OMP_NUM_THREADS=1``): the test machines have
few cores shared by several processes, and oversubscribed OpenMP threads slow a step down
many times over.

Also here: ``read_scalars`` / ``read_tensorboard`` to read a run's tensorboard events back.
Used by the tests (fixtures in tests/conftest.py) and the demo; keep it free of pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TINY_S2 = REPO / "configs" / "tiny" / "s2.json"
S2_RUN_STEPS = 30  # steps of the shared tiny S2 run (tests/conftest.py: s2_run)


class ScriptError(RuntimeError):
    """A pipeline script exited with an error; the message holds its command line and output."""


@dataclass(frozen=True)
class S2Dump:
    dump: Path  # the data directory (manifest, phonemes, wav32k/, ssl/, s2_*.list)
    hubert: Path  # the tiny HuBERT the features were extracted with
    config: Path  # the S2 config the dump was built for


def script_env(threads: int = 1, **extra: str) -> dict[str, str]:
    """The environment of a script run: repo on PYTHONPATH, offline hub, ``threads`` intra-op threads."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    return env | extra


def run_script(script: str, *args: object, check: bool = True, timeout: float = 600,
               torchrun_nproc: int = 0) -> subprocess.CompletedProcess:
    """Run ``python <script> <args>`` (or ``torchrun --nproc_per_node=N <script> <args>``) from the repo root.

    With ``check`` a non-zero exit raises ``ScriptError`` with the command and its output.
    """
    if torchrun_nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun_nproc}"]
    else:
        cmd = [sys.executable]
    cmd += [str(REPO / script), *map(str, args)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=script_env())
    if check and result.returncode != 0:
        raise ScriptError(f"{' '.join(cmd)} exited with {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n"
                          f"--- stderr\n{result.stderr[-4000:]}")
    return result


def build_s2_dump(source: Path, work: Path, config: Path = TINY_S2) -> S2Dump:
    """Run the four data stages on a dataset (a ``.list`` file or a ``<lang>/<speaker>/`` tree) into ``work/dump``.

    The tiny HuBERT is built in ``work/hubert`` first (its hidden size is the config's ``data.ssl_dim``).
    """
    from tests.tiny_hubert import make_tiny_hubert

    work = Path(work)
    dump, hubert = work / "dump", work / "hubert"
    ssl_dim = json.loads(Path(config).read_text(encoding="utf-8"))["data"]["ssl_dim"]
    make_tiny_hubert(hubert, hidden_size=ssl_dim)
    form = "--list" if Path(source).is_file() else "--root"
    run_script("resample.py", form, source, "--dump", dump, "--workers", 2)
    run_script("gen_phonemes.py", "--dump", dump, "--workers", 2)
    run_script("extract_ssl_s2.py", "--dump", dump, "--config", config, "--ssl-model", hubert, "--device", "cpu")
    run_script("gen_filelist_s2.py", "--dump", dump, "--config", config)
    return S2Dump(dump, hubert, Path(config))


def write_config(path: Path, base: Path = TINY_S2, **sections: dict[str, Any]) -> Path:
    """A copy of the JSON config ``base`` with ``sections`` merged in (e.g. ``train={"eval_interval": 5}``)."""
    cfg = json.loads(Path(base).read_text(encoding="utf-8"))
    for name, values in sections.items():
        cfg[name].update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return path


def run_train_s2(dump: S2Dump, run_dir: Path, steps: int, *extra: object, config: Path | None = None,
             resume: bool = False, nproc: int = 0, check: bool = True) -> subprocess.CompletedProcess:
    """``train_s2.py -m <run_dir> --dump <dump> --device cpu --max-steps <steps> [-c <config>] <extra>``.

    A new run gets ``-c`` (``config``, default the dump's); ``resume`` passes ``--resume`` and ``-c``
    only when ``config`` is given. ``nproc`` > 0 runs it under torchrun with that many processes.
    """
    args: list[object] = ["-m", run_dir, "--dump", dump.dump, "--device", "cpu", "--max-steps", steps]
    if resume:
        args += ["--resume"] + (["-c", config] if config is not None else [])
    else:
        args += ["-c", config or dump.config]
    return run_script("train_s2.py", *args, *extra, check=check, torchrun_nproc=nproc)


def read_tensorboard(run_dir: Path) -> Any:
    """The reloaded ``EventAccumulator`` of ``<run_dir>/tb`` (scalars, images and audio kept in full)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / "tb"), size_guidance={"scalars": 0, "images": 0, "audio": 0})
    return acc.Reload()


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's tensorboard events: tag -> [(step, value)] in step order."""
    acc = read_tensorboard(run_dir)
    return {tag: sorted((e.step, e.value) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


# ----------------------------------------------------------------------------- S1 (appended for the S1 tests)

TINY_S1 = REPO / "configs" / "tiny" / "s1.json"
S1_RUN_STEPS = 200  # steps of the shared tiny S1 run (tests/conftest.py: s1_run); = max_steps of TINY_S1


@dataclass(frozen=True)
class S1Dump:
    dump: Path  # a copy of the S2 dump plus semantic.tsv/.json and s1_train.tsv/s1_val.tsv
    config: Path  # the S1 config the lists were filtered with
    s2_checkpoint: Path  # the S2 checkpoint (or run directory) the tokens were extracted with


def build_s1_dump(s2_dump: S2Dump, s2_checkpoint: Path, work: Path, config: Path = TINY_S1) -> S1Dump:
    """Copy ``s2_dump`` into ``work/dump``, then run ``extract_vq_s1.py`` and ``gen_filelist_s1.py`` on it."""
    import shutil

    dump = Path(work) / "dump"
    shutil.copytree(s2_dump.dump, dump)
    run_script("extract_vq_s1.py", "--dump", dump, "--s2-ckpt", s2_checkpoint, "--device", "cpu",
               "--num-workers", 0)
    run_script("gen_filelist_s1.py", "--dump", dump, "--config", config)
    return S1Dump(dump, Path(config), Path(s2_checkpoint))


def train_s1(dump: S1Dump, run_dir: Path, steps: int, *extra: object, config: Path | None = None,
             resume: bool = False, nproc: int = 0, check: bool = True) -> subprocess.CompletedProcess:
    """``train_s1.py -m <run_dir> --dump <dump> --device cpu --max-steps <steps> [-c <config>] <extra>``.

    A new run gets ``-c`` (``config``, default the dump's); ``resume`` passes ``--resume`` and ``-c``
    only when ``config`` is given. ``nproc`` > 0 runs it under torchrun with that many processes.
    """
    args: list[object] = ["-m", run_dir, "--dump", dump.dump, "--device", "cpu", "--max-steps", steps]
    if resume:
        args += ["--resume"] + (["-c", config] if config is not None else [])
    else:
        args += ["-c", config or dump.config]
    return run_script("train_s1.py", *args, *extra, check=check, torchrun_nproc=nproc)
