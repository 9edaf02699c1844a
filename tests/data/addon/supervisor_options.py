"""The Supervisor's checks of an app's options and backup exclusions, reproduced for the tests.

Reads {"schema": ..., "options": ...} (and optionally "backup_exclude" and "paths") as JSON on
stdin. Options are validated the way the Supervisor's AddonOptions does before it saves them or
starts the app: each value by the type string of its schema entry (voluptuous, as there), a
missing key that is not optional (`?`) is an error. Each of "paths" (absolute, as the Supervisor
sees the app's data files) is reported as excluded when a backup_exclude pattern matches it with
PurePath.match, as the Supervisor's app backup does.

Prints a JSON object {"error": null | "...", "excluded": [...]}; exits 3 when voluptuous is
missing (scripts/test installs it).
"""

import json
import re
import sys
from pathlib import PurePosixPath

try:
    import voluptuous as vol
except ImportError:
    print("the Python package voluptuous is not installed", file=sys.stderr)
    sys.exit(3)

# The type strings the Supervisor accepts (supervisor/addons/options.py); devices are left out.
ELEMENT = re.compile(
    r"^(?:|bool|email|url|port"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>\d+)?,(?P<i_max>\d+)?\))?"
    r"|float(?:\((?P<f_min>[\d\.]+)?,(?P<f_max>[\d\.]+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")\??$"
)


def single(typ, value, key):
    if value is None:
        raise vol.Invalid(f"Missing required option '{key}'")
    m = ELEMENT.match(typ)
    if not m:
        raise vol.Invalid(f"Unknown type '{typ}'")
    rng = {}
    for g in ("i_min", "i_max", "f_min", "f_max", "s_min", "s_max", "p_min", "p_max"):
        if m.group(g):
            rng[g[2:]] = float(m.group(g))
    if typ.startswith(("str", "password")):
        return vol.All(str(value), vol.Range(**rng))(value)
    if typ.startswith("int"):
        return vol.All(vol.Coerce(int), vol.Range(**rng))(value)
    if typ.startswith("float"):
        return vol.All(vol.Coerce(float), vol.Range(**rng))(value)
    if typ.startswith("bool"):
        return vol.Boolean()(value)
    if typ.startswith("email"):
        return vol.Email()(value)
    if typ.startswith("url"):
        return vol.Url()(value)
    if typ.startswith("port"):
        return vol.All(vol.Coerce(int), vol.Range(min=1, max=65535))(value)
    if typ.startswith("match"):
        return vol.Match(m.group("match"))(str(value))
    if typ.startswith("list"):
        return vol.In(m.group("list").split("|"))(str(value))
    raise vol.Invalid(f"Fatal error for option '{key}' with type '{typ}'")


def element(typ, value, key):
    if isinstance(typ, list):
        if not isinstance(value, list):
            raise vol.Invalid(f"Invalid list for option '{key}'")
        return [element(typ[0], v, key) for v in value]
    if isinstance(typ, dict):
        if not isinstance(value, dict):
            raise vol.Invalid(f"Invalid dict for option '{key}'")
        out = {k: element(typ[k], v, k) for k, v in value.items() if k in typ}
        missing(typ, out, key)
        return out
    return single(typ, value, key)


def missing(schema, have, root):
    for key in sorted(set(schema) - set(have)):
        typ = schema[key]
        if isinstance(typ, list) and typ:
            typ = typ[0]
        if isinstance(typ, str) and typ.endswith("?"):
            continue
        raise vol.Invalid(f"Missing option '{key}' in {root}")


def main() -> int:
    req = json.load(sys.stdin)
    error = None
    try:
        element(req["schema"], req["options"], "root")
    except vol.Invalid as e:
        error = str(e) or repr(e)
    excluded = [
        p for p in req.get("paths", []) if any(PurePosixPath(p).match(x) for x in req.get("backup_exclude", []))
    ]
    print(json.dumps({"error": error, "excluded": excluded}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
