"""Rings: fired once, also across a dropped event stream, and never late."""

from __future__ import annotations

import asyncio

import aiohttp

from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers.event import async_track_state_change_event

from custom_components.doorbell_bridge.const import CONF_RING_WINDOW

from bridge_steps import connected, entity_id, entry_for, setup, wait_for


async def press(bridge) -> None:
    async with aiohttp.ClientSession() as s, s.post(bridge.sim_url + "/sim/ring") as r:
        assert r.status == 200


async def bridge_status(bridge) -> dict:
    async with aiohttp.ClientSession() as s, s.get(bridge.url + "/api/status") as r:
        return await r.json()


def record_rings(hass: HomeAssistant, eid: str) -> list[dict]:
    """Each fire gives the event entity a new timestamp state; availability changes do not."""
    fired: list[dict] = []
    seen: set[str] = set()

    @callback
    def on_change(event: Event[EventStateChangedData]) -> None:
        new = event.data["new_state"]
        if new is None or new.state in ("unavailable", "unknown") or new.state in seen:
            return
        seen.add(new.state)
        assert new.attributes.get("event_type") == "ring"
        fired.append(dict(new.attributes))

    async_track_state_change_event(hass, eid, on_change)
    return fired


async def setup_via_relay(hass, bridge, relay_to, **options):
    relay = await relay_to(bridge.http_port)
    entry = entry_for(bridge, port=relay.port, **options)
    await setup(hass, entry)
    await connected(hass, entry)
    return relay, entry


async def test_ring_replayed_after_a_drop_fires_once(hass: HomeAssistant, start_bridge, relay_to) -> None:
    """The ring happens while the link is stalled; the stream drops; the reconnect's
    Last-Event-ID replay delivers it: fired exactly once."""
    bridge = start_bridge(extra=["--ring-min-gap-ms", "0"])
    relay, entry = await setup_via_relay(hass, bridge, relay_to)
    eid = entity_id(hass, "event", "ring", entry)
    fired = record_rings(hass, eid)
    coord = entry.runtime_data.coordinator

    relay.hold()
    await press(bridge)
    for _ in range(200):
        if (await bridge_status(bridge))["last_ring"]:
            break
        await asyncio.sleep(0.02)
    ring = (await bridge_status(bridge))["last_ring"]
    assert ring is not None
    await asyncio.sleep(0.2)
    assert fired == []  # held: nothing reached Home Assistant yet
    relay.cut()
    await wait_for(lambda: len(fired) == 1, timeout=15, what="replayed ring")
    assert fired[0]["ring_id"] == ring["id"]
    assert fired[0]["source"] == ring["source"]
    assert fired[0]["picture"].startswith(f"/api/doorbell_bridge/{entry.entry_id}/rings/{ring['id']}.jpg?authSig=")
    assert coord.reconnects >= 1
    assert relay.accepted >= 2
    await asyncio.sleep(1)
    assert len(fired) == 1
    await hass.config_entries.async_unload(entry.entry_id)


async def test_no_duplicate_ring_across_reconnect(hass: HomeAssistant, start_bridge, relay_to) -> None:
    """A ring already fired comes again after a reconnect (replayed from an older id, and as
    `last_ring` in the state): it does not fire again. A new ring afterwards does."""
    bridge = start_bridge(extra=["--ring-min-gap-ms", "0"])
    relay, entry = await setup_via_relay(hass, bridge, relay_to)
    eid = entity_id(hass, "event", "ring", entry)
    fired = record_rings(hass, eid)
    coord = entry.runtime_data.coordinator

    await press(bridge)
    await wait_for(lambda: len(fired) == 1, what="first ring")
    # Rewind: the bridge will replay everything, the fired ring included.
    coord.last_event_id = "0"
    before = coord.reconnects
    relay.cut()
    await wait_for(lambda: coord.reconnects > before and coord.connected, timeout=15, what="reconnect")
    await wait_for(lambda: coord.rings_repeated >= 1, what="the ring delivered again")
    await asyncio.sleep(0.5)
    assert len(fired) == 1

    await asyncio.sleep(0.5)  # the simulated button is released
    await press(bridge)
    await wait_for(lambda: len(fired) == 2, what="second ring")
    assert fired[1]["ring_id"] == fired[0]["ring_id"] + 1
    await hass.config_entries.async_unload(entry.entry_id)


async def test_late_ring_is_not_fired(hass: HomeAssistant, start_bridge, relay_to) -> None:
    """A ring that reaches Home Assistant later than the window is recorded, not fired."""
    bridge = start_bridge(extra=["--ring-min-gap-ms", "0"])
    relay, entry = await setup_via_relay(hass, bridge, relay_to, **{CONF_RING_WINDOW: 1})
    eid = entity_id(hass, "event", "ring", entry)
    fired = record_rings(hass, eid)
    coord = entry.runtime_data.coordinator

    relay.hold()
    await press(bridge)
    await asyncio.sleep(1.6)
    relay.cut()
    await wait_for(lambda: coord.rings_dropped_late == 1, timeout=15, what="late ring seen")
    assert fired == []
    assert coord.data["last_ring"]["id"] >= 1  # still known as the last ring
    await hass.config_entries.async_unload(entry.entry_id)


async def test_restart_does_not_refire(hass: HomeAssistant, start_bridge) -> None:
    """Reloading the entry (as a Home Assistant restart does) does not fire the last ring again."""
    bridge = start_bridge(extra=["--ring-min-gap-ms", "0"])
    entry = entry_for(bridge)
    await setup(hass, entry)
    await connected(hass, entry)
    eid = entity_id(hass, "event", "ring", entry)
    fired = record_rings(hass, eid)
    await press(bridge)
    await wait_for(lambda: len(fired) == 1, what="ring")
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await connected(hass, entry)
    await asyncio.sleep(1.0)
    assert len(fired) == 1
    await hass.config_entries.async_unload(entry.entry_id)


async def test_ring_picture_through_home_assistant(
    hass: HomeAssistant, start_bridge, hass_client, hass_client_no_auth
) -> None:
    """The `picture` attribute is a signed Home Assistant URL: it serves the ring's JPEG from the
    bridge without a login (a phone's notification has none); the same path unsigned, or with a
    tampered signature, is refused."""
    bridge = start_bridge(extra=["--ring-min-gap-ms", "0"])
    entry = entry_for(bridge)
    await setup(hass, entry)
    await connected(hass, entry)
    fired = record_rings(hass, entity_id(hass, "event", "ring", entry))
    await press(bridge)
    await wait_for(lambda: len(fired) == 1, what="ring")
    url = fired[0]["picture"]
    client = await hass_client()
    status, body = 0, b""
    for _ in range(50):
        resp = await client.get(url)
        status, body = resp.status, await resp.read()
        if status == 200:
            break
        await asyncio.sleep(0.2)
    assert status == 200, status
    assert body[:2] == b"\xff\xd8"
    # Never kept by a browser or phone as-is: a ring id could name another picture later.
    assert "no-cache" in resp.headers["Cache-Control"]
    anon = await hass_client_no_auth()
    resp = await anon.get(url)
    assert resp.status == 200
    assert (await resp.read())[:2] == b"\xff\xd8"
    path = url.split("?", 1)[0]
    assert (await anon.get(path)).status == 401
    assert (await anon.get(url[:-4] + "AAAA")).status == 401
    other = f"/api/doorbell_bridge/{entry.entry_id}/rings/{fired[0]['ring_id'] + 1}.jpg"
    assert (await anon.get(other + "?" + url.split("?", 1)[1])).status == 401
    assert (await client.get(f"/api/doorbell_bridge/{entry.entry_id}/rings/999999.jpg")).status == 404
    assert (await client.get("/api/doorbell_bridge/nope/rings/1.jpg")).status == 404
    await hass.config_entries.async_unload(entry.entry_id)
