"""The doorbell's camera: live view from the bridge's RTSP re-stream, pictures from its cache."""

from __future__ import annotations

from urllib.parse import quote

from homeassistant.components.camera import Camera, CameraEntityFeature
from homeassistant.const import CONF_HOST
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .api import BridgeError
from .const import CONF_RTSP_PASSWORD, CONF_RTSP_PORT, CONF_RTSP_USERNAME, DEFAULT_RTSP_PORT, DOMAIN, MAIN_STREAM
from .coordinator import DoorbellBridgeConfigEntry, DoorbellBridgeCoordinator
from .entity import DoorbellBridgeEntity

PARALLEL_UPDATES = 0


def rtsp_url(data: dict, stream: str = MAIN_STREAM) -> str:
    """rtsp://[user:password@]host:port/stream, credentials percent-encoded."""
    host = data[CONF_HOST]
    if ":" in host:
        host = f"[{host}]"
    port = data.get(CONF_RTSP_PORT, DEFAULT_RTSP_PORT)
    user = data.get(CONF_RTSP_USERNAME)
    password = data.get(CONF_RTSP_PASSWORD)
    auth = ""
    if user:
        auth = quote(user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        auth += "@"
    return f"rtsp://{auth}{host}:{port}/{stream}"


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DoorbellBridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """The camera."""
    async_add_entities([DoorbellCamera(entry.runtime_data.coordinator)])


class DoorbellCamera(DoorbellBridgeEntity, Camera):
    """The doorbell's camera; Home Assistant's go2rtc turns the RTSP source into WebRTC."""

    _attr_name = None
    _attr_supported_features = CameraEntityFeature.STREAM

    def __init__(self, coordinator: DoorbellBridgeCoordinator) -> None:
        Camera.__init__(self)
        DoorbellBridgeEntity.__init__(self, coordinator, "camera")

    async def stream_source(self) -> str:
        """The bridge's RTSP URL of the main stream."""
        return rtsp_url(dict(self.coordinator.config_entry.data))

    async def async_camera_image(self, width: int | None = None, height: int | None = None) -> bytes | None:
        """The bridge's cached picture (it never waits on the doorbell when it has one)."""
        try:
            return await self.coordinator.client.snapshot()
        except BridgeError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="snapshot_failed",
                translation_placeholders={"error": str(err)},
            ) from err
