#!/bin/sh
# Makes keyframe-1536x2048.h264: one H.264 IDR access unit (SPS + PPS + IDR) as raw Annex B,
# the size of the doorbell's main stream (portrait 1536x2048), Main profile (CABAC), and
# keyframe-high-1536x2048.h264: the same picture in High profile (CABAC with the 8x8 transform),
# which cameras of this kind may also send.
set -e
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=1536x2048:rate=1" -frames:v 1 \
  -c:v libx264 -profile:v main -pix_fmt yuv420p -preset veryfast -crf 32 -x264-params keyint=1:aud=0 \
  -bsf:v h264_mp4toannexb -f h264 keyframe-1536x2048.h264
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=1536x2048:rate=1" -frames:v 1 \
  -c:v libx264 -profile:v high -pix_fmt yuv420p -preset veryfast -crf 32 -x264-params keyint=1:aud=0:8x8dct=1 \
  -bsf:v h264_mp4toannexb -f h264 keyframe-high-1536x2048.h264
