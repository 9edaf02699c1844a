"""Reboot the doorbell through the bridge."""

from __future__ import annotations

from homeassistant.components.button import ButtonDeviceClass, ButtonEntity
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .api import BridgeError
from .const import DOMAIN
from .coordinator import DoorbellBridgeConfigEntry, DoorbellBridgeCoordinator
from .entity import DoorbellBridgeEntity

PARALLEL_UPDATES = 1


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DoorbellBridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """The reboot button."""
    async_add_entities([DoorbellRebootButton(entry.runtime_data.coordinator)])


class DoorbellRebootButton(DoorbellBridgeEntity, ButtonEntity):
    """POST /api/reboot."""

    _attr_device_class = ButtonDeviceClass.RESTART
    _attr_entity_category = EntityCategory.CONFIG

    def __init__(self, coordinator: DoorbellBridgeCoordinator) -> None:
        super().__init__(coordinator, "reboot")

    async def async_press(self) -> None:
        """Asks the bridge to reboot the doorbell."""
        try:
            await self.coordinator.client.reboot()
        except BridgeError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN, translation_key="reboot_failed", translation_placeholders={"error": str(err)}
            ) from err
