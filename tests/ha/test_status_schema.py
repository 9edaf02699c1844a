"""The status the integration reads, against the bridge's published schema: the test fixtures and
the live bridge's `/api/status` and event-stream `state`."""

from __future__ import annotations

import json

import aiohttp

from status_schema import FIXTURE, SCHEMA, fixture_status, schema_errors


def test_schema_is_the_bridge_s() -> None:
    assert SCHEMA["title"] == "Doorbell Bridge status"
    assert {"version", "doorbell", "sensors", "streams", "tasks"} <= set(SCHEMA["required"])
    assert "last_ring" in SCHEMA["properties"]


def test_fixtures_validate_and_drift_is_caught() -> None:
    assert schema_errors(FIXTURE) == []
    assert schema_errors(fixture_status(storage={"state": "failing", "detail": "No space left on device"})) == []
    assert schema_errors(fixture_status(last_ring=None, talk={"state": "unknown", "reason": "no answer yet",
                                                               "onvif_audio_output": None})) == []
    assert schema_errors(fixture_status(sensors={"ring": "on"}))
    assert schema_errors(fixture_status(storage={"state": "full", "detail": None}))
    drifted = fixture_status()
    del drifted["doorbell"]["online"]
    assert any("online" in e for e in schema_errors(drifted))


async def test_live_status_and_state_event_validate(bridge) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(bridge.url + "/api/status") as r:
            status = await r.json()
        assert schema_errors(status) == [], status
        async with s.get(bridge.url + "/api/events") as r:
            line = b""
            while not line.startswith(b"data:"):
                line = await r.content.readline()
            state = json.loads(line[len(b"data:"):])
    assert schema_errors(state) == [], state
    assert state["version"] == status["version"]
