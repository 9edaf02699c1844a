"""Constants of the Doorbell Bridge integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "doorbell_bridge"
MANUFACTURER: Final = "Doorbell Bridge"

CONF_RTSP_PORT: Final = "rtsp_port"
CONF_RTSP_USERNAME: Final = "rtsp_username"
CONF_RTSP_PASSWORD: Final = "rtsp_password"
CONF_RING_WINDOW: Final = "ring_window"

DEFAULT_HTTP_PORT: Final = 8565
DEFAULT_RTSP_PORT: Final = 8564
# A ring older than this when it reaches Home Assistant (after a reconnect, a restart) is recorded
# but not fired: a doorbell event a minute late would open the door for nobody.
DEFAULT_RING_WINDOW: Final = 15

# The bridge's RTSP path of the doorbell's main stream (CONTRACT.md).
MAIN_STREAM: Final = "main"

# Reconnect backoff of the event stream, in seconds.
BACKOFF_MIN: Final = 1.0
BACKOFF_MAX: Final = 30.0
