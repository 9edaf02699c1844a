"""The rules hassfest would check on the manifest, strings and translations (hassfest needs the
network, so the rules are checked here), plus the brand icon and the blueprint."""

from __future__ import annotations

import ast
import json
from pathlib import Path
import re
import struct

from homeassistant.components.automation.config import AUTOMATION_BLUEPRINT_SCHEMA
from homeassistant.components.blueprint.models import Blueprint, BlueprintInputs
from homeassistant.util.yaml import load_yaml_dict

from custom_components.doorbell_bridge.config_flow import _user_schema
from custom_components.doorbell_bridge.const import DOMAIN

from conftest import ROOT

COMPONENT = ROOT / "ha_integration" / "custom_components" / DOMAIN
BLUEPRINT = ROOT / "ha_integration" / "blueprints" / "automation" / DOMAIN / "ring_notification.yaml"

IOT_CLASSES = {"assumed_state", "cloud_polling", "cloud_push", "local_polling", "local_push", "calculated"}
INTEGRATION_TYPES = {"device", "entity", "hardware", "helper", "hub", "service", "system", "virtual"}
TRANSLATION_TOP = {
    "title", "config", "options", "entity", "exceptions", "services", "issues", "device_automation",
    "selector", "system_health", "device", "entity_component", "config_subentries", "conditions", "triggers",
}  # fmt: skip


def manifest() -> dict:
    return json.loads((COMPONENT / "manifest.json").read_text())


def strings() -> dict:
    return json.loads((COMPONENT / "strings.json").read_text())


def test_manifest_keys_and_order() -> None:
    m = manifest()
    keys = list(m)
    assert keys[:2] == ["domain", "name"], "domain, then name, first"
    assert keys[2:] == sorted(keys[2:]), "the other keys in alphabetical order"
    assert m["domain"] == DOMAIN == COMPONENT.name
    assert m["iot_class"] == "local_push" and m["iot_class"] in IOT_CLASSES
    assert m["integration_type"] == "device" and m["integration_type"] in INTEGRATION_TYPES
    assert m["config_flow"] is True and (COMPONENT / "config_flow.py").exists()
    # Custom integrations need a version (AwesomeVersion-compatible), documentation and codeowners.
    assert re.fullmatch(r"\d+\.\d+\.\d+", m["version"])
    assert m["documentation"].startswith("https://")
    assert isinstance(m["codeowners"], list)
    assert isinstance(m["requirements"], list) and isinstance(m["dependencies"], list)
    allowed = {
        "domain", "name", "after_dependencies", "codeowners", "config_flow", "dependencies", "documentation",
        "integration_type", "iot_class", "issue_tracker", "loggers", "quality_scale", "requirements", "version",
        "single_config_entry", "zeroconf", "ssdp", "dhcp", "usb", "homekit", "mqtt", "bluetooth", "import_executor",
    }  # fmt: skip
    assert set(m) <= allowed


def test_translations_match_strings() -> None:
    s = strings()
    en = json.loads((COMPONENT / "translations" / "en.json").read_text())
    assert en == s, "translations/en.json must be strings.json (custom integrations ship it)"
    assert set(s) <= TRANSLATION_TOP

    def walk(node, path=""):
        for k, v in node.items():
            assert re.fullmatch(r"[a-z0-9_]+", k), f"key {path}{k}: lowercase snake_case"
            if isinstance(v, dict):
                walk(v, f"{path}{k}.")
            else:
                assert isinstance(v, str) and v and v == v.strip(), f"{path}{k}: non-empty, trimmed"
                assert "[%key:" not in v, f"{path}{k}: references are for core integrations"

    walk(s)


def test_strings_cover_the_code() -> None:
    """Every step, field, error, abort reason, entity and exception the code uses has a string."""
    s = strings()
    src = (COMPONENT / "config_flow.py").read_text()
    steps = set(re.findall(r'step_id="([a-z_]+)"', src))
    assert steps - {"init"} == set(s["config"]["step"]) == {"hassio_confirm", "user", "reconfigure", "reauth_confirm"}
    assert set(s["options"]["step"]) == {"init"}
    fields = {str(k) for k in _user_schema({}).schema}
    for step in ("user", "reconfigure"):
        assert set(s["config"]["step"][step]["data"]) == fields
        assert set(s["config"]["step"][step]["data_description"]) == fields
    errors = set(re.findall(r'errors\["base"\] = "([a-z_]+)"', src))
    assert errors and errors <= set(s["config"]["error"])
    aborts = set(re.findall(r'reason="([a-z_]+)"', src)) | {
        "already_configured", "reconfigure_successful", "reauth_successful"
    }  # fmt: skip
    assert aborts <= set(s["config"]["abort"])
    # Placeholders in strings are given by the code.
    assert "{name}" in s["config"]["step"]["hassio_confirm"]["description"]

    used: dict[str, set[str]] = {}
    for py in COMPONENT.glob("*.py"):
        tree = ast.parse(py.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "translation_key" and isinstance(node.value, ast.Constant):
                used.setdefault(py.stem, set()).add(node.value.value)
            if (
                isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "_attr_translation_key" for t in node.targets)
                and isinstance(node.value, ast.Constant)
            ):
                used.setdefault(py.stem, set()).add(node.value.value)
    for platform in ("binary_sensor", "sensor", "event", "image"):
        assert used[platform] <= set(s["entity"][platform]) | set(s["exceptions"]), platform
    assert {"sub_stream"} <= set(s["entity"]["camera"])
    for module in ("button", "coordinator"):
        assert used[module] <= set(s["exceptions"]), module
    assert "snapshot_failed" in s["exceptions"]
    # Every repair has a title and steps; every placeholder in them is given by issues.py.
    from custom_components.doorbell_bridge import issues

    assert set(s["issues"]) == set(issues.ALL_ISSUES)
    for key, text in s["issues"].items():
        assert set(text) == {"title", "description"}
        assert "{name}" in text["title"], key
    # The stream state sensor's states are all translated, and have icons.
    from custom_components.doorbell_bridge.sensor import STREAM_STATES

    assert set(s["entity"]["sensor"]["stream_state"]["state"]) == set(STREAM_STATES)
    icons = json.loads((COMPONENT / "icons.json").read_text())
    assert set(icons["entity"]["sensor"]["stream_state"]["state"]) == set(STREAM_STATES)
    for platform, keys in icons["entity"].items():
        assert set(keys) <= set(s["entity"][platform]), platform
    assert "ring" in s["entity"]["event"]["ring"]["state_attributes"]["event_type"]["state"]


def test_brand_icon() -> None:
    data = (COMPONENT / "brand" / "icon.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (256, 256)


def test_blueprint_is_valid() -> None:
    bp = Blueprint(load_yaml_dict(str(BLUEPRINT)), expected_domain="automation", schema=AUTOMATION_BLUEPRINT_SCHEMA)
    assert bp.domain == "automation"
    assert {"doorbell_event", "camera", "notify_device"} <= set(bp.inputs)
    # Every !input resolves once the required inputs are given.
    use = {"path": BLUEPRINT.name, "input": {"doorbell_event": "event.doorbell_ring", "camera": "camera.doorbell",
                                            "notify_device": "0123456789abcdef"}}  # fmt: skip
    inputs = BlueprintInputs(bp, {"use_blueprint": use})
    inputs.validate()
    config = inputs.async_substitute()
    assert config["triggers"][0]["entity_id"] == "event.doorbell_ring"
    assert config["actions"][0]["device_id"] == "0123456789abcdef"
    text = Path(BLUEPRINT).read_text()
    assert "picture" in text and "actions" in text


# Every rule of the integration quality scale (bronze to platinum), as listed in the developer docs.
RULES = {
    "bronze": {
        "action-setup", "appropriate-polling", "brands", "common-modules", "config-flow-test-coverage", "config-flow",
        "dependency-transparency", "docs-actions", "docs-high-level-description", "docs-installation-instructions",
        "docs-removal-instructions", "entity-event-setup", "entity-unique-id", "has-entity-name", "runtime-data",
        "test-before-configure", "test-before-setup", "unique-config-entry",
    },
    "silver": {
        "action-exceptions", "config-entry-unloading", "docs-configuration-parameters", "docs-installation-parameters",
        "entity-unavailable", "integration-owner", "log-when-unavailable", "parallel-updates", "reauthentication-flow",
        "test-coverage",
    },
    "gold": {
        "devices", "diagnostics", "discovery-update-info", "discovery", "docs-data-update", "docs-examples",
        "docs-known-limitations", "docs-supported-devices", "docs-supported-functions", "docs-troubleshooting",
        "docs-use-cases", "dynamic-devices", "entity-category", "entity-device-class", "entity-disabled-by-default",
        "entity-translations", "exception-translations", "icon-translations", "reconfiguration-flow", "repair-issues",
        "stale-devices",
    },
    "platinum": {"async-dependency", "inject-websession", "strict-typing"},
}  # fmt: skip


def test_quality_scale_gold() -> None:
    """Every rule is listed; bronze, silver and gold ones are done or exempt (exempt with a reason)."""
    rules = load_yaml_dict(str(COMPONENT / "quality_scale.yaml"))["rules"]
    everything = set().union(*RULES.values())
    assert set(rules) == everything
    for name, value in rules.items():
        status = value if isinstance(value, str) else value["status"]
        assert status in {"done", "exempt", "todo"}, name
        if status == "exempt":
            assert isinstance(value, dict) and value.get("comment"), f"{name}: exempt needs a reason"
        if name in RULES["bronze"] | RULES["silver"] | RULES["gold"]:
            assert status in {"done", "exempt"}, name
    assert manifest()["codeowners"], "integration-owner"
