#!/usr/bin/env bash
# The model-server benchmark in one sitting (see bench/README.md).
#   bash bench/run.sh [driver flags, e.g. --secs 5 --servers "kiln kserve"]
# Needs: wrk (installed with apt-get if missing), the project installed in the current Python
# (pip install -e '.[dev]'), and a peer venv with KServe and FastAPI (made here, once).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${KILN_BENCH_WORK:-/tmp/kiln-bench}
PYTHON=${PYTHON:-python3}
mkdir -p "$WORK"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [ ! -x "$WORK/peer-venv/bin/python" ]; then
  "$PYTHON" -m venv "$WORK/peer-venv"
  "$WORK/peer-venv/bin/pip" install -q kserve==0.21.0 onnxruntime==1.32.0 numpy \
    "fastapi>=0.110" "uvicorn[standard]>=0.29" ||
    echo "peer venv install failed: peers will be skipped, reference figures used" >&2
fi
# The ceiling's HTTP layers, run in this interpreter beside kiln-server (same libraries).
"$PYTHON" -c 'import uvicorn, granian' 2>/dev/null ||
  "$PYTHON" -m pip install -q "uvicorn>=0.29" "granian>=1.6" ||
  echo "uvicorn/granian install failed: the ceiling servers will be skipped" >&2
[ "$(nproc)" -ge 2 ] || { echo "the benchmark needs 2 CPUs (server and load generator)" >&2; exit 1; }
exec "$PYTHON" "$HERE/driver.py" --work "$WORK" "$@"
