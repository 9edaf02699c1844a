"""Config flow: one click from the add-on's Supervisor discovery, or by hand; reauth and reconfigure.

Changing an entry's data or options reloads it exactly once: rediscovery and reconfigure through
`_abort_if_unique_id_configured(updates=...)` / `async_update_reload_and_abort`, options through
`OptionsFlowWithReload`. There is no update listener (Home Assistant 2026.12 refuses the mix).
"""

from __future__ import annotations

import logging
from typing import Any

# Home Assistant validates flows with probatio (voluptuous-compatible, typed).
import probatio as vol

from collections.abc import Mapping

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.const import CONF_HOST, CONF_NAME, CONF_PORT, CONF_TOKEN
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import selector
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .api import BridgeAuthError, BridgeClient, BridgeConnectionError, BridgeError
from .const import (
    CONF_ADDON_SLUG,
    CONF_RING_WINDOW,
    CONF_RTSP_PASSWORD,
    CONF_RTSP_PORT,
    CONF_RTSP_USERNAME,
    DEFAULT_HTTP_PORT,
    DEFAULT_RING_WINDOW,
    DEFAULT_RTSP_PORT,
    DOMAIN,
)

try:  # Home Assistant 2025.1+; the old path (homeassistant.components.hassio) is gone in 2026
    from homeassistant.helpers.service_info.hassio import HassioServiceInfo
except ImportError:  # pragma: no cover - older releases
    from homeassistant.components.hassio import HassioServiceInfo  # type: ignore[no-redef,attr-defined]

_LOGGER = logging.getLogger(__name__)

DEFAULT_TITLE = "Doorbell"

# Keys the add-on may use in its discovery message, and ours.
_DISCOVERY_KEYS = {
    CONF_HOST: (CONF_HOST,),
    CONF_PORT: (CONF_PORT, "http_port"),
    CONF_RTSP_PORT: (CONF_RTSP_PORT,),
    CONF_TOKEN: (CONF_TOKEN, "api_token"),
    CONF_RTSP_USERNAME: (CONF_RTSP_USERNAME,),
    CONF_RTSP_PASSWORD: (CONF_RTSP_PASSWORD,),
}


def _from_discovery(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ours, theirs in _DISCOVERY_KEYS.items():
        for key in theirs:
            if config.get(key) not in (None, ""):
                out[ours] = config[key]
                break
    out.setdefault(CONF_PORT, DEFAULT_HTTP_PORT)
    out.setdefault(CONF_RTSP_PORT, DEFAULT_RTSP_PORT)
    out[CONF_PORT] = int(out[CONF_PORT])
    out[CONF_RTSP_PORT] = int(out[CONF_RTSP_PORT])
    return out


async def _probe(hass: HomeAssistant, data: dict[str, Any]) -> dict[str, Any]:
    """GET /api/status with these settings (raises BridgeError)."""
    client = BridgeClient(async_get_clientsession(hass), data[CONF_HOST], data[CONF_PORT], data.get(CONF_TOKEN))
    return await client.status()


def _unique_id(status: dict[str, Any], fallback: str) -> str:
    bridge_id = status.get("bridge_id")
    return str(bridge_id) if bridge_id else fallback


def _user_schema(defaults: dict[str, Any]) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_HOST, default=defaults.get(CONF_HOST, vol.UNDEFINED)): str,
            vol.Required(CONF_PORT, default=defaults.get(CONF_PORT, DEFAULT_HTTP_PORT)): vol.All(
                vol.Coerce(int), vol.Range(min=1, max=65535)
            ),
            vol.Required(CONF_RTSP_PORT, default=defaults.get(CONF_RTSP_PORT, DEFAULT_RTSP_PORT)): vol.All(
                vol.Coerce(int), vol.Range(min=1, max=65535)
            ),
            vol.Optional(CONF_TOKEN, description={"suggested_value": defaults.get(CONF_TOKEN)}): str,
            vol.Optional(CONF_RTSP_USERNAME, description={"suggested_value": defaults.get(CONF_RTSP_USERNAME)}): str,
            vol.Optional(
                CONF_RTSP_PASSWORD, description={"suggested_value": defaults.get(CONF_RTSP_PASSWORD)}
            ): selector.TextSelector(selector.TextSelectorConfig(type=selector.TextSelectorType.PASSWORD)),
        }
    )


class DoorbellBridgeConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a Doorbell Bridge."""

    VERSION = 1

    def __init__(self) -> None:
        self._discovered: dict[str, Any] = {}
        self._title = DEFAULT_TITLE

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> DoorbellBridgeOptionsFlow:
        """The options (ring window)."""
        return DoorbellBridgeOptionsFlow()

    async def _test(self, data: dict[str, Any], errors: dict[str, str]) -> dict[str, Any] | None:
        try:
            return await _probe(self.hass, data)
        except BridgeAuthError:
            errors["base"] = "invalid_auth"
        except BridgeConnectionError:
            errors["base"] = "cannot_connect"
        except BridgeError:
            _LOGGER.exception("Unexpected answer from the bridge")
            errors["base"] = "unknown"
        return None

    async def async_step_hassio(self, discovery_info: HassioServiceInfo) -> ConfigFlowResult:
        """The add-on announced itself through the Supervisor."""
        data = _from_discovery(dict(discovery_info.config))
        if discovery_info.slug:
            data[CONF_ADDON_SLUG] = discovery_info.slug
        if CONF_HOST not in data:
            return self.async_abort(reason="invalid_discovery_info")
        try:
            status = await _probe(self.hass, data)
        except BridgeAuthError:
            return self.async_abort(reason="invalid_auth")
        except BridgeError:
            return self.async_abort(reason="cannot_connect")
        entry = await self.async_set_unique_id(_unique_id(status, discovery_info.uuid or data[CONF_HOST]))
        if entry is not None and entry.state is ConfigEntryState.SETUP_ERROR:
            # Setup failed on the old token (reauth pending): Core reloads only loaded or retrying
            # entries, so the new token is applied here (one reload, and the reauth is moot).
            if self.hass.config_entries.async_update_entry(entry, data={**entry.data, **data}):
                self.hass.config_entries.async_schedule_reload(entry.entry_id)
            return self.async_abort(reason="already_configured")
        # A reinstalled or moved add-on, or a new token: same bridge, new settings. The entry is
        # updated and reloaded once (this also ends a pending reauthentication).
        self._abort_if_unique_id_configured(updates=data)
        self._discovered = data
        self._title = str(discovery_info.config.get(CONF_NAME) or discovery_info.name or DEFAULT_TITLE)
        self.context["title_placeholders"] = {"name": self._title}
        return await self.async_step_hassio_confirm()

    async def async_step_hassio_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """One click to add the discovered bridge."""
        if user_input is not None:
            return self.async_create_entry(title=self._title, data=self._discovered)
        self._set_confirm_only()
        return self.async_show_form(step_id="hassio_confirm", description_placeholders={"name": self._title})

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Set up by hand: the connection is tested before the entry is created."""
        errors: dict[str, str] = {}
        if user_input is not None:
            status = await self._test(user_input, errors)
            if status is not None:
                await self.async_set_unique_id(_unique_id(status, f"{user_input[CONF_HOST]}:{user_input[CONF_PORT]}"))
                self._abort_if_unique_id_configured(updates=user_input)
                return self.async_create_entry(title=DEFAULT_TITLE, data=user_input)
        return self.async_show_form(step_id="user", data_schema=_user_schema(user_input or {}), errors=errors)

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The bridge refused the token (it was changed, or the credentials file was replaced)."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Asks for the new token; keeps everything else."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {**entry.data, CONF_TOKEN: user_input[CONF_TOKEN]}
            status = await self._test(data, errors)
            if status is not None:
                await self.async_set_unique_id(_unique_id(status, entry.unique_id or ""))
                self._abort_if_unique_id_mismatch(reason="wrong_bridge")
                return self.async_update_reload_and_abort(entry, data_updates={CONF_TOKEN: user_input[CONF_TOKEN]})
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema({vol.Required(CONF_TOKEN): str}),
            description_placeholders={"name": entry.title},
            errors=errors,
        )

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """New host, ports or token for the same bridge."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            status = await self._test(user_input, errors)
            if status is not None:
                uid = _unique_id(status, entry.unique_id or f"{user_input[CONF_HOST]}:{user_input[CONF_PORT]}")
                await self.async_set_unique_id(uid)
                self._abort_if_unique_id_mismatch(reason="wrong_bridge")
                # The form is the whole connection (a cleared token is removed); the add-on's slug stays.
                kept = {k: v for k, v in entry.data.items() if k == CONF_ADDON_SLUG}
                return self.async_update_reload_and_abort(entry, data={**kept, **user_input})
        return self.async_show_form(
            step_id="reconfigure", data_schema=_user_schema(user_input or dict(entry.data)), errors=errors
        )


class DoorbellBridgeOptionsFlow(OptionsFlowWithReload):
    """How late a ring may reach Home Assistant and still fire (saving reloads the entry once)."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The only step."""
        if user_input is not None:
            return self.async_create_entry(data=user_input)
        current = self.config_entry.options.get(CONF_RING_WINDOW, DEFAULT_RING_WINDOW)
        schema = vol.Schema(
            {
                vol.Required(CONF_RING_WINDOW, default=current): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=1, max=300, step=1, unit_of_measurement="s", mode=selector.NumberSelectorMode.BOX
                    )
                )
            }
        )
        return self.async_show_form(step_id="init", data_schema=schema)
