#!/usr/bin/env bash
# Peak memory of the bridge during a burst of rings: `demo` (the simulated doorbell, whose presses
# queue and follow each other at its fastest pace), 50 presses posted at once, RSS sampled every
# 20 ms until every ring is in and its pictures are taken.
#   bench/ring_burst.sh [BINARY] [RINGS]     (default: target/release/doorbell-bridge, 50)
# WRAP runs the bridge under a profiler, e.g. WRAP="valgrind --tool=massif --massif-out-file=F":
# then only the profile counts (the RSS printed is the profiler's), and start-up waits longer.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/doorbell-bridge}"
rings="${2:-50}"
data=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(port); rtsp=$(port); sim=$((20000 + RANDOM % 20000))
${WRAP:-} "$bin" demo --http-port "$http" --rtsp-port "$rtsp" --sim-port "$sim" --data-dir "$data" --ring-min-gap-ms 0 \
  >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
tries=100; [ -n "${WRAP:-}" ] && tries=600
for _ in $(seq $tries); do
  curl -fs "http://127.0.0.1:$http/api/status" | grep -q '"upstream":"connected"' && break
  sleep 0.1
done
sleep 2
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
base=$(rss)
for _ in $(seq "$rings"); do curl -fs -X POST "http://127.0.0.1:$sim/sim/ring" >/dev/null; done
start=$(date +%s.%N); peak=$base
while :; do
  r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
  n=$(curl -fs "http://127.0.0.1:$http/metrics" | awk '/^doorbell_bridge_rings_total/ {print $2}')
  [ "${n:-0}" -ge "$rings" ] && break
  sleep 0.02
  [ "$(echo "$(date +%s.%N) - $start > 120" | bc)" = 1 ] && { echo "timeout: $n rings" >&2; break; }
done
# The last ring's pictures (keyframe, then the doorbell's) are taken within a few seconds.
for _ in $(seq 150); do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.02; done
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
secs=$(echo "$(date +%s.%N) - $start" | bc)
echo "rings=$n seconds=$secs rss_before_kb=$base rss_peak_sampled_kb=$peak vmhwm_kb=$hwm"
