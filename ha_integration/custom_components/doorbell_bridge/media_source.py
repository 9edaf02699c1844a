"""Ring history in Home Assistant's media browser: one folder per bridge, its rings newest first
(time and source), each with its picture and, beside it, its clip when the bridge kept one. Read
from the bridge's `GET /api/rings` when browsed.

Identifiers: `<entry_id>` (a bridge), `<entry_id>/<ring_id>` (a ring's picture) and
`<entry_id>/<ring_id>/clip` (its clip). Both resolve to the integration's authenticated views; the
media browser signs them for the viewer.
Thumbnails are loaded by the browser without headers, so their paths are signed (for an hour).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from homeassistant.components.media_player import BrowseError, MediaClass, MediaType
from homeassistant.components.media_source import (
    BrowseMediaSource,
    MediaSource,
    MediaSourceItem,
    PlayMedia,
    Unresolvable,
)
from homeassistant.components.http.auth import async_sign_path
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util

from .api import BridgeError
from .const import DOMAIN, MEDIA_RINGS
from .coordinator import DoorbellBridgeConfigEntry
from .views import ring_clip_path, ring_picture_path

THUMBNAIL_VALIDITY = timedelta(hours=1)


async def async_get_media_source(hass: HomeAssistant) -> MediaSource:
    """The media source of this integration."""
    return DoorbellBridgeMediaSource(hass)


CLIP = "clip"


def parse_identifier(identifier: str | None) -> tuple[str | None, int | None]:
    """`""` -> (None, None); `entry` -> (entry, None); `entry/41` or `entry/41/clip` -> (entry, 41)."""
    if not identifier:
        return None, None
    entry_id, _, ring = identifier.partition("/")
    if not ring:
        return entry_id, None
    ring, _, what = ring.partition("/")
    if what not in ("", CLIP):
        return entry_id, -1
    try:
        return entry_id, int(ring)
    except ValueError:
        return entry_id, -1


def is_clip(identifier: str | None) -> bool:
    """Whether the identifier names a ring's clip."""
    return bool(identifier) and str(identifier).endswith("/" + CLIP)


def ring_title(ring: dict[str, Any]) -> str:
    """`2026-11-25 11:00:00 (coiot)` in Home Assistant's time zone."""
    at = dt_util.parse_datetime(str(ring.get("at") or ""))
    when = dt_util.as_local(at).strftime("%Y-%m-%d %H:%M:%S") if at else str(ring.get("at"))
    return f"{when} ({ring.get('source') or 'unknown'})"


class DoorbellBridgeMediaSource(MediaSource):
    """The rings each bridge keeps."""

    name = "Doorbell rings"

    def __init__(self, hass: HomeAssistant) -> None:
        super().__init__(DOMAIN)
        self.hass = hass

    def _entry(self, entry_id: str | None) -> DoorbellBridgeConfigEntry:
        entry = self.hass.config_entries.async_get_entry(entry_id) if entry_id else None
        if entry is None or entry.domain != DOMAIN or entry.state is not ConfigEntryState.LOADED:
            raise BrowseError("Unknown or unavailable doorbell")
        return entry

    async def async_resolve_media(self, item: MediaSourceItem) -> PlayMedia:
        """A ring's picture or clip."""
        entry_id, ring_id = parse_identifier(item.identifier)
        if entry_id is None or ring_id is None or ring_id < 0:
            raise Unresolvable("Not a ring")
        try:
            self._entry(entry_id)
        except BrowseError as err:
            raise Unresolvable(str(err)) from err
        if is_clip(item.identifier):
            return PlayMedia(ring_clip_path(entry_id, ring_id), "video/mp4")
        return PlayMedia(ring_picture_path(entry_id, ring_id), "image/jpeg")

    async def async_browse_media(self, item: MediaSourceItem) -> BrowseMediaSource:
        """The bridges, or one bridge's rings."""
        entry_id, ring_id = parse_identifier(item.identifier)
        if ring_id is not None:
            raise BrowseError("A ring has nothing to browse")
        if entry_id is None:
            entries = [
                e
                for e in self.hass.config_entries.async_entries(DOMAIN)
                if e.state is ConfigEntryState.LOADED
            ]
            return self._folder("", self.name, [self._folder(e.entry_id, e.title, None) for e in entries])
        entry = self._entry(entry_id)
        try:
            rings = await entry.runtime_data.client.rings(MEDIA_RINGS)
        except BridgeError as err:
            raise BrowseError(f"The bridge did not list its rings: {err}") from err
        children: list[BrowseMediaSource] = []
        for r in rings:
            if isinstance(r.get("id"), int):
                children.append(self._ring(entry.entry_id, r))
                if isinstance(r.get("clip"), str):
                    children.append(self._clip(entry.entry_id, r))
        return self._folder(entry.entry_id, entry.title, children)

    def _folder(self, identifier: str, title: str, children: list[BrowseMediaSource] | None) -> BrowseMediaSource:
        return BrowseMediaSource(
            domain=DOMAIN,
            identifier=identifier,
            media_class=MediaClass.DIRECTORY,
            media_content_type=MediaType.IMAGE,
            title=title,
            can_play=False,
            can_expand=True,
            children=children,
            children_media_class=MediaClass.IMAGE if identifier else MediaClass.DIRECTORY,
        )

    def _ring(self, entry_id: str, ring: dict[str, Any]) -> BrowseMediaSource:
        has_picture = isinstance(ring.get("snapshot"), str)
        thumbnail = (
            async_sign_path(
                self.hass, ring_picture_path(entry_id, int(ring["id"])), THUMBNAIL_VALIDITY, use_content_user=True
            )
            if has_picture
            else None
        )
        return BrowseMediaSource(
            domain=DOMAIN,
            identifier=f"{entry_id}/{ring['id']}",
            media_class=MediaClass.IMAGE,
            media_content_type="image/jpeg",
            title=ring_title(ring),
            can_play=has_picture,
            can_expand=False,
            thumbnail=thumbnail,
        )

    def _clip(self, entry_id: str, ring: dict[str, Any]) -> BrowseMediaSource:
        """The ring's clip, listed right after its picture (with the picture as its thumbnail)."""
        thumbnail = (
            async_sign_path(
                self.hass, ring_picture_path(entry_id, int(ring["id"])), THUMBNAIL_VALIDITY, use_content_user=True
            )
            if isinstance(ring.get("snapshot"), str)
            else None
        )
        return BrowseMediaSource(
            domain=DOMAIN,
            identifier=f"{entry_id}/{ring['id']}/{CLIP}",
            media_class=MediaClass.VIDEO,
            media_content_type="video/mp4",
            title=f"{ring_title(ring)} clip",
            can_play=True,
            can_expand=False,
            thumbnail=thumbnail,
        )
