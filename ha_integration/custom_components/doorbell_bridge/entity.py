"""The base entity: one device per bridge, kept current by the coordinator."""

from __future__ import annotations

from typing import Any

from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .coordinator import DoorbellBridgeCoordinator
from .device import device_info


class DoorbellBridgeEntity(CoordinatorEntity[DoorbellBridgeCoordinator]):
    """An entity of the doorbell behind one bridge."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: DoorbellBridgeCoordinator, key: str) -> None:
        super().__init__(coordinator)
        entry = coordinator.config_entry
        uid = entry.unique_id or entry.entry_id
        self._attr_unique_id = f"{uid}-{key}"
        self._attr_device_info = device_info(entry, coordinator.data or {})

    @property
    def status(self) -> dict[str, Any]:
        """The bridge's status body as last pushed."""
        return self.coordinator.data or {}
