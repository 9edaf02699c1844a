"""Repairs (the issue registry) for what a user can fix, raised and cleared from the bridge's status.

`evaluate` is pure: the status body and since when each slow condition holds in, the issues that
should exist out. `RepairTracker` keeps the times, wakes up when a delayed condition becomes due,
and creates or deletes the issues.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import re
import time
from typing import Any

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_call_later

from .const import DOMAIN, MIN_BRIDGE_VERSION, REPAIR_DELAY

NO_RING_SOURCE = "no_ring_source"
DOORBELL_OFFLINE = "doorbell_offline"
BRIDGE_TOO_OLD = "bridge_too_old"
STORAGE_FAILING = "storage_failing"
ALL_ISSUES = (NO_RING_SOURCE, DOORBELL_OFFLINE, BRIDGE_TOO_OLD, STORAGE_FAILING)

# `sources` of the status also lists ONVIF, which carries motion, never rings.
NOT_RING_SOURCES = frozenset({"onvif"})


def issue_id(entry_id: str, key: str) -> str:
    """One issue per entry and kind."""
    return f"{entry_id}_{key}"


def version_tuple(version: str) -> tuple[int, ...] | None:
    """`0.1.0`, `0.2.0-dev` -> (0, 1, 0), (0, 2, 0); None when it is no version."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    if m is None:
        return None
    return tuple(int(g or 0) for g in m.groups())


def _no_ring_source(status: dict[str, Any]) -> bool | None:
    """True when no ring source delivers; None when the bridge does not say (older bridges)."""
    sources = status.get("sources")
    if not isinstance(sources, dict):
        return None
    return not any(up is True for name, up in sources.items() if name not in NOT_RING_SOURCES)


def _offline(status: dict[str, Any]) -> bool:
    doorbell = status.get("doorbell")
    return isinstance(doorbell, dict) and doorbell.get("online") is False


@dataclass(slots=True)
class Since:
    """Since when (monotonic seconds) each delayed condition holds; None while it does not."""

    no_ring_source: float | None = None
    offline: float | None = None


def evaluate(
    status: dict[str, Any], since: Since, now: float, delay: float, min_version: str = MIN_BRIDGE_VERSION
) -> dict[str, dict[str, str]]:
    """Updates `since` and returns the issues that should exist, with their placeholders."""
    out: dict[str, dict[str, str]] = {}
    no_source = _no_ring_source(status)
    since.no_ring_source = (since.no_ring_source or now) if no_source else None
    if since.no_ring_source is not None and now - since.no_ring_source >= delay:
        sources = status.get("sources") or {}
        listed = ", ".join(sorted(n for n in sources if n not in NOT_RING_SOURCES)) or "none"
        out[NO_RING_SOURCE] = {"sources": listed}
    since.offline = (since.offline or now) if _offline(status) else None
    if since.offline is not None and now - since.offline >= delay:
        out[DOORBELL_OFFLINE] = {"minutes": str(int(delay // 60))}
    version = str(status.get("version") or "")
    have, need = version_tuple(version), version_tuple(min_version)
    if have is not None and need is not None and have < need:
        out[BRIDGE_TOO_OLD] = {"version": version, "min_version": min_version}
    storage = status.get("storage")
    if isinstance(storage, dict) and storage.get("state") == "failing":
        detail = storage.get("detail")
        out[STORAGE_FAILING] = {"detail": str(detail)[:300] if detail else "no detail"}
    return out


def next_due(since: Since, now: float, delay: float) -> float | None:
    """Seconds until a held condition becomes an issue; None when nothing is pending."""
    pending = [s + delay - now for s in (since.no_ring_source, since.offline) if s is not None]
    pending = [p for p in pending if p > 0]
    return min(pending) if pending else None


@dataclass
class RepairTracker:
    """The issues of one config entry."""

    hass: HomeAssistant
    entry_id: str
    title: str
    delay: float = REPAIR_DELAY
    clock: Callable[[], float] = time.monotonic
    since: Since = field(default_factory=Since)
    # At start every issue is suspect: one left from before a restart is deleted if its cause is gone.
    active: set[str] = field(default_factory=lambda: set(ALL_ISSUES))
    _first: bool = True
    _last: dict[str, Any] = field(default_factory=dict)
    _timer: CALLBACK_TYPE | None = None

    @callback
    def update(self, status: dict[str, Any]) -> None:
        """Re-evaluates after every status change (and when a delayed condition is due)."""
        self._last = status
        now = self.clock()
        if self._first:
            # An issue raised before a restart whose condition still holds stays (no 10-minute gap).
            self._first = False
            registry = ir.async_get(self.hass)
            held = registry.async_get_issue(DOMAIN, issue_id(self.entry_id, DOORBELL_OFFLINE)) is not None
            if held and _offline(status):
                self.since.offline = now - self.delay
            held = registry.async_get_issue(DOMAIN, issue_id(self.entry_id, NO_RING_SOURCE)) is not None
            if held and _no_ring_source(status):
                self.since.no_ring_source = now - self.delay
        wanted = evaluate(status, self.since, now, self.delay)
        for key, placeholders in wanted.items():
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                issue_id(self.entry_id, key),
                is_fixable=False,
                is_persistent=False,
                severity=ir.IssueSeverity.ERROR if key != BRIDGE_TOO_OLD else ir.IssueSeverity.WARNING,
                translation_key=key,
                translation_placeholders={"name": self.title, **placeholders},
            )
        for key in self.active - wanted.keys():
            ir.async_delete_issue(self.hass, DOMAIN, issue_id(self.entry_id, key))
        self.active = set(wanted)
        self._schedule(next_due(self.since, now, self.delay))

    @callback
    def _schedule(self, due: float | None) -> None:
        if self._timer is not None:
            self._timer()
            self._timer = None
        if due is not None:
            self._timer = async_call_later(self.hass, due + 0.05, self._due)

    @callback
    def _due(self, _now: Any) -> None:
        self._timer = None
        self.update(self._last)

    @callback
    def shutdown(self) -> None:
        """Stops the timer (the issues stay until the cause is gone or the entry is removed)."""
        self._schedule(None)


@callback
def async_delete_all(hass: HomeAssistant, entry_id: str) -> None:
    """Removes every issue of an entry."""
    for key in ALL_ISSUES:
        ir.async_delete_issue(hass, DOMAIN, issue_id(entry_id, key))
