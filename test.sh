#!/usr/bin/env bash
# The test suite from a fresh machine: installs what is missing (setup_env.sh), then runs pytest on the CPU.
#   bash test.sh                 # the whole suite (10-22 minutes on 2 cores, depending on the CPU)
#   bash test.sh tests/test_demo.py -k quick   # any pytest arguments
set -euo pipefail
cd "$(dirname "$0")"
bash setup_env.sh requirements-dev.txt
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec python3 -m pytest -x -q "$@"
