#!/usr/bin/env bash
# The CUDA checks in one run (a few minutes): tiny pipeline trained under torchrun (NCCL, bf16), tts.py on cuda,
# GPU benchmarks incl. the S1 decode step compiled with CUDA graphs. Arguments go to bench/gpu_check.py (--help).
# Without a CUDA GPU it exits at once with status 2 and one line on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec python3 -m bench.gpu_check "$@"
