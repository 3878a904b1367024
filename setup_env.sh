#!/usr/bin/env bash
# Install what is missing for AR-VITS, pinned: torch 2.13.0 first (the CPU build when there is no NVIDIA GPU),
# then requirements.txt (or the file given, e.g. requirements-dev.txt). Does nothing when all is in place.
#   bash setup_env.sh                      # what demo.sh runs
#   bash setup_env.sh requirements-dev.txt # what test.sh runs
set -euo pipefail
cd "$(dirname "$0")"
REQ="${1:-requirements.txt}"
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "setup_env: Python >= 3.10 is needed" >&2; exit 1; }

if ! "$PY" -c 'import torch, sys; sys.exit(not torch.__version__.startswith("2.13.0"))' 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
        echo "setup_env: installing torch 2.13.0 (CUDA build)"
        "$PY" -m pip install torch==2.13.0
    else
        echo "setup_env: no NVIDIA GPU: installing torch 2.13.0 (CPU build)"
        "$PY" -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
            || "$PY" -m pip install torch==2.13.0
    fi
fi

# The pinned requirements (following -r includes) that are absent or at another version.
missing=$("$PY" - "$REQ" <<'PYEOF'
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

def pins(path):
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            yield from pins(Path(path).parent / line[3:].strip())
        elif m := re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)", line):
            yield m.group(1), m.group(2)
        elif line:
            yield re.split(r"[<>=!~ ;]", line, maxsplit=1)[0], None

for name, want in pins(sys.argv[1]):
    try:
        have = version(name)
    except PackageNotFoundError:
        print(name)
        continue
    if want is not None and have.split("+")[0] != want:
        print(name)
PYEOF
)
if [ -n "$missing" ]; then
    echo "setup_env: installing $(echo $missing | tr '\n' ' ')from $REQ (torch stays at 2.13.0)"
    "$PY" -m pip install -r "$REQ" -c <(echo torch==2.13.0)
fi
