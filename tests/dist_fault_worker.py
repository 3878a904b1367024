"""One rank of a 2-process gloo group with a fault, for ``tests/test_dist_faults.py``.

    RANK=r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=p python tests/dist_fault_worker.py FAULT OP TIMEOUT_S

``FAULT``: ``die`` (rank 1 exits abruptly with ``os._exit`` before the collective), ``hang``
(rank 1 stays alive but never calls the collective), ``none`` (both call it). ``OP``: one of
``all_reduce``, ``broadcast``, ``barrier``, ``all_gather``, or ``all`` (each in turn). Rank 0 prints ``ok <seconds>`` or
``error <seconds> <message>`` (the time spent inside the collective) and exits 0 or 2. A
failing ``setup_dist`` prints ``init-error <seconds> <message>`` and exits 3.

The worker prints ``ready`` once its imports are done and waits for a line on stdin before
it joins the group, so that slow imports on a loaded machine never eat into the timeout.
"""

from __future__ import annotations

import os
import sys
import time

import torch

from common.dist import DistError, all_gather_objects, all_reduce_sum_, barrier, broadcast_, cleanup_dist, setup_dist

OPS = {
    "all_reduce": lambda: all_reduce_sum_(torch.ones(3)),
    "broadcast": lambda: broadcast_(torch.ones(3), src=1),  # rank 0 receives from the faulty rank
    "barrier": barrier,
    "all_gather": lambda: all_gather_objects({"rank": os.environ["RANK"]}),
}


def main(fault: str, op: str, timeout_s: float) -> int:
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.monotonic()
    try:
        info = setup_dist(timeout_s=timeout_s, device="cpu")
    except DistError as err:
        print(f"init-error {time.monotonic() - t0:.2f} {err}", flush=True)
        return 3
    try:
        if info.rank == 1 and fault == "die":
            os._exit(9)  # no cleanup, no goodbye: like a SIGKILL or an OOM kill
        if info.rank == 1 and fault == "hang":
            time.sleep(20 * timeout_s)
            return 0
        for name in OPS if op == "all" else [op]:
            t0 = time.monotonic()
            try:
                OPS[name]()
            except DistError as err:
                print(f"error {time.monotonic() - t0:.2f} {err}", flush=True)
                return 2
            print(f"ok {time.monotonic() - t0:.2f} {name}", flush=True)
        return 0
    finally:
        cleanup_dist()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
