"""Constants of the Doorbell Bridge integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "doorbell_bridge"
MANUFACTURER: Final = "Doorbell Bridge"

CONF_RTSP_PORT: Final = "rtsp_port"
CONF_RTSP_USERNAME: Final = "rtsp_username"
CONF_RTSP_PASSWORD: Final = "rtsp_password"
CONF_RING_WINDOW: Final = "ring_window"
# The add-on's slug in the Supervisor, when the entry came from its discovery (for the device's
# "Visit" link: the add-on's page in Home Assistant, which works from any browser).
CONF_ADDON_SLUG: Final = "addon_slug"

DEFAULT_HTTP_PORT: Final = 8565
DEFAULT_RTSP_PORT: Final = 8564
# A ring older than this when it reaches Home Assistant (after a reconnect, a restart) is recorded
# but not fired: a doorbell event a minute late would open the door for nobody.
DEFAULT_RING_WINDOW: Final = 15

# The bridge's RTSP paths of the doorbell's streams (CONTRACT.md).
MAIN_STREAM: Final = "main"
SUB_STREAM: Final = "sub"

# The oldest bridge this integration works with: the first with `/api/rings` and the doorbell's
# name, model and firmware in `/api/status`.
MIN_BRIDGE_VERSION: Final = "0.1.0"

# A repair is raised when the doorbell has been offline, or no ring source has delivered, for this long.
REPAIR_DELAY: Final = 600.0
# Rings listed in the media browser.
MEDIA_RINGS: Final = 100

# Reconnect backoff of the event stream, in seconds.
BACKOFF_MIN: Final = 1.0
BACKOFF_MAX: Final = 30.0
