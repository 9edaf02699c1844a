#!/usr/bin/env bash
# Ring-detection benchmark: the bridge vs aioshelly + Home Assistant's counter rule, one run.
# Makes a throwaway venv with aioshelly (benchmark only), builds the example in release, runs it.
#   bench/ring_latency.sh [PRESSES]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-${TMPDIR:-/tmp}/doorbell-bench-aioshelly}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q aioshelly
fi
"$venv/bin/pip" show aioshelly | sed -n 's/^Version: /aioshelly /p'
cargo run --release --example ring_latency -- "$venv/bin/python" "${1:-1000}"
