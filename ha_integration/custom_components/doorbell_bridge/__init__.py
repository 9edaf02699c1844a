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
    Platform.IMAGE,
    Platform.MEDIA_PLAYER,
    Platform.SENSOR,
]


async def async_setup_entry(hass: HomeAssistant, entry: DoorbellBridgeConfigEntry) -> bool:
    """Connects to the bridge, creates the entities, then follows its event stream.

    No update listener: the options flow (`OptionsFlowWithReload`), rediscovery and reconfigure
    each reload the entry once themselves.
    """
    client = BridgeClient(
        async_get_clientsession(hass),
        entry.data[CONF_HOST],
        entry.data[CONF_PORT],
        entry.data.get(CONF_TOKEN),
    )
    window = entry.options.get(CONF_RING_WINDOW, DEFAULT_RING_WINDOW)
    coordinator = DoorbellBridgeCoordinator(hass, entry, client, float(window))
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = DoorbellBridgeData(client=client, coordinator=coordinator)
    async_register_views(hass)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # Started after the entities exist, so the event entity has restored which rings it fired.
    entry.async_create_background_task(hass, coordinator.run(), f"{entry.title} event stream")
    entry.async_on_unload(coordinator.async_shutdown_repairs)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: DoorbellBridgeConfigEntry) -> bool:
    """Stops the event stream (a background task of the entry) and removes the entities."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: DoorbellBridgeConfigEntry) -> None:
    """The integration is removed: its repairs go with it."""
    from .issues import async_delete_all  # noqa: PLC0415 - only needed on removal

    async_delete_all(hass, entry.entry_id)
