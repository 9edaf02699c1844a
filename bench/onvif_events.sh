#!/usr/bin/env bash
# ONVIF event latency: the bridge vs Home Assistant's pull strategy, on the simulated doorbell.
# Usage: bench/onvif_events.sh [N back-to-back events] [M side-by-side events]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
flag=""; [ "$profile" = "release" ] && flag="--release"
cargo run -q $flag --example onvif_events_bench -- "${1:-1000}" "${2:-200}"
