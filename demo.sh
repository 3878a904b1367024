#!/usr/bin/env bash
# The whole pipeline on a synthetic corpus, trained on the CPU (about 10-12 minutes on 2 cores), with held-out measures.
# Installs what is missing first (setup_env.sh). Arguments go to demo.py (see python3 demo.py --help).
set -euo pipefail
cd "$(dirname "$0")"
bash setup_env.sh requirements.txt
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec python3 demo.py "$@"
