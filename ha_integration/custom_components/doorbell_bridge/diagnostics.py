"""Diagnostics download, with secrets redacted."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_HOST, CONF_TOKEN
from homeassistant.core import HomeAssistant

from .const import CONF_RTSP_PASSWORD, CONF_RTSP_USERNAME
from .coordinator import DoorbellBridgeConfigEntry

TO_REDACT = {CONF_TOKEN, CONF_RTSP_PASSWORD, CONF_RTSP_USERNAME, CONF_HOST, "api_token", "password", "bridge_id"}


async def async_get_config_entry_diagnostics(hass: HomeAssistant, entry: DoorbellBridgeConfigEntry) -> dict[str, Any]:
    """Entry settings, the bridge's last status and the event stream's health."""
    coordinator = entry.runtime_data.coordinator
    return {
        "entry": {
            "title": entry.title,
            "unique_id": "**REDACTED**" if entry.unique_id else None,
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": dict(entry.options),
        },
        "stream": {
            "connected": coordinator.connected,
            "last_event_id": coordinator.last_event_id,
            "reconnects": coordinator.reconnects,
            "rings_fired": coordinator.rings_fired,
            "rings_dropped_late": coordinator.rings_dropped_late,
            "rings_repeated": coordinator.rings_repeated,
            "available": coordinator.last_update_success,
        },
        "status": async_redact_data(coordinator.data or {}, TO_REDACT),
    }
