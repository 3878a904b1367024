"""What this CPU can do, from /proc/cpuinfo (Linux; empty answers elsewhere).

    from common.cpu import cpu_model, cpu_flags, cpu_bf16_native, cpu_vendor
    cpu_bf16_native()    # True on CPUs with AVX-512 BF16 or AMX-BF16: bf16 matmuls/convs run natively
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str], str]:
    model, flags, vendor = platform.processor() or "unknown", frozenset(), "unknown"
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags, vendor
    for line in text.splitlines():
        if line.startswith("vendor_id"):
            vendor = line.split(":", 1)[1].strip()
        elif line.startswith("model name") and model in ("unknown", platform.processor()):
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = frozenset(line.split(":", 1)[1].split())
            break
    return model, flags, vendor


def cpu_model() -> str:
    """The CPU's model name ("unknown" if the system does not say)."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty if unknown)."""
    return _cpuinfo()[1]


def cpu_vendor() -> str:
    """The CPU's vendor id ("GenuineIntel", "AuthenticAMD", ...; "unknown" if the system does not say)."""
    return _cpuinfo()[2]


def cpu_bf16_native() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512 BF16 or AMX-BF16)."""
    return bool(cpu_flags() & BF16_FLAGS)
