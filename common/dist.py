"""Distributed setup that is a no-op without torchrun, and collectives that fail instead of hanging.

``python train_x.py`` runs one process on one device with no process group;
``torchrun --nproc_per_node=N train_x.py`` (or a multi-node rendezvous) initialises a
process group from the environment: NCCL on CUDA, gloo on CPU.

Faults end the run within a bounded time instead of hanging it:

- starting the group: a rank that cannot reach the rendezvous master (``MASTER_ADDR:MASTER_PORT``)
  within ``timeout_s``, or a master whose peers do not all join within ``timeout_s``, raises
  ``DistError``;
- collectives (``all_reduce_sum_``, ``broadcast_``, ``barrier``, ``all_gather_objects``): the
  process-group timeout applies to each (gloo honours it; NCCL's watchdog aborts the process).
  A peer that died makes the call fail at once (connection reset), a peer that hangs makes it
  fail after the timeout; either way a ``DistError`` names the rank, the operation and the cause.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist


class DistError(RuntimeError):
    """The process group could not start, or a collective failed (a peer died, hung, or is unreachable)."""


@dataclass
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class DeviceError(RuntimeError):
    """A requested device does not exist on this machine, or is not a device name."""


def pick_device(requested: str | None = None, prefer_mps: bool = False) -> torch.device:
    """``requested`` ('cpu', 'cuda', 'cuda:1', 'mps') or the best available device.

    Best available: CUDA, then (with ``prefer_mps``, for inference) MPS, then CPU. The one
    resolver of every script's ``--device``: an unknown name or an unavailable device raises
    ``DeviceError`` with a one-line message naming it.
    """
    if requested:
        try:
            dev = torch.device(requested)
        except RuntimeError:
            raise DeviceError(f"--device {requested}: not a device name (use cpu, cuda, cuda:N or mps)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(f"--device {requested}: CUDA is not available on this machine "
                              f"(torch {torch.__version__}); use --device cpu")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise DeviceError(f"--device {requested}: MPS is not available on this machine; use --device cpu")
        if dev.type not in ("cpu", "cuda", "mps"):
            raise DeviceError(f"--device {requested}: unsupported device type (use cpu, cuda, cuda:N or mps)")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if prefer_mps and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _master() -> tuple[str, int]:
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port or not port.isdigit():
        raise DistError(f"RANK and WORLD_SIZE are set but MASTER_ADDR/MASTER_PORT are not (got {addr!r}, "
                        f"{port!r}); launch with torchrun, or set both for a manual launch")
    return addr, int(port)


def _hosts_store(rank: int) -> bool:
    """Whether this process serves the rendezvous store (env:// rank 0, unless torchrun's agent does)."""
    return rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true"


def _wait_for_master(addr: str, port: int, rank: int, timeout_s: float) -> None:
    """Poll the rendezvous master's TCP port until it accepts a connection, at most ``timeout_s``.

    The store client of torch retries with growing delays (well past its timeout); this bounds
    the wait by ``timeout_s`` and names what is missing.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((addr, port), timeout=max(0.1, min(left, 2.0))):
                return
        except OSError as err:
            if time.monotonic() + 0.2 >= deadline:
                raise DistError(f"rank {rank}: no rendezvous master at {addr}:{port} after {timeout_s:g} s "
                                f"({err.strerror or err}); is rank 0 running, and are MASTER_ADDR/MASTER_PORT "
                                "right?") from None
            time.sleep(0.2)


def setup_dist(timeout_s: float = 600.0, device: str | None = None) -> DistInfo:
    """Read the torchrun environment, pick the device, initialise the process group.

    Without torchrun this returns rank 0 of 1 and initialises nothing. ``timeout_s`` bounds the
    start of the group and every later collective (see the module docstring).
    """
    if not under_torchrun():
        return DistInfo(0, 0, 1, pick_device(device))
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        addr, port = _master()
        if not _hosts_store(rank):
            _wait_for_master(addr, port, rank, timeout_s)
        kwargs = {"device_id": dev} if backend == "nccl" else {}
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
        except (RuntimeError, ValueError) as err:  # DistStoreError / DistNetworkError are RuntimeErrors
            raise DistError(f"rank {rank} of {world}: the {backend} process group did not start within "
                            f"{timeout_s:g} s via {addr}:{port} ({_first_line(err)}); did every rank start?") from None
    return DistInfo(rank, local_rank, world, dev)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def _collective(op: str, call: Callable[[], object]) -> None:
    """Run one collective; a failure (dead or hung peer) becomes a ``DistError`` naming the rank and op."""
    try:
        call()
    except RuntimeError as err:  # gloo/NCCL raise DistBackendError (a RuntimeError) for a reset or a timeout
        raise DistError(f"rank {rank()} of {world_size()}: {op} failed: another rank died or did not reach "
                        f"this {op} within the process-group timeout ({_first_line(err)})") from None


_COMM_FAILURE_MARKERS = ("gloo", "NCCL", "Connection reset by peer", "Connection closed by peer", "Timed out")


def as_dist_error(err: BaseException) -> DistError | None:
    """``err`` as a ``DistError`` when it is a failure of the process group's communication, else None.

    For the script boundary: collectives run inside torch (DDP's gradient all-reduce in backward)
    raise plain ``RuntimeError``s from gloo or NCCL when a peer dies or hangs; this turns them into
    one readable line. Errors of a single-process run are never converted.
    """
    if isinstance(err, DistError):
        return err
    if not is_dist() or not isinstance(err, RuntimeError):
        return None
    text = str(err)
    if not (isinstance(err, dist.DistBackendError) or any(m in text for m in _COMM_FAILURE_MARKERS)):
        return None
    return DistError(f"rank {rank()} of {world_size()}: communication with the other ranks failed: another rank "
                     f"died or did not answer within the process-group timeout ({_first_line(err)})")


def exit_on_comm_failure(prefix: str, err: DistError) -> NoReturn:
    """Print one line and leave at once (exit status 1) after a peer died or hung.

    Tearing a gloo/NCCL process group down with a peer gone can abort the process
    ("terminate called without an active exception") or hang, so no cleanup is attempted.
    """
    sys.stdout.flush()
    print(f"{prefix}: {err}", file=sys.stderr, flush=True)
    os._exit(1)


@contextlib.contextmanager
def distributed_stage(prog: str, device: str | None = None, timeout_s: float = 600.0) -> Iterator[DistInfo]:
    """``setup_dist`` around a stage's work, with its failure handling in one place.

    An unavailable ``--device`` exits with one line; a dead or hung peer inside (``as_dist_error``)
    prints one line and leaves at once (``exit_on_comm_failure``); the process group is torn
    down on every other way out. Usage: ``with distributed_stage("extract_x", args.device) as info:``.
    """
    try:
        info = setup_dist(timeout_s=timeout_s, device=device)
    except DeviceError as err:
        raise SystemExit(f"{prog}: {err}") from None
    try:
        yield info
    except RuntimeError as err:  # DistError, or gloo/NCCL errors raised inside torch (DDP's backward)
        if (failure := as_dist_error(err)) is None:
            raise
        exit_on_comm_failure(prog, failure)
    finally:
        cleanup_dist()


def all_reduce_sum_(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (no-op on one process)."""
    if is_dist():
        _collective("all_reduce", lambda: dist.all_reduce(t, op=dist.ReduceOp.SUM))
    return t


def broadcast_(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``t`` with rank ``src``'s value in place (no-op on one process)."""
    if is_dist():
        _collective("broadcast", lambda: dist.broadcast(t, src))
    return t


def barrier() -> None:
    if is_dist():
        _collective("barrier", dist.barrier)


def all_gather_objects(obj: object) -> list:
    """Every rank's ``obj`` in rank order (``[obj]`` on one process)."""
    if not is_dist():
        return [obj]
    out: list = [None] * dist.get_world_size()
    _collective("all_gather_object", lambda: dist.all_gather_object(out, obj))
    return out


def cleanup_dist() -> None:
    if is_dist():
        dist.destroy_process_group()
