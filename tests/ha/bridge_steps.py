"""Shared steps of the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
import time

from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.doorbell_bridge.const import CONF_RTSP_PORT, DOMAIN

from conftest import Bridge


def entry_for(bridge: Bridge, port: int | None = None, token: str | None = None, **options) -> MockConfigEntry:
    data = {CONF_HOST: "127.0.0.1", CONF_PORT: port or bridge.http_port, CONF_RTSP_PORT: bridge.rtsp_port}
    if token:
        data[CONF_TOKEN] = token
    return MockConfigEntry(domain=DOMAIN, title="Doorbell", data=data, unique_id=bridge.bridge_id, options=options)


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def connected(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Waits until the entry's event stream delivered its first state."""
    coord = entry.runtime_data.coordinator
    await wait_for(lambda: coord.connected, what="event stream")


def entity_id(hass: HomeAssistant, platform: str, key: str, entry: MockConfigEntry) -> str:
    from homeassistant.helpers import entity_registry as er

    eid = er.async_get(hass).async_get_entity_id(platform, DOMAIN, f"{entry.unique_id}-{key}")
    assert eid, f"no {platform} entity for {key}"
    return eid


async def get_jpeg(client: Any, url: str) -> bytes:
    """GETs a picture; the bridge answers 404/503 until it exists, so allow it a moment."""
    status, body = 0, b""
    for _ in range(50):
        resp = await client.get(url)
        status, body = resp.status, await resp.read()
        if status == 200:
            break
        await asyncio.sleep(0.2)
    assert status == 200, (url, status)
    assert body[:2] == b"\xff\xd8", url
    return body
