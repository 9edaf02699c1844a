"""The picture and the clip of a ring, served by Home Assistant, so a phone can show them.

The bridge is usually not reachable from a phone, and its API may need a token the phone does
not have; Home Assistant proxies `/api/doorbell_bridge/<entry_id>/rings/<ring_id>.jpg` (and
`.mp4`, streamed through with `Range` passed on, so a player can seek). The view
needs authentication; the link in the event's attributes is *signed* (Home Assistant's
`authSig`), so it loads without a session or headers (a notification on a phone, a chat app)
for `PICTURE_LINK_VALIDITY`, and then stops working.
"""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

from aiohttp import web

from homeassistant.components.http import HomeAssistantView
from homeassistant.components.http.auth import async_sign_path
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, callback

from .api import BridgeError
from .const import DOMAIN
from .coordinator import DoorbellBridgeConfigEntry

_VIEWS_REGISTERED = f"{DOMAIN}_views"

# How long a signed picture link works: long enough to open last night's notification.
PICTURE_LINK_VALIDITY = timedelta(days=3)


def ring_picture_path(entry_id: str, ring_id: int) -> str:
    """Home Assistant URL path of one ring's picture (needs authentication)."""
    return f"/api/{DOMAIN}/{entry_id}/rings/{int(ring_id)}.jpg"


@callback
def signed_ring_picture_path(hass: HomeAssistant, entry_id: str, ring_id: int) -> str:
    """The same path, signed with Home Assistant's content user: works without a login until it expires."""
    return async_sign_path(hass, ring_picture_path(entry_id, ring_id), PICTURE_LINK_VALIDITY, use_content_user=True)


def ring_clip_path(entry_id: str, ring_id: int) -> str:
    """Home Assistant URL path of one ring's clip (needs authentication)."""
    return f"/api/{DOMAIN}/{entry_id}/rings/{int(ring_id)}.mp4"


@callback
def signed_ring_clip_path(hass: HomeAssistant, entry_id: str, ring_id: int) -> str:
    """The clip's path, signed like the picture's."""
    return async_sign_path(hass, ring_clip_path(entry_id, ring_id), PICTURE_LINK_VALIDITY, use_content_user=True)


@callback
def async_register_views(hass: HomeAssistant) -> None:
    """Registers the view once per Home Assistant run."""
    if hass.data.get(_VIEWS_REGISTERED):
        return
    hass.data[_VIEWS_REGISTERED] = True
    hass.http.register_view(RingPictureView())
    hass.http.register_view(RingClipView())


def _loaded_ring(request: web.Request, entry_id: str, ring_id: str) -> tuple[DoorbellBridgeConfigEntry, int] | None:
    """The loaded entry of ours and the ring id the path names, or None (answered 404)."""
    hass: HomeAssistant = request.app["hass"]
    entry: DoorbellBridgeConfigEntry | None = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN or entry.state is not ConfigEntryState.LOADED:
        return None
    try:
        return entry, int(ring_id)
    except ValueError:
        return None


class RingPictureView(HomeAssistantView):
    """GET a ring's picture from the bridge."""

    url = f"/api/{DOMAIN}/{{entry_id}}/rings/{{ring_id}}.jpg"
    name = f"api:{DOMAIN}:ring_picture"
    requires_auth = True

    async def get(self, request: web.Request, entry_id: str, ring_id: str) -> web.Response:
        """Returns the JPEG or 404."""
        found = _loaded_ring(request, entry_id, ring_id)
        if found is None:
            return web.Response(status=HTTPStatus.NOT_FOUND)
        entry, rid = found
        try:
            image = await entry.runtime_data.client.ring_snapshot(rid)
        except BridgeError:
            return web.Response(status=HTTPStatus.NOT_FOUND)
        # Revalidated every time, like the bridge's own answer: a ring id names one picture only
        # for one bridge's data directory, so a cached copy could attach an old picture to a new ring.
        return web.Response(body=image, content_type="image/jpeg", headers={"Cache-Control": "private, no-cache"})


# Headers of the bridge's answer a player needs (type, length, which bytes).
_CLIP_HEADERS = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "Last-Modified")
_CLIP_CHUNK = 64 * 1024


class RingClipView(HomeAssistantView):
    """GET a ring's clip from the bridge, streamed, `Range` passed on."""

    url = f"/api/{DOMAIN}/{{entry_id}}/rings/{{ring_id}}.mp4"
    name = f"api:{DOMAIN}:ring_clip"
    requires_auth = True

    async def get(self, request: web.Request, entry_id: str, ring_id: str) -> web.StreamResponse:
        """The MP4 (200 or 206), 416 for a range past its end, or 404 until it is written."""
        found = _loaded_ring(request, entry_id, ring_id)
        if found is None:
            return web.Response(status=HTTPStatus.NOT_FOUND)
        entry, rid = found
        try:
            upstream = await entry.runtime_data.client.ring_clip(rid, request.headers.get("Range"))
        except BridgeError:
            return web.Response(status=HTTPStatus.NOT_FOUND)
        async with upstream:
            resp = web.StreamResponse(status=upstream.status)
            for h in _CLIP_HEADERS:
                if h in upstream.headers:
                    resp.headers[h] = upstream.headers[h]
            resp.headers["Cache-Control"] = "private, no-cache"
            await resp.prepare(request)
            async for chunk in upstream.content.iter_chunked(_CLIP_CHUNK):
                await resp.write(chunk)
            await resp.write_eof()
        return resp
