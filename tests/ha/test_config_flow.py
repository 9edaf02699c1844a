"""Config flow: Supervisor discovery, manual setup, errors, reconfigure; against the real bridge."""

from __future__ import annotations

import pytest

from homeassistant import config_entries
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType

from custom_components.doorbell_bridge.config_flow import HassioServiceInfo
from custom_components.doorbell_bridge.const import (
    CONF_ADDON_SLUG,
    CONF_RTSP_PASSWORD,
    CONF_RTSP_PORT,
    CONF_RTSP_USERNAME,
    DOMAIN,
)

from bridge_steps import entry_for

CLOSED_PORT = 9  # discard: nothing listens on loopback


def discovery(bridge, **overrides) -> HassioServiceInfo:
    config = {
        "host": "127.0.0.1",
        "port": bridge.http_port,
        "rtsp_port": bridge.rtsp_port,
        "token": bridge.token,
        "rtsp_username": "viewer",
        "rtsp_password": "pa ss/word",
        **overrides,
    }
    return HassioServiceInfo(config=config, name="Doorbell Bridge", slug="doorbell_bridge", uuid="0123abcd")


async def test_hassio_discovery_confirm_creates_entry(hass: HomeAssistant, bridge) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=discovery(bridge)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "hassio_confirm"
    assert result["description_placeholders"] == {"name": "Doorbell Bridge"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Doorbell Bridge"
    assert result["result"].unique_id == bridge.bridge_id
    assert result["data"] == {
        CONF_HOST: "127.0.0.1",
        CONF_PORT: bridge.http_port,
        CONF_RTSP_PORT: bridge.rtsp_port,
        CONF_TOKEN: bridge.token,
        CONF_RTSP_USERNAME: "viewer",
        CONF_RTSP_PASSWORD: "pa ss/word",
        CONF_ADDON_SLUG: "doorbell_bridge",
    }
    await hass.async_block_till_done()
    # Discovered from the Supervisor: the device's "Visit" link opens the add-on's page in Home Assistant.
    from homeassistant.helpers import device_registry as dr

    dev = dr.async_entries_for_config_entry(dr.async_get(hass), result["result"].entry_id)[0]
    assert dev.configuration_url == "homeassistant://hassio/addon/doorbell_bridge/info"
    await hass.config_entries.async_unload(result["result"].entry_id)


async def test_hassio_rediscovery_updates_the_entry(hass: HomeAssistant, bridge) -> None:
    """A reinstalled add-on announces new settings: same bridge id, so the entry is updated."""
    entry = entry_for(bridge, port=CLOSED_PORT)
    entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=discovery(bridge, token=bridge.token)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_PORT] == bridge.http_port
    assert entry.data[CONF_TOKEN] == bridge.token
    await hass.async_block_till_done()
    await hass.config_entries.async_unload(entry.entry_id)


async def test_hassio_discovery_unreachable_aborts(hass: HomeAssistant, bridge) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=discovery(bridge, port=CLOSED_PORT)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "cannot_connect"


async def test_hassio_discovery_without_host_aborts(hass: HomeAssistant, bridge) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=discovery(bridge, host="")
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"


async def test_user_flow_tests_the_connection_first(hass: HomeAssistant, bridge) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {}
    user = {CONF_HOST: "127.0.0.1", CONF_PORT: CLOSED_PORT, CONF_RTSP_PORT: bridge.rtsp_port}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], user)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    assert hass.config_entries.async_entries(DOMAIN) == []
    user[CONF_PORT] = bridge.http_port
    result = await hass.config_entries.flow.async_configure(result["flow_id"], user)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == bridge.bridge_id
    assert result["data"] == user
    await hass.async_block_till_done()
    # The same bridge again: refused.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}, data=user
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    await hass.config_entries.async_unload(hass.config_entries.async_entries(DOMAIN)[0].entry_id)


async def test_user_flow_wrong_token(hass: HomeAssistant, start_bridge) -> None:
    bridge = start_bridge(extra=["--require-token"])
    user = {CONF_HOST: "127.0.0.1", CONF_PORT: bridge.http_port, CONF_RTSP_PORT: bridge.rtsp_port}
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}, data={**user, CONF_TOKEN: "wrong"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}, data=user
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {**user, CONF_TOKEN: bridge.token})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await hass.config_entries.async_unload(result["result"].entry_id)


@pytest.mark.allow_log(r"Unexpected answer from the bridge")
async def test_user_flow_not_a_bridge(hass: HomeAssistant, bridge) -> None:
    """Something else answers on the port (here: the simulated doorbell's control server)."""
    sim_port = int(bridge.sim_url.rsplit(":", 1)[1])
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_USER},
        data={CONF_HOST: "127.0.0.1", CONF_PORT: sim_port, CONF_RTSP_PORT: 1},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "unknown"}


async def test_reconfigure(hass: HomeAssistant, start_bridge) -> None:
    a = start_bridge("a")
    b = start_bridge("b")
    assert a.bridge_id != b.bridge_id
    entry = entry_for(a)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    new = {CONF_HOST: "127.0.0.1", CONF_PORT: CLOSED_PORT, CONF_RTSP_PORT: 8600}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], new)
    assert result["errors"] == {"base": "cannot_connect"}
    # Another bridge's address is refused: it is not this device.
    new[CONF_PORT] = b.http_port
    result = await hass.config_entries.flow.async_configure(result["flow_id"], new)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_bridge"
    assert entry.data[CONF_PORT] == a.http_port

    result = await entry.start_reconfigure_flow(hass)
    new[CONF_PORT] = a.http_port
    result = await hass.config_entries.flow.async_configure(result["flow_id"], new)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_RTSP_PORT] == 8600
    await hass.async_block_till_done()
    await hass.config_entries.async_unload(entry.entry_id)


async def test_options_ring_window(hass: HomeAssistant, bridge) -> None:
    entry = entry_for(bridge)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.options.async_configure(result["flow_id"], {"ring_window": 5})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.runtime_data.coordinator.ring_window.total_seconds() == 5
    await hass.config_entries.async_unload(entry.entry_id)


async def test_hassio_discovery_title_is_the_doorbell_name(hass: HomeAssistant, bridge) -> None:
    """The bridge announces `doorbell.name`: the entry (and the device) carry it."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=discovery(bridge, name="Front door")
    )
    assert result["description_placeholders"] == {"name": "Front door"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["title"] == "Front door"
    assert "name" not in result["data"]
    await hass.async_block_till_done()
    await hass.config_entries.async_unload(result["result"].entry_id)
