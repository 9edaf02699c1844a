#!/usr/bin/env bash
# Snapshot benchmark: cached /api/snapshot.jpg vs the simulated doorbell's slow snapshot URL under
# the same open-loop load from a second process, keyframe -> JPEG time, ring -> ring picture time.
#   bench/snapshot.sh                      200 requests/s for 10 s, doorbell answering in 1000 ms
#   RATE=200 SECS=10 SLOW_MS=1000 RINGS=50 bench/snapshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example snapshot_bench
exec target/release/examples/snapshot_bench
