"""Binary sensors: button pressed, PIR motion, video motion, field detection, connectivity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import DoorbellBridgeConfigEntry, DoorbellBridgeCoordinator
from .entity import DoorbellBridgeEntity

PARALLEL_UPDATES = 0


def _sensor(name: str) -> Callable[[dict[str, Any]], bool | None]:
    def value(status: dict[str, Any]) -> bool | None:
        v = (status.get("sensors") or {}).get(name)
        return v if isinstance(v, bool) else None

    return value


def _online(status: dict[str, Any]) -> bool | None:
    v = (status.get("doorbell") or {}).get("online")
    return v if isinstance(v, bool) else None


@dataclass(frozen=True, kw_only=True)
class DoorbellBinarySensorDescription(BinarySensorEntityDescription):
    """How one binary sensor reads the status body."""

    value_fn: Callable[[dict[str, Any]], bool | None]


BINARY_SENSORS: tuple[DoorbellBinarySensorDescription, ...] = (
    DoorbellBinarySensorDescription(key="pressed", translation_key="pressed", value_fn=_sensor("ring")),
    DoorbellBinarySensorDescription(
        key="pir_motion",
        translation_key="pir_motion",
        device_class=BinarySensorDeviceClass.MOTION,
        value_fn=_sensor("pir_motion"),
    ),
    DoorbellBinarySensorDescription(
        key="video_motion",
        translation_key="video_motion",
        device_class=BinarySensorDeviceClass.MOTION,
        value_fn=_sensor("video_motion"),
    ),
    DoorbellBinarySensorDescription(
        key="field_detection",
        translation_key="field_detection",
        device_class=BinarySensorDeviceClass.OCCUPANCY,
        value_fn=_sensor("field_detection"),
    ),
    DoorbellBinarySensorDescription(
        key="connectivity",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_online,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DoorbellBridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """One binary sensor per description."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(DoorbellBinarySensor(coordinator, d) for d in BINARY_SENSORS)


class DoorbellBinarySensor(DoorbellBridgeEntity, BinarySensorEntity):
    """A binary sensor of the doorbell."""

    entity_description: DoorbellBinarySensorDescription

    def __init__(self, coordinator: DoorbellBridgeCoordinator, description: DoorbellBinarySensorDescription) -> None:
        super().__init__(coordinator, description.key)
        self.entity_description = description

    @property
    def is_on(self) -> bool | None:
        """On, off, or unknown while the bridge does not know."""
        return self.entity_description.value_fn(self.status)
