"""Diagnostic sensors: the state of the main stream's link to the doorbell (an enum), and the
number of viewers of the bridge's streams (disabled by default: it changes with every viewer)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import MAIN_STREAM
from .coordinator import DoorbellBridgeConfigEntry, DoorbellBridgeCoordinator
from .entity import DoorbellBridgeEntity

PARALLEL_UPDATES = 0


def _viewers(status: dict[str, Any]) -> int:
    streams = status.get("streams") or {}
    return sum(
        int(s.get("clients") or 0)
        for s in streams.values()
        if isinstance(s, dict) and isinstance(s.get("clients"), int)
    )


# The bridge's upstream states (CONTRACT.md, `streams.<name>.upstream`).
STREAM_STATES = ["idle", "connecting", "connected", "reconnecting", "stopped"]


def _upstream(status: dict[str, Any]) -> str | None:
    main = (status.get("streams") or {}).get(MAIN_STREAM)
    if isinstance(main, dict) and main.get("upstream") in STREAM_STATES:
        return str(main["upstream"])
    return None


@dataclass(frozen=True, kw_only=True)
class DoorbellSensorDescription(SensorEntityDescription):
    """How one sensor reads the status body."""

    value_fn: Callable[[dict[str, Any]], int | str | None]


SENSORS: tuple[DoorbellSensorDescription, ...] = (
    DoorbellSensorDescription(
        key="viewers",
        translation_key="viewers",
        entity_category=EntityCategory.DIAGNOSTIC,
        state_class=SensorStateClass.MEASUREMENT,
        entity_registry_enabled_default=False,
        value_fn=_viewers,
    ),
    DoorbellSensorDescription(
        key="upstream",
        translation_key="stream_state",
        entity_category=EntityCategory.DIAGNOSTIC,
        device_class=SensorDeviceClass.ENUM,
        options=STREAM_STATES,
        value_fn=_upstream,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DoorbellBridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """One sensor per description."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(DoorbellSensor(coordinator, d) for d in SENSORS)


class DoorbellSensor(DoorbellBridgeEntity, SensorEntity):
    """A diagnostic sensor of the bridge."""

    entity_description: DoorbellSensorDescription

    def __init__(self, coordinator: DoorbellBridgeCoordinator, description: DoorbellSensorDescription) -> None:
        super().__init__(coordinator, description.key)
        self.entity_description = description

    @property
    def native_value(self) -> int | str | None:
        """The value from the status body."""
        return self.entity_description.value_fn(self.status)
