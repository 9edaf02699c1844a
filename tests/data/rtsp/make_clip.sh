#!/usr/bin/env bash
# Makes the clip the simulated doorbell streams: raw Annex B H.264 (no container, so the simulator
# packetizes it without a demuxer), portrait 1536x2048, 15 fps, a keyframe every 2 s (30 frames),
# 4 s long, no B-frames, SPS/PPS repeated before every keyframe. Kept small with a simple picture.
set -euo pipefail
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=1536x2048:rate=15:duration=4" \
  -vf "drawtext=text='DOORBELL %{frame_num}':x=40:y=40:fontsize=96:fontcolor=white:box=1:boxcolor=black" \
  -c:v libx264 -profile:v main -preset veryfast -tune zerolatency -threads 1 -pix_fmt yuv420p \
  -x264-params "keyint=30:min-keyint=30:scenecut=0:bframes=0:repeat-headers=1:sliced-threads=0:slices=1" \
  -b:v 700k -maxrate 900k -bufsize 900k \
  -bsf:v h264_mp4toannexb -f h264 doorbell_1536x2048_15fps.h264
# The same at half the resolution, 2 s: what the stream becomes when the owner lowers the
# resolution in the app (the simulator switches to it on `POST /sim/resolution?size=768x1024`).
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=768x1024:rate=15:duration=2" \
  -c:v libx264 -profile:v main -preset veryfast -tune zerolatency -threads 1 -pix_fmt yuv420p \
  -x264-params "keyint=30:min-keyint=30:scenecut=0:bframes=0:repeat-headers=1:sliced-threads=0:slices=1" \
  -b:v 300k -maxrate 400k -bufsize 400k \
  -bsf:v h264_mp4toannexb -f h264 doorbell_768x1024_15fps.h264
ls -l doorbell_1536x2048_15fps.h264 doorbell_768x1024_15fps.h264
