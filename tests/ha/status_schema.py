"""The bridge's status body checked against the schema it publishes (docs/status.schema.json,
generated from the bridge's status types), so fixtures cannot drift from what a bridge sends."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "status.schema.json").read_text())
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "status.json").read_text())


def schema_errors(body: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


def fixture_status(**over: Any) -> dict[str, Any]:
    """A whole status body as a current bridge sends it, with top-level keys replaced."""
    body = copy.deepcopy(FIXTURE)
    body.update(over)
    return body
