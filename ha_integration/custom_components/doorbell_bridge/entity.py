"""The base entity: one device per bridge, kept current by the coordinator."""

from __future__ import annotations

from typing import Any

from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN, MANUFACTURER
from .coordinator import DoorbellBridgeCoordinator


class DoorbellBridgeEntity(CoordinatorEntity[DoorbellBridgeCoordinator]):
    """An entity of the doorbell behind one bridge."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: DoorbellBridgeCoordinator, key: str) -> None:
        super().__init__(coordinator)
        entry = coordinator.config_entry
        uid = entry.unique_id or entry.entry_id
        self._attr_unique_id = f"{uid}-{key}"
        status = coordinator.data or {}
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, uid)},
            name=entry.title,
            manufacturer=MANUFACTURER,
            model="EZVIZ DB1 / Hikvision DS-HD1 bridge",
            sw_version=str(status.get("version")) if status.get("version") else None,
            configuration_url=coordinator.client.url("/api/status"),
        )

    @property
    def status(self) -> dict[str, Any]:
        """The bridge's status body as last pushed."""
        return self.coordinator.data or {}

    def sensor_state(self, name: str) -> bool | None:
        """A sensor of the status body: True, False or None (unknown)."""
        value = (self.status.get("sensors") or {}).get(name)
        return value if isinstance(value, bool) else None
