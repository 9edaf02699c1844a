"""The doorbell speaker: tts.speak and a media URL end in audio at the simulated doorbell."""

from __future__ import annotations

import asyncio
import io
import math
from pathlib import Path
from typing import Any
import wave

import aiohttp
from aiohttp import web

from homeassistant.components.tts import TextToSpeechEntity, TtsAudioType
from homeassistant.components.tts.const import DATA_COMPONENT
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.setup import async_setup_component

from bridge_steps import connected, entity_id, entry_for, setup, wait_for


TONE_MP3 = Path(__file__).resolve().parents[1] / "data" / "talk" / "tone660.mp3"


def tone_wav(hz: float, seconds: float, rate: int = 16000) -> bytes:
    """A mono 16-bit WAV of a sine."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = bytearray()
        for i in range(int(rate * seconds)):
            v = int(16000 * math.sin(2 * math.pi * hz * i / rate))
            frames += v.to_bytes(2, "little", signed=True)
        w.writeframes(bytes(frames))
    return buf.getvalue()


class ToneTTS(TextToSpeechEntity):
    """An offline TTS engine that 'speaks' 1 s of 660 Hz as MP3 (Home Assistant's TTS format, so it
    needs no conversion), whatever the message."""

    _attr_name = "Tone"
    _attr_unique_id = "tone-tts"

    @property
    def supported_languages(self) -> list[str]:
        return ["en"]

    @property
    def default_language(self) -> str:
        return "en"

    def get_tts_audio(self, message: str, language: str, options: dict[str, Any]) -> TtsAudioType:
        return ("mp3", TONE_MP3.read_bytes())


async def sim_status(bridge) -> dict:
    async with aiohttp.ClientSession() as s, s.get(bridge.sim_url + "/sim/status") as r:
        return await r.json()


async def sim_until(bridge, cond, timeout: float = 10.0) -> dict:
    """The simulator's status once `cond` holds (play_media returns after playing; this is a bound)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        s = await sim_status(bridge)
        if cond(s):
            return s
        assert loop.time() < deadline, s
        await asyncio.sleep(0.05)


async def test_tts_speak_and_a_media_url_play_on_the_doorbell(hass: HomeAssistant, bridge) -> None:
    entry = entry_for(bridge)
    await setup(hass, entry)
    await connected(hass, entry)
    player = entity_id(hass, "media_player", "speaker", entry)
    await wait_for(lambda: hass.states.get(player).state == "idle", what="speaker available")
    # The translated entity name after the device's (the doorbell's name, from the bridge).
    device = dr.async_get(hass).async_get(er.async_get(hass).async_get(player).device_id)
    assert hass.states.get(player).attributes["friendly_name"] == f"{device.name} Speaker"

    assert await async_setup_component(hass, "tts", {})
    await hass.async_block_till_done()
    await hass.data[DATA_COMPONENT].async_add_entities([ToneTTS()])
    await hass.services.async_call(
        "tts",
        "speak",
        {"entity_id": "tts.tone", "media_player_entity_id": player, "message": "The parcel goes by the side door"},
        blocking=True,
    )
    s = await sim_until(bridge, lambda s: s["backchannel_ms"] >= 950)
    assert s["backchannel_sessions"] == 1, s
    assert 950 <= s["backchannel_ms"] <= 1150, s  # MP3 frames pad the end
    assert abs(s["backchannel_hz"] - 660) <= 10, s

    # A URL served elsewhere: fetched through Home Assistant, then played.
    app = web.Application()
    app.router.add_get("/chime.wav", lambda _: web.Response(body=tone_wav(440.0, 0.5), content_type="audio/wav"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    try:
        await hass.services.async_call(
            "media_player",
            "play_media",
            {"entity_id": player, "media_content_id": f"http://127.0.0.1:{port}/chime.wav", "media_content_type": "music"},
            blocking=True,
        )
    finally:
        await runner.cleanup()
    s = await sim_until(bridge, lambda s: s["backchannel_sessions"] == 2 and s["backchannel_ms"] >= 450)
    assert s["backchannel_sessions"] == 2, s
    assert 450 <= s["backchannel_ms"] <= 550, s
    assert abs(s["backchannel_hz"] - 440) <= 10, s
    assert hass.states.get(player).state == "idle"


async def test_no_speaker_without_a_backchannel(hass: HomeAssistant, start_bridge) -> None:
    bridge = start_bridge(extra=["--no-backchannel"])
    # The bridge probes the doorbell at start; wait until it has its answer.
    for _ in range(200):
        async with aiohttp.ClientSession() as s, s.get(bridge.url + "/api/status") as r:
            if (await r.json())["talk"]["state"] == "unsupported":
                break
        await asyncio.sleep(0.05)
    entry = entry_for(bridge)
    await setup(hass, entry)
    await connected(hass, entry)
    ents = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    assert "media_player" not in {e.domain for e in ents}
