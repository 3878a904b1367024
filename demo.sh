#!/usr/bin/env bash
# One command, the whole pipeline on an embedded synthetic corpus (CPU, ~10 minutes). See demo.py --help.
set -euo pipefail
cd "$(dirname "$0")"
exec python3 demo.py "$@"
