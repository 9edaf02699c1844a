"""The one device of an entry: the doorbell, named and described by the bridge's status.

The name is the bridge's `doorbell.name`; manufacturer, model and firmware are what the doorbell
reports over ONVIF (GetDeviceInformation), known a few seconds after the bridge starts, so the
device is updated when they arrive. The "Visit" link must work from the user's browser: the
add-on's page in Home Assistant when the entry came from the Supervisor, else the bridge's
status page unless the bridge's address is loopback (which would be the user's own machine).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo

from .const import CONF_ADDON_SLUG, DOMAIN, MANUFACTURER

FALLBACK_MODEL = "EZVIZ DB1 / Hikvision DS-HD1"


def device_identifier(entry: ConfigEntry[Any]) -> tuple[str, str]:
    """The device's identifier: the bridge's id."""
    return (DOMAIN, entry.unique_id or entry.entry_id)


def _text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value.strip() or None if isinstance(value, str) else None


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def configuration_url(data: dict[str, Any]) -> str | None:
    """Where the device page's "Visit" link goes (see the module's comment)."""
    slug = data.get(CONF_ADDON_SLUG)
    if isinstance(slug, str) and slug:
        return f"homeassistant://hassio/addon/{slug}/info"
    host = str(data.get(CONF_HOST) or "")
    if not host or _loopback(host):
        return None
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{host}:{data.get(CONF_PORT)}/api/status"


def described(entry: ConfigEntry[Any], status: dict[str, Any]) -> dict[str, str | None]:
    """Name, manufacturer, model and firmware from the status body (with fallbacks)."""
    doorbell = status.get("doorbell")
    doorbell = doorbell if isinstance(doorbell, dict) else {}
    return {
        "name": _text(doorbell, "name") or entry.title,
        "manufacturer": _text(doorbell, "manufacturer") or MANUFACTURER,
        "model": _text(doorbell, "model") or FALLBACK_MODEL,
        "sw_version": _text(doorbell, "firmware"),
    }


def device_info(entry: ConfigEntry[Any], status: dict[str, Any]) -> DeviceInfo:
    """Device info of every entity of the entry."""
    d = described(entry, status)
    return DeviceInfo(
        identifiers={device_identifier(entry)},
        name=d["name"],
        manufacturer=d["manufacturer"],
        model=d["model"],
        sw_version=d["sw_version"],
        configuration_url=configuration_url(dict(entry.data)),
    )


@callback
def async_update_device(hass: HomeAssistant, entry: ConfigEntry[Any], status: dict[str, Any]) -> None:
    """Brings the registered device up to date when the bridge learned more about the doorbell."""
    registry = dr.async_get(hass)
    ident = device_identifier(entry)
    # The entry's own devices (device identifiers are unique per config entry only, 2026.11).
    device = next((d for d in dr.async_entries_for_config_entry(registry, entry.entry_id) if ident in d.identifiers), None)
    if device is None:
        return
    d = described(entry, status)
    if (device.name, device.manufacturer, device.model, device.sw_version) == (
        d["name"],
        d["manufacturer"],
        d["model"],
        d["sw_version"],
    ):
        return
    registry.async_update_device(
        device.id, name=d["name"], manufacturer=d["manufacturer"], model=d["model"], sw_version=d["sw_version"]
    )
