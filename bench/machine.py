"""The facts a benchmark figure needs beside it: CPU model and the flags that matter, threads, load, torch.

    from bench.machine import machine_facts
    print(json.dumps({"machine": machine_facts(), ...}))

    python -m bench.machine           # prints them (JSON)

Every benchmark in ``bench/`` puts ``machine_facts()`` into its JSON output (key ``machine``),
so that a figure is never read without the machine it came from: a speed measured on an Intel
CPU with AMX does not carry over to an AMD one, nor a figure taken at load 6 to a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import torch

from common.cpu import cpu_flags, cpu_model

# CPU flags that change which kernels PyTorch / oneDNN / MKL run (vector width, bf16/int8 dot products, AMX)
RELEVANT_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                  "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def machine_facts(device: torch.device | str | None = None) -> dict:
    """CPU model, relevant flags, logical CPUs, torch threads, load average, torch version and build
    (MKL, oneDNN, the ATen CPU kernel level); with a CUDA ``device``, its name and CUDA version."""
    facts = {
        "cpu_model": cpu_model(),
        "arch": platform.machine(),
        "cpu_flags": [f for f in RELEVANT_FLAGS if f in cpu_flags()],
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1_5_15": load_now(),
        "torch": torch.__version__,
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": torch.backends.mkl.is_available(),
        "onednn": torch.backends.mkldnn.is_available(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
        facts["cuda"] = torch.version.cuda
        facts["gpus"] = torch.cuda.device_count()
    return facts


def load_now() -> list[float] | None:
    """The 1/5/15-minute load averages now (to report beside ``machine_facts``' value taken before)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def main(args: argparse.Namespace) -> None:
    print(json.dumps(machine_facts(args.device), indent=2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="also describe this CUDA device (e.g. cuda)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
