"""Lets pytest-homeassistant-custom-component (made for the core it pins) run on a newer core.

The plugin trails Home Assistant releases by weeks; scripts/ha-env installs the newest core on
top of it. Imported by scripts/ha-tests before pytest loads its plugins. Each shim is needed only
by the plugin's own imports, names the release that moved the thing, and does nothing on the core
the plugin pins.
"""

from __future__ import annotations

# 2026.11: Core aliases httpx to httpx2 when it is imported, and refuses once httpx was imported;
# the plugin imports httpx (through its test helpers) first. Importing Core first keeps the order.
import homeassistant  # noqa: F401
import homeassistant.components.logger as _logger

# 2026.11: `_clear_logger_overwrites` is no longer re-exported by the logger component.
if not hasattr(_logger, "_clear_logger_overwrites"):
    from homeassistant.components.logger.helpers import _clear_logger_overwrites

    _logger._clear_logger_overwrites = _clear_logger_overwrites  # type: ignore[attr-defined]
