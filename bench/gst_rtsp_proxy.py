#!/usr/bin/env python3
"""The comparison anchor: an RTSP proxy built from Debian's GStreamer, rtspsrc feeding
gst-rtsp-server with one shared media (one session on the camera for all viewers), relaying the
H.264 video and the camera's sound (SOUND: aac, pcmu, pcma or none; passed through, no transcode).

    python3 bench/gst_rtsp_proxy.py SOURCE_URL PORT [SOUND] [BIND_ADDRESS]
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

Gst.init(None)
src, port = sys.argv[1], sys.argv[2]
sound = sys.argv[3] if len(sys.argv) > 3 else "none"
# Depayload and payload again, as gst-rtsp-server serves payloaders' output.
AUDIO = {
    "aac": "rtpmp4gdepay ! aacparse ! rtpmp4gpay name=pay1 pt=97",
    "pcmu": "rtppcmudepay ! rtppcmupay name=pay1 pt=0",
    "pcma": "rtppcmadepay ! rtppcmapay name=pay1 pt=8",
}
audio = f" src. ! application/x-rtp,media=audio ! queue ! {AUDIO[sound]}" if sound in AUDIO else ""
server = GstRtspServer.RTSPServer()
server.set_service(port)
server.set_address(sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1")
factory = GstRtspServer.RTSPMediaFactory()
# Pass the H.264 through (no decode); h264parse re-sends SPS/PPS with every keyframe.
factory.set_launch(
    f"( rtspsrc name=src location={src} protocols=tcp latency=0 src. ! application/x-rtp,media=video ! queue ! rtph264depay ! h264parse "
    f"! rtph264pay name=pay0 pt=96 config-interval=-1{audio} )"
)
factory.set_shared(True)
factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
server.get_mount_points().add_factory("/main", factory)
server.attach(None)
print(f"ready rtsp://{server.get_address()}:{port}/main", flush=True)
GLib.MainLoop().run()
