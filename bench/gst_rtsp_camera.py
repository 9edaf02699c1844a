#!/usr/bin/python3
"""A third-party RTSP camera for the tests and benchmarks: gst-rtsp-server serving live H.264
(640x480, 15 fps, a keyframe every 2 s) and a 440 Hz tone as AAC-LC 16 kHz mono or G.711
(mu-law or A-law, 8 kHz), at rtsp://127.0.0.1:PORT/Streaming/Channels/101 (the DB1's path).

    python3 bench/gst_rtsp_camera.py SOUND [PORT]     SOUND: aac | pcmu | pcma | none

PORT 0 (the default) picks a free port. Prints `ready PORT` once listening; runs until stdin
closes (or it is killed).
"""
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
sound = sys.argv[1] if len(sys.argv) > 1 else "aac"
port = sys.argv[2] if len(sys.argv) > 2 else "0"
VIDEO = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=480,framerate=15/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bframes=0 threads=1 "
    "! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=-1"
)
TONE = "audiotestsrc is-live=true freq=440 volume=0.3 samplesperbuffer=320 ! audioconvert ! audioresample"
AUDIO = {
    "aac": f"{TONE} ! audio/x-raw,rate=16000,channels=1 ! avenc_aac ! aacparse ! rtpmp4gpay name=pay1 pt=97",
    "pcmu": f"{TONE} ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 pt=0",
    "pcma": f"{TONE} ! audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name=pay1 pt=8",
    "none": "",
}
server = GstRtspServer.RTSPServer()
server.set_service(port)
server.set_address("127.0.0.1")
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(f"( {VIDEO} {AUDIO[sound]} )")
factory.set_shared(True)
server.get_mount_points().add_factory("/Streaming/Channels/101", factory)
server.attach(None)
print(f"ready {server.get_bound_port()}", flush=True)
loop = GLib.MainLoop()


def wait_stdin():
    for _ in sys.stdin:
        pass
    loop.quit()


threading.Thread(target=wait_stdin, daemon=True).start()
loop.run()
