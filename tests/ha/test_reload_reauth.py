"""One reload per change (no update listener), and reauthentication: against the real bridge."""

from __future__ import annotations

import json

import pytest

from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType

import custom_components.doorbell_bridge as integration
from custom_components.doorbell_bridge.config_flow import HassioServiceInfo
from custom_components.doorbell_bridge.const import CONF_RTSP_PORT, DOMAIN

from conftest import restart
from bridge_steps import connected, entry_for, setup, wait_for


@pytest.fixture
def setups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the integration's `async_setup_entry` calls (each reload is one)."""
    calls: list[str] = []
    real = integration.async_setup_entry

    async def counting(hass, entry):  # type: ignore[no-untyped-def]
        calls.append(entry.entry_id)
        return await real(hass, entry)

    monkeypatch.setattr(integration, "async_setup_entry", counting)
    return calls


def discovery(bridge, token: str) -> HassioServiceInfo:
    config = {"host": "127.0.0.1", "port": bridge.http_port, "rtsp_port": bridge.rtsp_port, "token": token}
    return HassioServiceInfo(config=config, name="Doorbell Bridge", slug="doorbell_bridge", uuid="0123abcd")


async def test_one_reload_per_change(hass: HomeAssistant, bridge, setups: list[str]) -> None:
    entry = entry_for(bridge)
    await setup(hass, entry)
    await connected(hass, entry)
    assert len(setups) == 1

    # Options: OptionsFlowWithReload reloads once.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], {"ring_window": 7})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert len(setups) == 2
    assert entry.runtime_data.coordinator.ring_window.total_seconds() == 7

    # Reconfigure: one reload.
    result = await entry.start_reconfigure_flow(hass)
    new = {CONF_HOST: "127.0.0.1", CONF_PORT: bridge.http_port, CONF_RTSP_PORT: bridge.rtsp_port + 0}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], new)
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert len(setups) == 3

    # Rediscovery with a changed setting (a token): one reload; the same message again: none.
    for expected in (4, 4):
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=discovery(bridge, bridge.token)
        )
        assert result["reason"] == "already_configured"
        await hass.async_block_till_done()
        assert len(setups) == expected
    assert entry.data[CONF_TOKEN] == bridge.token
    assert entry.state is ConfigEntryState.LOADED
    await hass.config_entries.async_unload(entry.entry_id)


async def test_reauth_at_setup(hass: HomeAssistant, start_bridge) -> None:
    """A refused token at setup: the entry fails with an auth error and asks for a new token."""
    bridge = start_bridge(extra=["--require-token"])
    entry = entry_for(bridge, token="old-token")
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [config_entries.SOURCE_REAUTH]
    flow_id = flows[0]["flow_id"]
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_TOKEN: "still-wrong"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_TOKEN: bridge.token})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_TOKEN] == bridge.token
    assert entry.state is ConfigEntryState.LOADED
    await hass.config_entries.async_unload(entry.entry_id)


async def test_token_changed_at_run_time_then_rediscovery_fixes_it(hass: HomeAssistant, start_bridge) -> None:
    """The bridge gets a new token while Home Assistant is connected: a reauth flow starts; the
    add-on's next discovery message (with the new token) fixes the entry by itself."""
    bridge = start_bridge(extra=["--require-token"])
    entry = entry_for(bridge, token=bridge.token)
    await setup(hass, entry)
    await connected(hass, entry)
    creds_path = bridge.data_dir / "credentials.json"
    creds = json.loads(creds_path.read_text())
    creds["api_token"] = "a-brand-new-token-0123456789abcdef"
    creds_path.write_text(json.dumps(creds))
    restart(bridge)
    assert bridge.token == "a-brand-new-token-0123456789abcdef"

    def reauth_flows() -> list:
        return [
            f
            for f in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
            if f["context"]["source"] == config_entries.SOURCE_REAUTH
        ]

    await wait_for(lambda: len(reauth_flows()) == 1, timeout=20, what="reauth flow")
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=discovery(bridge, bridge.token)
    )
    assert result["reason"] == "already_configured"
    await hass.async_block_till_done()
    assert entry.data[CONF_TOKEN] == bridge.token
    await connected(hass, entry)
    assert entry.state is ConfigEntryState.LOADED
    await hass.config_entries.async_unload(entry.entry_id)


async def test_rediscovery_fixes_a_setup_refused_for_its_token(hass: HomeAssistant, start_bridge) -> None:
    """Setup failed on an old token (reauth pending); the add-on's discovery with the new token
    loads the entry without the user typing anything."""
    bridge = start_bridge(extra=["--require-token"])
    entry = entry_for(bridge, token="old-token")
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=discovery(bridge, bridge.token)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    await hass.async_block_till_done()
    assert entry.data[CONF_TOKEN] == bridge.token
    assert entry.state is ConfigEntryState.LOADED
    await connected(hass, entry)
    await hass.config_entries.async_unload(entry.entry_id)
