"""The doorbell's camera: live view from the bridge's RTSP re-stream, pictures from its cache."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from homeassistant.components.camera import Camera, CameraEntityFeature
from homeassistant.const import CONF_HOST
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .api import BridgeError
from .const import (
    CONF_RTSP_PASSWORD,
    CONF_RTSP_PORT,
    CONF_RTSP_USERNAME,
    DEFAULT_RTSP_PORT,
    DOMAIN,
    MAIN_STREAM,
    SUB_STREAM,
)
from .coordinator import DoorbellBridgeConfigEntry, DoorbellBridgeCoordinator
from .entity import DoorbellBridgeEntity

PARALLEL_UPDATES = 0


def rtsp_url(data: dict[str, Any], stream: str = MAIN_STREAM) -> str:
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
    """The main stream's camera, and the sub stream's (disabled by default: a second view of the
    same door, smaller, for dashboards on slow links)."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities([DoorbellCamera(coordinator, MAIN_STREAM), DoorbellCamera(coordinator, SUB_STREAM)])


class DoorbellCamera(DoorbellBridgeEntity, Camera):
    """A stream of the doorbell; Home Assistant's go2rtc turns the RTSP source into WebRTC."""

    _attr_supported_features = CameraEntityFeature.STREAM

    def __init__(self, coordinator: DoorbellBridgeCoordinator, stream: str) -> None:
        Camera.__init__(self)
        # The main camera keeps its original unique id ("camera") and takes the device's name.
        DoorbellBridgeEntity.__init__(self, coordinator, "camera" if stream == MAIN_STREAM else f"camera_{stream}")
        self._stream = stream
        if stream == MAIN_STREAM:
            self._attr_name = None
        else:
            self._attr_translation_key = f"{stream}_stream"
            self._attr_entity_registry_enabled_default = False

    async def stream_source(self) -> str:
        """The bridge's RTSP URL of this stream."""
        return rtsp_url(dict(self.coordinator.config_entry.data), self._stream)

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
