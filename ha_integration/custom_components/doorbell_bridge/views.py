"""The picture of a ring, served by Home Assistant (authenticated), so a phone can show it.

The bridge is usually not reachable from a phone, and its API may need a token the phone does
not have; Home Assistant proxies `/api/doorbell_bridge/<entry_id>/rings/<ring_id>.jpg`.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

from homeassistant.components.http import HomeAssistantView
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, callback

from .api import BridgeError
from .const import DOMAIN

_VIEWS_REGISTERED = f"{DOMAIN}_views"


def ring_picture_path(entry_id: str, ring_id: int) -> str:
    """Home Assistant URL path of one ring's picture."""
    return f"/api/{DOMAIN}/{entry_id}/rings/{ring_id}.jpg"


@callback
def async_register_views(hass: HomeAssistant) -> None:
    """Registers the view once per Home Assistant run."""
    if hass.data.get(_VIEWS_REGISTERED):
        return
    hass.data[_VIEWS_REGISTERED] = True
    hass.http.register_view(RingPictureView())


class RingPictureView(HomeAssistantView):
    """GET a ring's picture from the bridge."""

    url = f"/api/{DOMAIN}/{{entry_id}}/rings/{{ring_id}}.jpg"
    name = f"api:{DOMAIN}:ring_picture"
    requires_auth = True

    async def get(self, request: web.Request, entry_id: str, ring_id: str) -> web.Response:
        """Returns the JPEG or 404."""
        hass: HomeAssistant = request.app["hass"]
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN or entry.state is not ConfigEntryState.LOADED:
            return web.Response(status=HTTPStatus.NOT_FOUND)
        try:
            rid = int(ring_id)
        except ValueError:
            return web.Response(status=HTTPStatus.NOT_FOUND)
        try:
            image = await entry.runtime_data.client.ring_snapshot(rid)
        except BridgeError:
            return web.Response(status=HTTPStatus.NOT_FOUND)
        return web.Response(body=image, content_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})
