#!/usr/bin/env bash
# The flood of tests/admission.rs as a benchmark, side by side in one run: the same flood from an
# outside address (a network namespace made here, 10.200.251.0/24 on a veth pair) against
#   A) the bridge (BINARY, default target/release/doorbell-bridge),
#   B) optionally a second bridge binary (e.g. an older build), and
#   C) the GStreamer proxy (bench/gst_rtsp_proxy.py), re-serving the same simulated doorbell.
# Loopback probes (viewer start, /healthz) run beside each flood. Needs root (ip netns) and
# Debian's python3-gi for the proxy (hence /usr/bin/python3).
#   bench/flood_compare.sh [BINARY] [OTHER_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/doorbell-bridge}"
other="${2:-}"
hold="${HOLD:-30}"
ns=dbb-bench-$$; va=dbbx$$; vb=dbby$$; net=10.200.251
cleanup() { ip link del "$va" 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; }
trap 'cleanup; kill $(jobs -p) 2>/dev/null || true' EXIT
ip netns add "$ns"; ip link add "$va" type veth peer name "$vb"; ip link set "$vb" netns "$ns"
ip addr add "$net.1/24" dev "$va"; ip link set "$va" up
ip -n "$ns" addr add "$net.2/24" dev "$vb"; ip -n "$ns" link set "$vb" up; ip -n "$ns" link set lo up
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])'; }
summary() { python3 - "$1" "$2" <<'PY'
import json, statistics, sys
o, l = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def ok(v): return [x for x in v if isinstance(x, (int, float))]
def bad(v): return [x for x in v if not isinstance(x, (int, float))]
for name, v in (("outside authenticated viewer", o["viewer_ms"]), ("loopback viewer", l["viewer_ms"])):
    g = ok(v)
    med = f"{statistics.median(g):.1f}" if g else "-"
    mx = f"{max(g):.1f}" if g else "-"
    print(f"  {name}: {len(g)}/{len(v)} started, median {med} ms, max {mx} ms; failures {bad(v)}")
hz = sorted(l.get("healthz_ms", []))
if hz:
    p99 = hz[min(len(hz) - 1, int(len(hz) * 0.99))]
    print(f"  loopback /healthz: n={len(hz)} median {statistics.median(hz):.1f} ms p99 {p99:.1f} ms max {hz[-1]:.1f} ms")
c = (o["http_connects"], o["rtsp_connects"], o["http_open_max"], o["rtsp_open_max"])
print("  flood: %d HTTP and %d RTSP connects, open at most %d / %d" % c)
PY
}

run_bridge() {
  local b=$1 name=$2 data http rtsp sim token=bench-token-0123456789abcdef
  data=$(mktemp -d); http=$(port); rtsp=$(port); sim=$((20000 + RANDOM % 20000))
  # demo binds loopback; the flood needs the bridge on the veth address too: run it from a config.
  "$b" demo --http-port 0 --rtsp-port 0 --sim-port "$sim" --data-dir "$data/demo" >/dev/null 2>&1 &
  local demo=$!
  sleep 1
  cat >"$data/bridge.yaml" <<YAML
doorbell: {host: 127.0.0.1, password: ABCDEF, http_port: $sim, rtsp_port: $((sim + 1))}
server: {bind: 0.0.0.0, http_port: $http, rtsp_port: $rtsp, api_token: $token, rtsp_username: viewer, rtsp_password: benchpass}
streams: {main: {path: /Streaming/Channels/101/}}
coiot: {enabled: false}
data_dir: $data/bridge
log_level: error
YAML
  "$b" --config "$data/bridge.yaml" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$http/api/status" | grep -q '"upstream":"connected"' && break; sleep 0.1; done
  local lo
  python3 bench/flood.py --host 127.0.0.1 --http-port "$http" --rtsp-port "$rtsp" --hold "$hold" --probe-only >"$data/lo.json" &
  lo=$!
  local out
  out=$(ip netns exec "$ns" python3 bench/flood.py --host "$net.1" --http-port "$http" --rtsp-port "$rtsp" \
    --hold "$hold" --token "$token" --rtsp-user viewer --rtsp-pass benchpass)
  wait "$lo"
  echo "$name ($b): peak RSS $(awk '/^VmHWM/ {print $2}' /proc/$pid/status) kB"
  summary "$out" "$(cat "$data/lo.json")"
  kill "$pid" "$demo"; wait "$pid" "$demo" 2>/dev/null || true
  rm -rf "$data"
}

run_gst() {
  local b=$1 data rtsp sim
  data=$(mktemp -d); rtsp=$(port); sim=$((20000 + RANDOM % 20000))
  "$b" demo --http-port 0 --rtsp-port 0 --sim-port "$sim" --data-dir "$data/demo" >/dev/null 2>&1 &
  local demo=$!
  sleep 1
  /usr/bin/python3 bench/gst_rtsp_proxy.py "rtsp://admin:ABCDEF@127.0.0.1:$((sim + 1))/Streaming/Channels/101/" "$rtsp" none 0.0.0.0 >/dev/null 2>&1 &
  local gst=$!
  sleep 2
  python3 bench/flood.py --host 127.0.0.1 --rtsp-port "$rtsp" --hold "$hold" --probe-only >"$data/lo.json" &
  local lo=$!
  local out
  out=$(ip netns exec "$ns" python3 bench/flood.py --host "$net.1" --rtsp-port "$rtsp" --hold "$hold" --http 0)
  wait "$lo"
  echo "GStreamer proxy: peak RSS $(awk '/^VmHWM/ {print $2}' /proc/$gst/status) kB (RTSP flood only: it has no HTTP)"
  summary "$out" "$(cat "$data/lo.json")"
  kill "$gst" "$demo"; wait "$gst" "$demo" 2>/dev/null || true
  rm -rf "$data"
}

echo "flood: 300 half-open HTTP + 200 half-open RTSP from $net.2 for ${hold}s; probes every 3 s"
run_bridge "$bin" "bridge"
[ -n "$other" ] && run_bridge "$other" "other bridge"
run_gst "$bin"
