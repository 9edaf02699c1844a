"""The picture of the latest ring, as an `image` entity (dashboards, and `/api/image_proxy/...`)."""

from __future__ import annotations

from homeassistant.components.image import ImageEntity
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .api import BridgeError
from .const import DOMAIN
from .coordinator import DoorbellBridgeConfigEntry, DoorbellBridgeCoordinator, Ring
from .entity import DoorbellBridgeEntity

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DoorbellBridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """The latest ring's picture."""
    async_add_entities([DoorbellLatestRingImage(hass, entry.runtime_data.coordinator)])


class DoorbellLatestRingImage(DoorbellBridgeEntity, ImageEntity):
    """Changes with every ring; its time is the ring's time."""

    _attr_translation_key = "latest_ring"
    _attr_content_type = "image/jpeg"

    def __init__(self, hass: HomeAssistant, coordinator: DoorbellBridgeCoordinator) -> None:
        DoorbellBridgeEntity.__init__(self, coordinator, "latest_ring")
        ImageEntity.__init__(self, hass)
        self._ring: Ring | None = None
        self._update_from_status()

    def _update_from_status(self) -> bool:
        ring = Ring.from_json(self.status.get("last_ring"))
        if ring == self._ring:
            return False
        self._ring = ring
        self._cached_image = None
        at = dt_util.parse_datetime(ring.at) if ring is not None else None
        self._attr_image_last_updated = at
        return True

    @callback
    def _handle_coordinator_update(self) -> None:
        self._update_from_status()
        super()._handle_coordinator_update()

    async def async_image(self) -> bytes | None:
        """The ring's picture from the bridge; None before the first ring."""
        if self._ring is None:
            return None
        try:
            return await self.coordinator.client.ring_snapshot(self._ring.id)
        except BridgeError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="snapshot_failed",
                translation_placeholders={"error": str(err)},
            ) from err
