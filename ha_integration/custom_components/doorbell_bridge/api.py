"""Client of the Doorbell Bridge HTTP API (status, snapshots, reboot, live events).

Plain aiohttp, no Home Assistant imports, so it can be used and tested on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
import json
from typing import Any

import aiohttp

# Limits on what the bridge may send us: a line, one event's data, a picture.
MAX_LINE_BYTES = 64 * 1024
MAX_EVENT_BYTES = 1024 * 1024
MAX_IMAGE_BYTES = 16 * 1024 * 1024

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
# A clip is streamed through: no total limit, but the bridge must start answering and keep sending.
CLIP_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=30)
# The bridge sends a keep-alive comment every 15 s: a silent stream for longer is dead.
EVENTS_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=45)


class BridgeError(Exception):
    """The bridge answered with an error, or not at all."""


class BridgeConnectionError(BridgeError):
    """The bridge cannot be reached."""


class BridgeAuthError(BridgeError):
    """The bridge refused our token."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One server-sent event."""

    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        """The data, decoded."""
        return json.loads(self.data)


class SseParser:
    """Incremental text/event-stream parser (the WHATWG rules the bridge follows)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._id: str | None = None
        self.last_id: str | None = None

    def feed_line(self, line: str) -> SseEvent | None:
        """One line without its end; returns an event when a blank line completes one."""
        if line == "":
            if not self._data:
                self._event = ""
                return None
            ev = SseEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._size = "", [], 0
            return ev
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._size += len(value)
            if self._size > MAX_EVENT_BYTES:
                raise BridgeError("event too large")
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._id = value
            self.last_id = value
        return None


class BridgeClient:
    """One bridge, reached at http://host:port with an optional API token."""

    def __init__(self, session: aiohttp.ClientSession, host: str, port: int, token: str | None = None) -> None:
        self._session = session
        self.host = host
        self.port = port
        self._token = token or None

    @property
    def base_url(self) -> str:
        """Base URL of the HTTP API."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def url(self, path: str) -> str:
        """Absolute URL of an API path."""
        return self.base_url + path

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = dict(extra or {})
        if self._token:
            h["Authorization"] = f"Bearer {self._token}"
        return h

    @staticmethod
    async def _check(resp: aiohttp.ClientResponse) -> None:
        if resp.status in (401, 403):
            raise BridgeAuthError(f"HTTP {resp.status}")
        if resp.status >= 400:
            detail = ""
            try:
                body = await resp.json(content_type=None)
                detail = str(body.get("error", ""))[:200]
            except (ValueError, aiohttp.ClientError, AttributeError):
                pass
            raise BridgeError(f"HTTP {resp.status} {detail}".strip())

    async def _request(self, method: str, path: str) -> aiohttp.ClientResponse:
        try:
            resp = await self._session.request(method, self.url(path), headers=self._headers(), timeout=REQUEST_TIMEOUT)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise BridgeConnectionError(str(err) or type(err).__name__) from err
        return resp

    async def status(self) -> dict[str, Any]:
        """GET /api/status."""
        resp = await self._request("GET", "/api/status")
        async with resp:
            await self._check(resp)
            try:
                body = await resp.json(content_type=None)
            except (ValueError, aiohttp.ClientError, TimeoutError) as err:
                raise BridgeError("status is not JSON") from err
        if not isinstance(body, dict):
            raise BridgeError("status is not a JSON object")
        return body

    async def rings(self, limit: int = 50) -> list[dict[str, Any]]:
        """GET /api/rings: the kept ring history, newest first."""
        resp = await self._request("GET", f"/api/rings?limit={int(limit)}")
        async with resp:
            await self._check(resp)
            try:
                body = await resp.json(content_type=None)
            except (ValueError, aiohttp.ClientError, TimeoutError) as err:
                raise BridgeError("rings is not JSON") from err
        rings = body.get("rings") if isinstance(body, dict) else None
        if not isinstance(rings, list):
            raise BridgeError("rings is not a list")
        return [r for r in rings if isinstance(r, dict)]

    async def _image(self, path: str) -> bytes:
        resp = await self._request("GET", path)
        async with resp:
            await self._check(resp)
            try:
                data = await resp.content.read(MAX_IMAGE_BYTES + 1)
            except (aiohttp.ClientError, TimeoutError) as err:
                raise BridgeConnectionError(str(err) or type(err).__name__) from err
        if len(data) > MAX_IMAGE_BYTES:
            raise BridgeError("image too large")
        return data

    async def snapshot(self) -> bytes:
        """The latest picture (GET /api/snapshot.jpg)."""
        return await self._image("/api/snapshot.jpg")

    async def ring_snapshot(self, ring_id: int) -> bytes:
        """The picture taken for one ring."""
        return await self._image(f"/api/rings/{int(ring_id)}/snapshot.jpg")

    async def ring_clip(self, ring_id: int, range_header: str | None = None) -> aiohttp.ClientResponse:
        """GET one ring's clip, `Range` passed on; the caller reads and closes the response.
        BridgeError (404) until the clip is written."""
        headers = self._headers({"Range": range_header} if range_header else None)
        try:
            resp = await self._session.get(
                self.url(f"/api/rings/{int(ring_id)}/clip.mp4"), headers=headers, timeout=CLIP_TIMEOUT
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise BridgeConnectionError(str(err) or type(err).__name__) from err
        if resp.status >= 400 and resp.status != 416:
            async with resp:
                await self._check(resp)
        return resp

    async def reboot(self) -> None:
        """Asks the bridge to reboot the doorbell (POST /api/reboot)."""
        resp = await self._request("POST", "/api/reboot")
        async with resp:
            await self._check(resp)

    async def events(self, last_event_id: str | None = None) -> AsyncIterator[SseEvent]:
        """GET /api/events: yields events until the stream ends or fails (BridgeConnectionError)."""
        headers = self._headers({"Accept": "text/event-stream"})
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        try:
            resp = await self._session.get(
                self.url("/api/events"),
                headers=headers,
                timeout=EVENTS_TIMEOUT,
                read_bufsize=MAX_LINE_BYTES,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise BridgeConnectionError(str(err) or type(err).__name__) from err
        async with resp:
            await self._check(resp)
            parser = SseParser()
            try:
                while True:
                    raw = await resp.content.readline()
                    if not raw:
                        break
                    if len(raw) > MAX_LINE_BYTES:
                        raise BridgeError("event stream line too long")
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    ev = parser.feed_line(line)
                    if ev is not None:
                        yield ev
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as err:
                raise BridgeConnectionError(str(err) or type(err).__name__) from err
        raise BridgeConnectionError("event stream ended")
