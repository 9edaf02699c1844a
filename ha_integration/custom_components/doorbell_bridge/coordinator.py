"""One live event stream per bridge: state for the entities, rings for the event entity.

The bridge pushes `state`, `sensor` and `ring` events over SSE. On a drop we reconnect with
backoff and `Last-Event-ID`, so the bridge replays what we missed. A ring is identified by its
id and time (ids restart only if the bridge loses its data); it fires at most once, and not at
all when it reaches us later than the configured window (after a long outage or a restart).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
import logging
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from .api import BridgeAuthError, BridgeClient, BridgeError, SseEvent
from .const import BACKOFF_MAX, BACKOFF_MIN, DOMAIN
from .device import async_update_device
from .issues import RepairTracker

_LOGGER = logging.getLogger(__name__)

# Delay of the first retry after a stream that was up dropped.
QUICK_RETRY = 0.2

# How many ring keys we remember for de-duplication (rings are rare; this is hours of them).
SEEN_RINGS = 256

type DoorbellBridgeConfigEntry = ConfigEntry[DoorbellBridgeData]


@dataclass(frozen=True, slots=True)
class Ring:
    """A press of the doorbell as the bridge reported it."""

    id: int
    at: str
    source: str
    snapshot: str | None
    press: str | None = None
    # The bridge's path of the ring's clip when one is being recorded (it 404s until written).
    clip: str | None = None

    @property
    def key(self) -> tuple[int, str]:
        """Identity of the ring (id alone repeats if the bridge lost its data)."""
        return (self.id, self.at)

    @classmethod
    def from_json(cls, obj: Any) -> Ring | None:
        """Parses the `ring` event (or `last_ring`) body; None when malformed."""
        if not isinstance(obj, dict):
            return None
        try:
            rid = int(obj["id"])
            at = str(obj["at"])
        except (KeyError, TypeError, ValueError):
            return None
        return cls(
            id=rid,
            at=at,
            source=str(obj.get("source") or "unknown"),
            snapshot=str(obj["snapshot"]) if isinstance(obj.get("snapshot"), str) else None,
            press=obj.get("press") if isinstance(obj.get("press"), str) else None,
            clip=obj.get("clip") if isinstance(obj.get("clip"), str) else None,
        )


@dataclass(slots=True)
class DoorbellBridgeData:
    """What the config entry holds at runtime."""

    client: BridgeClient
    coordinator: DoorbellBridgeCoordinator


class DoorbellBridgeCoordinator(DataUpdateCoordinator[dict[str, Any]]):
    """Holds the bridge's status body, kept current by its event stream."""

    config_entry: DoorbellBridgeConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: DoorbellBridgeConfigEntry,
        client: BridgeClient,
        ring_window: float,
    ) -> None:
        super().__init__(hass, _LOGGER, config_entry=entry, name=DOMAIN, update_interval=None)
        self.client = client
        self.ring_window = timedelta(seconds=ring_window)
        self.last_event_id: str | None = None
        self.connected = False
        self.reconnects = 0
        self.rings_fired = 0
        self.rings_dropped_late = 0
        self.rings_repeated = 0
        self._seen: deque[tuple[int, str]] = deque(maxlen=SEEN_RINGS)
        self._ring_listeners: list[Callable[[Ring], None]] = []
        self._lost_logged = False
        self._reauth_started = False
        self.repairs = RepairTracker(hass, entry.entry_id, entry.title)

    async def _async_update_data(self) -> dict[str, Any]:
        """First refresh: one status request (the stream keeps it current afterwards)."""
        try:
            status = await self.client.status()
        except BridgeAuthError as err:
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="auth_failed", translation_placeholders={"error": str(err)}
            ) from err
        except BridgeError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN, translation_key="cannot_connect", translation_placeholders={"error": str(err)}
            ) from err
        self._remember_last_ring(status)
        self._status_changed(status)
        return status

    @callback
    def _status_changed(self, status: dict[str, Any]) -> None:
        """A new status body: repairs and the device's name, model and firmware follow it."""
        self.repairs.update(status)
        async_update_device(self.hass, self.config_entry, status)

    @callback
    def async_shutdown_repairs(self) -> None:
        """Unload: stops the repairs' timer."""
        self.repairs.shutdown()

    def _remember_last_ring(self, status: dict[str, Any]) -> None:
        """The bridge's last ring at setup is history: never fire it."""
        ring = Ring.from_json(status.get("last_ring"))
        if ring is not None:
            self.mark_seen(ring.key)

    @callback
    def mark_seen(self, key: tuple[int, str]) -> None:
        """Records a ring as fired (also from the event entity's restored state)."""
        if key not in self._seen:
            self._seen.append(key)

    @callback
    def async_add_ring_listener(self, cb: Callable[[Ring], None]) -> CALLBACK_TYPE:
        """Calls `cb` once per new ring."""
        self._ring_listeners.append(cb)

        def remove() -> None:
            self._ring_listeners.remove(cb)

        return remove

    # The event stream.

    async def run(self) -> None:
        """Owner of the event stream: reconnects forever with backoff until cancelled."""
        backoff = BACKOFF_MIN
        while True:
            try:
                await self._run_once()
            except BridgeAuthError as err:
                # The token was changed: ask the user once (a rediscovery with the new token also
                # fixes it, by reloading the entry); until then, retry slowly.
                self.connected = False
                self._set_lost(err)
                if not self._reauth_started:
                    self._reauth_started = True
                    self.config_entry.async_start_reauth(self.hass)
                backoff = BACKOFF_MAX
            except BridgeError as err:
                if self.connected:
                    # A stream that was up dropped: one quick retry before anyone is told, so a
                    # blip does not flap every entity to unavailable and back.
                    self.connected = False
                    self.reconnects += 1
                    backoff = BACKOFF_MIN
                    await asyncio.sleep(QUICK_RETRY)
                    continue
                self._set_lost(err)
            except Exception as err:  # noqa: BLE001 - a bug must not end the stream for good
                _LOGGER.exception("Unexpected error in the event stream")
                self.connected = False
                self._set_lost(err)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            self.reconnects += 1

    async def _run_once(self) -> None:
        async for ev in self.client.events(self.last_event_id):
            if ev.id is not None:
                self.last_event_id = ev.id
            self._handle(ev)

    @callback
    def _set_lost(self, err: Exception) -> None:
        if not self._lost_logged:
            _LOGGER.warning("Lost the event stream of the bridge at %s: %s", self.client.base_url, err)
            self._lost_logged = True
        if self.last_update_success:
            self.last_update_success = False
            self.async_update_listeners()

    @callback
    def _handle(self, ev: SseEvent) -> None:
        try:
            body = ev.json()
        except ValueError:
            _LOGGER.debug("Ignoring a malformed %s event", ev.event)
            return
        data = dict(self.data or {})
        if ev.event == "state" and isinstance(body, dict):
            if not self.connected:
                self.connected = True
                if self._lost_logged:
                    _LOGGER.info("Event stream of the bridge at %s is back", self.client.base_url)
                    self._lost_logged = False
            # A ring we missed while away (no replay possible, e.g. the bridge restarted).
            ring = Ring.from_json(body.get("last_ring"))
            data = body
            self.async_set_updated_data(data)
            self._status_changed(data)
            if ring is not None:
                self._ring(ring)
        elif ev.event == "sensor" and isinstance(body, dict):
            name = body.get("name")
            state = body.get("state")
            if isinstance(name, str) and (state is None or isinstance(state, bool)):
                sensors = dict(data.get("sensors") or {})
                sensors[name] = state
                data["sensors"] = sensors
                self.async_set_updated_data(data)
        elif ev.event == "ring":
            ring = Ring.from_json(body)
            if ring is None:
                return
            data["last_ring"] = body
            self.async_set_updated_data(data)
            self._ring(ring)

    @callback
    def _ring(self, ring: Ring) -> None:
        if ring.key in self._seen:
            self.rings_repeated += 1
            return
        self._seen.append(ring.key)
        at = dt_util.parse_datetime(ring.at)
        now = dt_util.utcnow()
        if at is None or now - at > self.ring_window:
            self.rings_dropped_late += 1
            _LOGGER.info("Not firing ring %s from %s: it reached Home Assistant too late", ring.id, ring.at)
            return
        self.rings_fired += 1
        for cb in list(self._ring_listeners):
            cb(ring)
