"""The doorbell event entity: fires `ring` once per press."""

from __future__ import annotations

from typing import Any

from homeassistant.components.event import DoorbellEventType, EventDeviceClass, EventEntity
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import DoorbellBridgeConfigEntry, DoorbellBridgeCoordinator, Ring
from .entity import DoorbellBridgeEntity
from .views import signed_ring_clip_path, signed_ring_picture_path

# Required for doorbell events (entities without it stop working in 2027.4).
RING = DoorbellEventType.RING

PARALLEL_UPDATES = 0

ATTR_RING_ID = "ring_id"
ATTR_SOURCE = "source"
ATTR_PICTURE = "picture"
ATTR_AT = "at"
ATTR_PRESS = "press"
ATTR_CLIP = "clip"


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DoorbellBridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """The doorbell event."""
    async_add_entities([DoorbellRingEvent(entry.runtime_data.coordinator)])


class DoorbellRingEvent(DoorbellBridgeEntity, EventEntity):
    """A press of the doorbell; attributes carry its source and the URLs of its picture and clip."""

    _attr_device_class = EventDeviceClass.DOORBELL
    _attr_event_types = [RING]
    _attr_translation_key = "ring"

    def __init__(self, coordinator: DoorbellBridgeCoordinator) -> None:
        super().__init__(coordinator, "ring")

    async def async_added_to_hass(self) -> None:
        """Restores which ring was fired last, so a restart never fires it again."""
        await super().async_added_to_hass()
        last = self.state_attributes or {}
        if (state := await self.async_get_last_state()) is not None:
            last = state.attributes
        rid, at = last.get(ATTR_RING_ID), last.get(ATTR_AT)
        if isinstance(rid, int) and isinstance(at, str):
            self.coordinator.mark_seen((rid, at))
        self.async_on_remove(self.coordinator.async_add_ring_listener(self._on_ring))

    @callback
    def _on_ring(self, ring: Ring) -> None:
        attrs: dict[str, Any] = {
            ATTR_RING_ID: ring.id,
            ATTR_AT: ring.at,
            ATTR_SOURCE: ring.source,
            ATTR_PICTURE: signed_ring_picture_path(self.hass, self.coordinator.config_entry.entry_id, ring.id),
        }
        if ring.press:
            attrs[ATTR_PRESS] = ring.press
        # The clip is written when its post-roll has passed; until then the link answers 404.
        entry_id = self.coordinator.config_entry.entry_id
        attrs[ATTR_CLIP] = signed_ring_clip_path(self.hass, entry_id, ring.id) if ring.clip else None
        self._trigger_event(RING, attrs)
        self.async_write_ha_state()
