"""The HA-free client: SSE parsing (bounded, never raises on odd input) and its errors."""

from __future__ import annotations

import random

import pytest

from custom_components.doorbell_bridge.api import MAX_EVENT_BYTES, BridgeClient, BridgeError, SseParser


def feed(parser: SseParser, text: str) -> list:
    out = []
    for line in text.split("\n"):
        ev = parser.feed_line(line)
        if ev is not None:
            out.append(ev)
    return out


def test_events_ids_and_comments() -> None:
    p = SseParser()
    evs = feed(p, ': keep-alive\n\nid: 7\nevent: ring\ndata: {"id": 1,\ndata:  "at": "x"}\n\ndata:plain\n\n')
    assert [(e.event, e.id) for e in evs] == [("ring", "7"), ("message", "7")]
    assert evs[0].json() == {"id": 1, "at": "x"}
    assert evs[1].data == "plain"
    assert p.last_id == "7"


def test_event_size_is_bounded() -> None:
    p = SseParser()
    chunk = "x" * 60000
    with pytest.raises(BridgeError):
        for _ in range(MAX_EVENT_BYTES // len(chunk) + 2):
            p.feed_line("data: " + chunk)


def test_random_input_never_crashes() -> None:
    rng = random.Random(7)
    alphabet = ["data", "event", "id", "retry", ":", " ", "\0", "{", "}", "é", "", "x"]
    for _ in range(2000):
        p = SseParser()
        for _ in range(rng.randint(0, 30)):
            line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
            ev = p.feed_line(line)
            if ev is not None:
                assert isinstance(ev.data, str) and isinstance(ev.event, str)


def test_urls() -> None:
    c = BridgeClient(None, "fe80::1", 8565)  # type: ignore[arg-type]
    assert c.url("/api/status") == "http://[fe80::1]:8565/api/status"
