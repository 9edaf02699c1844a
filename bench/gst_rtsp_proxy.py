#!/usr/bin/env python3
"""The comparison anchor: an RTSP proxy built from Debian's GStreamer, rtspsrc feeding
gst-rtsp-server with one shared media (one session on the camera for all viewers).

    python3 bench/gst_rtsp_proxy.py SOURCE_URL PORT [BIND_ADDRESS]
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

Gst.init(None)
src, port = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_service(port)
server.set_address(sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1")
factory = GstRtspServer.RTSPMediaFactory()
# Pass the H.264 through (no decode); h264parse re-sends SPS/PPS with every keyframe.
factory.set_launch(
    f"( rtspsrc location={src} protocols=tcp latency=0 ! rtph264depay ! h264parse "
    f"! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
factory.set_shared(True)
factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
server.get_mount_points().add_factory("/main", factory)
server.attach(None)
print(f"ready rtsp://{server.get_address()}:{port}/main", flush=True)
GLib.MainLoop().run()
