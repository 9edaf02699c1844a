"""Ring history (media browser, image entity) and repairs: against the real demo bridge."""

from __future__ import annotations

import asyncio

import aiohttp

from homeassistant.components import media_source
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir

from custom_components.doorbell_bridge import issues
from custom_components.doorbell_bridge.const import DOMAIN

from bridge_steps import connected, entity_id, entry_for, get_jpeg, setup, wait_for
from status_schema import fixture_status, schema_errors
from homeassistant.setup import async_setup_component


async def press(bridge) -> None:
    async with aiohttp.ClientSession() as s, s.post(bridge.sim_url + "/sim/ring") as r:
        assert r.status == 200


async def test_rings_in_media_browser_and_latest_ring_image(
    hass: HomeAssistant, start_bridge, hass_client, hass_client_no_auth
) -> None:
    bridge = start_bridge(extra=["--ring-min-gap-ms", "0"])
    assert await async_setup_component(hass, "media_source", {})
    entry = entry_for(bridge)
    await setup(hass, entry)
    await connected(hass, entry)
    coord = entry.runtime_data.coordinator
    for n in (1, 2):
        await press(bridge)
        await wait_for(lambda n=n: (coord.data.get("last_ring") or {}).get("id") == n, what=f"ring {n}")
        await asyncio.sleep(0.6)  # the simulated button is released

    root = await media_source.async_browse_media(hass, f"media-source://{DOMAIN}")
    assert [c.title for c in root.children] == ["Doorbell"]
    folder = await media_source.async_browse_media(hass, root.children[0].media_content_id)
    pictures = [c for c in folder.children if c.media_class == "image"]
    ids = [c.media_content_id.rsplit("/", 1)[1] for c in pictures]
    assert ids == ["2", "1"], "newest first"
    assert all(c.title.endswith("(coiot)") for c in pictures)
    client = await hass_client()
    anon = await hass_client_no_auth()
    for child in pictures:
        # The thumbnail is signed: the browser's <img> loads it without a login.
        await get_jpeg(anon, child.thumbnail)
        played = await media_source.async_resolve_media(hass, child.media_content_id, None)
        assert played.mime_type == "image/jpeg"
        await get_jpeg(client, played.url)

    image_eid = entity_id(hass, "image", "latest_ring", entry)
    await wait_for(lambda: hass.states.get(image_eid).state not in ("unknown", "unavailable"), what="image state")
    await get_jpeg(client, f"/api/image_proxy/{image_eid}")
    await hass.config_entries.async_unload(entry.entry_id)


def status(**over) -> dict:
    """A current bridge's whole status (the schema-checked fixture), with top-level keys replaced."""
    return fixture_status(**over)


def test_evaluate_is_pure_and_delayed() -> None:
    since = issues.Since()
    assert issues.evaluate(status(), since, 0.0, 600) == {}
    off = status(doorbell={"online": False}, sources={"onvif": False, "coiot": False})
    assert issues.evaluate(off, since, 100.0, 600) == {}
    assert issues.next_due(since, 100.0, 600) == 600
    found = issues.evaluate(off, since, 700.0, 600)
    assert found == {"no_ring_source": {"sources": "coiot"}, "doorbell_offline": {"minutes": "10"}}
    assert issues.evaluate(status(), since, 701.0, 600) == {}
    assert since == issues.Since()
    # No source configured at all.
    assert "no_ring_source" in issues.evaluate(status(sources={"onvif": True}), issues.Since(), 0.0, 0)
    # Older bridges without `sources` or `storage`: nothing raised.
    assert issues.evaluate({"version": "0.1.0", "doorbell": {"online": True}}, issues.Since(), 0.0, 0) == {}
    assert issues.evaluate(status(version="0.0.9"), issues.Since(), 0.0, 0) == {
        "bridge_too_old": {"version": "0.0.9", "min_version": "0.1.0"}
    }
    storage = status(storage={"state": "failing", "detail": "No space left on device"})
    assert issues.evaluate(storage, issues.Since(), 0.0, 0) == {
        "storage_failing": {"detail": "No space left on device"}
    }
    assert issues.evaluate(status(storage={"state": "ok", "detail": None}), issues.Since(), 0.0, 0) == {}


async def test_repairs_follow_the_bridge(hass: HomeAssistant, bridge) -> None:
    """Issues are raised in Home Assistant's issue registry with their translation, and cleared
    when the bridge's status says the cause is gone."""
    entry = entry_for(bridge)
    await setup(hass, entry)
    await connected(hass, entry)
    coord = entry.runtime_data.coordinator
    registry = ir.async_get(hass)

    def ours() -> set[str]:
        return {i.translation_key for (d, _), i in registry.issues.items() if d == DOMAIN}

    # The demo bridge: its simulated Shelly delivers and the doorbell is online.
    await wait_for(lambda: (coord.data.get("sources") or {}).get("coiot") is True, timeout=20, what="coiot source")
    assert ours() == set()
    # What a bridge with a full disk and no ring source reports (issue 14's storage key).
    coord.repairs.delay = 0.2
    real = dict(coord.data)
    bad = {**real, "sources": {"coiot": False}, "storage": {"state": "failing", "detail": "No space left on device"}}
    assert schema_errors(real) == [] and schema_errors(bad) == []
    coord.repairs.update(bad)
    assert ours() == {"storage_failing"}
    await wait_for(lambda: "no_ring_source" in ours(), timeout=5, what="delayed issue")
    issue = registry.async_get_issue(DOMAIN, issues.issue_id(entry.entry_id, "storage_failing"))
    assert issue.translation_placeholders["detail"] == "No space left on device"
    coord.repairs.update(real)
    assert ours() == set()
    await hass.config_entries.async_unload(entry.entry_id)


async def test_doorbell_offline_repair_with_the_real_bridge(hass: HomeAssistant, bridge) -> None:
    """The simulated doorbell reboots (offline for a few seconds): with the delay shortened, the
    bridge's `online: false` raises the repair, and its return clears it."""
    entry = entry_for(bridge)
    await setup(hass, entry)
    await connected(hass, entry)
    coord = entry.runtime_data.coordinator
    registry = ir.async_get(hass)
    key = issues.issue_id(entry.entry_id, issues.DOORBELL_OFFLINE)
    online = lambda: (coord.data.get("doorbell") or {}).get("online")  # noqa: E731
    await wait_for(lambda: online() is True, timeout=20, what="doorbell online")
    coord.repairs.delay = 0.3
    async with aiohttp.ClientSession() as s, s.post(bridge.sim_url + "/sim/reboot") as r:
        assert r.status == 200
    await wait_for(lambda: online() is False, timeout=30, what="doorbell offline")
    await wait_for(lambda: registry.async_get_issue(DOMAIN, key) is not None, timeout=5, what="offline repair")
    issue = registry.async_get_issue(DOMAIN, key)
    assert issue.translation_key == "doorbell_offline"
    assert issue.translation_placeholders["name"] == "Doorbell"
    await wait_for(lambda: online() is True, timeout=30, what="doorbell back")
    assert registry.async_get_issue(DOMAIN, key) is None
    await hass.config_entries.async_unload(entry.entry_id)
