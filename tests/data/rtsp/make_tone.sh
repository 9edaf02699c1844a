#!/usr/bin/env bash
# Makes the sound the simulated doorbell sends when set to AAC: a 440 Hz tone, AAC-LC 16 kHz
# mono in ADTS (what DB1 units with AAC firmware send), 4.096 s = 64 AAC frames, so it loops
# without a gap in the RTP clock.
set -euo pipefail
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "sine=frequency=440:sample_rate=16000:duration=4.096" \
  -c:a aac -profile:a aac_low -b:a 24k -ac 1 -f adts tone_16k_mono.aac
ls -l tone_16k_mono.aac
