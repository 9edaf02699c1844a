"""The doorbell's speaker: a media player that plays audio on the doorbell through the bridge.

`tts.speak`, media-source sounds and URLs all work: Home Assistant produces or fetches the audio
(TTS audio straight from the TTS manager, anything else through its own URL), and the bridge
plays it over the doorbell's audio backchannel (POST /api/talk). The entity exists when the
bridge reports talk as supported (or not yet known), and is available only while supported.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from homeassistant.components import media_source
from homeassistant.components.media_player import (
    BrowseMedia,
    MediaPlayerEntity,
    MediaPlayerEntityFeature,
    MediaPlayerState,
    MediaType,
    async_process_play_media_url,
)
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .api import REQUEST_TIMEOUT
from .coordinator import DoorbellBridgeConfigEntry, DoorbellBridgeCoordinator
from .entity import DoorbellBridgeEntity

PARALLEL_UPDATES = 1

# The bridge refuses larger bodies (413) and messages over a minute.
MAX_AUDIO_BYTES = 12 * 1024 * 1024
# Playing takes as long as the message.
TALK_TIMEOUT = aiohttp.ClientTimeout(total=120)

MIME_BY_EXTENSION = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "opus": "audio/ogg",
}


async def async_setup_entry(
    hass: HomeAssistant,
    entry: DoorbellBridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """The speaker, unless the bridge says the doorbell cannot play audio."""
    coordinator = entry.runtime_data.coordinator
    talk = (coordinator.data or {}).get("talk")
    if isinstance(talk, dict) and talk.get("state") in ("supported", "unknown"):
        async_add_entities([DoorbellSpeaker(coordinator)])


class DoorbellSpeaker(DoorbellBridgeEntity, MediaPlayerEntity):
    """Plays media on the doorbell's speaker."""

    _attr_translation_key = "speaker"
    _attr_media_content_type = MediaType.MUSIC
    _attr_supported_features = MediaPlayerEntityFeature.PLAY_MEDIA | MediaPlayerEntityFeature.BROWSE_MEDIA

    def __init__(self, coordinator: DoorbellBridgeCoordinator) -> None:
        super().__init__(coordinator, "speaker")
        self._playing = False

    @property
    def available(self) -> bool:
        talk = self.status.get("talk")
        return super().available and isinstance(talk, dict) and talk.get("state") == "supported"

    @property
    def state(self) -> MediaPlayerState:
        return MediaPlayerState.PLAYING if self._playing else MediaPlayerState.IDLE

    async def async_browse_media(
        self, media_content_type: MediaType | str | None = None, media_content_id: str | None = None
    ) -> BrowseMedia:
        """Audio from the media sources."""
        return await media_source.async_browse_media(
            self.hass, media_content_id, content_filter=lambda item: item.media_content_type.startswith("audio/")
        )

    async def _audio(self, media_id: str) -> tuple[bytes, str | None]:
        """The audio bytes and their MIME type."""
        if media_source.is_media_source_id(media_id) and media_id.startswith("media-source://tts/"):
            # Imported here: tts (and its requirements) is loaded only where it is set up.
            from homeassistant.components import tts  # noqa: PLC0415

            try:
                ext, data = await tts.async_get_media_source_audio(self.hass, media_id)
            except (HomeAssistantError, ValueError) as err:
                raise HomeAssistantError(f"Text-to-speech failed: {err}") from err
            return data, MIME_BY_EXTENSION.get(ext.lower().lstrip("."))
        mime = None
        if media_source.is_media_source_id(media_id):
            item = await media_source.async_resolve_media(self.hass, media_id, self.entity_id)
            media_id, mime = item.url, item.mime_type
        url = async_process_play_media_url(self.hass, media_id)
        try:
            async with async_get_clientsession(self.hass).get(url, timeout=REQUEST_TIMEOUT) as resp:
                resp.raise_for_status()
                data = await resp.content.read(MAX_AUDIO_BYTES + 1)
                mime = mime or resp.headers.get("Content-Type")
        except (aiohttp.ClientError, TimeoutError) as err:
            raise HomeAssistantError(f"Cannot fetch the media: {err}") from err
        if len(data) > MAX_AUDIO_BYTES:
            raise HomeAssistantError("The media is too large for the doorbell")
        return data, mime

    async def async_play_media(self, media_type: MediaType | str, media_id: str, **kwargs: Any) -> None:
        """Fetches the audio and has the bridge play it; returns when it has played."""
        data, mime = await self._audio(media_id)
        client = self.coordinator.client
        headers = client._headers({"Content-Type": mime or "application/octet-stream"})  # noqa: SLF001
        self._playing = True
        self.async_write_ha_state()
        try:
            async with async_get_clientsession(self.hass).post(
                client.url("/api/talk"), data=data, headers=headers, timeout=TALK_TIMEOUT
            ) as resp:
                if resp.status >= 400:
                    try:
                        body = await resp.json(content_type=None)
                        detail = str(body.get("detail") or body.get("error"))[:300]
                    except (ValueError, aiohttp.ClientError, AttributeError):
                        detail = f"HTTP {resp.status}"
                    raise HomeAssistantError(f"The doorbell did not play the audio: {detail}")
        except (aiohttp.ClientError, TimeoutError) as err:
            raise HomeAssistantError(f"Cannot reach the bridge: {err}") from err
        finally:
            self._playing = False
            self.async_write_ha_state()
