#!/bin/sh
# Remakes the talk test files: 1 s of 660 Hz as MP3 (24 kHz) and FLAC (22.05 kHz), and 0.5 s of
# 440 Hz as OGG/Opus (which the bridge refuses with 415).
set -e
cd "$(dirname "$0")"
ffmpeg -y -hide_banner -loglevel error -f lavfi -i "sine=frequency=660:duration=1:sample_rate=24000" -ac 1 -b:a 48k tone660.mp3
ffmpeg -y -hide_banner -loglevel error -f lavfi -i "sine=frequency=660:duration=1:sample_rate=22050" tone660.flac
ffmpeg -y -hide_banner -loglevel error -f lavfi -i "sine=frequency=440:duration=0.5:sample_rate=48000" -c:a libopus -b:a 16k tone440.opus
