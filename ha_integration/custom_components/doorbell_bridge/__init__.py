"""Doorbell Bridge: camera, sensors and a doorbell event from the Doorbell Bridge add-on."""

from __future__ import annotations

from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .api import BridgeClient
from .const import CONF_RING_WINDOW, DEFAULT_RING_WINDOW
from .coordinator import DoorbellBridgeConfigEntry, DoorbellBridgeCoordinator, DoorbellBridgeData
from .views import async_register_views

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.CAMERA,
    Platform.EVENT,
    Platform.MEDIA_PLAYER,
    Platform.SENSOR,
]


async def async_setup_entry(hass: HomeAssistant, entry: DoorbellBridgeConfigEntry) -> bool:
    """Connects to the bridge, creates the entities, then follows its event stream."""
    client = BridgeClient(
        async_get_clientsession(hass),
        entry.data[CONF_HOST],
        entry.data[CONF_PORT],
        entry.data.get(CONF_TOKEN),
    )
    window = entry.options.get(CONF_RING_WINDOW, DEFAULT_RING_WINDOW)
    coordinator = DoorbellBridgeCoordinator(hass, entry, client, window)
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = DoorbellBridgeData(client=client, coordinator=coordinator)
    async_register_views(hass)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # Started after the entities exist, so the event entity has restored which rings it fired.
    entry.async_create_background_task(hass, coordinator.run(), f"{entry.title} event stream")
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    return True


async def _async_options_updated(hass: HomeAssistant, entry: DoorbellBridgeConfigEntry) -> None:
    await hass.config_entries.async_reload(entry.entry_id)


async def async_unload_entry(hass: HomeAssistant, entry: DoorbellBridgeConfigEntry) -> bool:
    """Stops the event stream (a background task of the entry) and removes the entities."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
