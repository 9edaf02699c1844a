#!/usr/bin/env bash
# Ring clip benchmark: pre-roll memory at 2 Mbit/s, press -> clip available for the bridge and for
# ffmpeg -c copy recording the same seconds from the doorbell's stream, CPU to write one clip.
#   bench/clips.sh                       8 presses, pre-roll 4 s, post-roll 10 s
#   PRESSES=8 PRE=4 POST=10 bench/clips.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example clips_bench
exec target/release/examples/clips_bench
