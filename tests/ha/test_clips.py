"""Ring clips in Home Assistant, against the real demo bridge: the event's signed `clip` link, the
streamed proxy with `Range`, and the clip beside its picture in the media browser."""

from __future__ import annotations

import asyncio

from homeassistant.components import media_source
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component

from custom_components.doorbell_bridge.const import DOMAIN

from bridge_steps import connected, entity_id, entry_for, setup, wait_for
from test_ring import press, record_rings

POST_ROLL = 2


async def get_clip(client, url: str, headers: dict[str, str] | None = None, tries: int = 100):
    """GETs a clip link until the bridge has written the clip (404 before)."""
    for _ in range(tries):
        resp = await client.get(url, headers=headers or {})
        if resp.status != 404:
            return resp, await resp.read()
        await asyncio.sleep(0.2)
    raise AssertionError(f"no clip at {url}")


async def test_ring_clip_link_range_and_media_browser(hass: HomeAssistant, start_bridge, hass_client, hass_client_no_auth) -> None:
    bridge = start_bridge(extra=["--ring-min-gap-ms", "0", "--clip-post-roll-secs", str(POST_ROLL)])
    assert await async_setup_component(hass, "media_source", {})
    entry = entry_for(bridge)
    await setup(hass, entry)
    await connected(hass, entry)
    await asyncio.sleep(3)  # the bridge's pre-roll fills
    fired = record_rings(hass, entity_id(hass, "event", "ring", entry))
    await press(bridge)
    await wait_for(lambda: len(fired) == 1, what="ring")
    url = fired[0]["clip"]
    assert url.startswith(f"/api/{DOMAIN}/{entry.entry_id}/rings/{fired[0]['ring_id']}.mp4?authSig="), url

    # Signed: a phone loads it without a login, once the bridge has written it.
    anon = await hass_client_no_auth()
    resp, body = await get_clip(anon, url)
    assert resp.status == 200, resp.status
    assert resp.headers["Content-Type"] == "video/mp4"
    assert body[4:8] == b"ftyp", body[:16]
    assert b"moov" in body[:4096], "fast-start: the index comes first"
    assert "no-cache" in resp.headers["Cache-Control"]
    # Range is passed to the bridge and back.
    resp, part = await get_clip(anon, url, {"Range": "bytes=8-15"})
    assert resp.status == 206
    assert part == body[8:16]
    assert resp.headers["Content-Range"] == f"bytes 8-15/{len(body)}"
    # Unsigned or for another ring: refused.
    assert (await anon.get(url.split("?", 1)[0])).status == 401
    client = await hass_client()
    assert (await client.get(f"/api/{DOMAIN}/{entry.entry_id}/rings/999999.mp4")).status == 404

    # The media browser lists the clip right after the ring's picture; it resolves to the view.
    root = await media_source.async_browse_media(hass, f"media-source://{DOMAIN}")
    folder = await media_source.async_browse_media(hass, root.children[0].media_content_id)
    kinds = [(c.media_content_id.split(entry.entry_id + "/", 1)[1], c.media_class) for c in folder.children]
    rid = str(fired[0]["ring_id"])
    assert kinds[:2] == [(rid, "image"), (f"{rid}/clip", "video")], kinds
    clip = folder.children[1]
    assert clip.can_play and clip.title.endswith("clip")
    played = await media_source.async_resolve_media(hass, clip.media_content_id, None)
    assert played.mime_type == "video/mp4"
    resp = await client.get(played.url)
    assert resp.status == 200
    assert await resp.read() == body
    await hass.config_entries.async_unload(entry.entry_id)
