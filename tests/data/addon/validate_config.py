"""Validates an add-on config (as JSON on stdin) against the add-on linter's JSON schema.

Usage: python3 validate_config.py SCHEMA.json < config.json
Prints one line per problem and exits 1 when there is any; exits 3 when the jsonschema
package is missing (the caller says how to install it).
"""

import json
import sys

try:
    from jsonschema import Draft7Validator
except ImportError:
    print("the Python package jsonschema is not installed", file=sys.stderr)
    sys.exit(3)


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as fp:
        schema = json.load(fp)
    config = json.load(sys.stdin)
    Draft7Validator.check_schema(schema)
    problems = sorted(
        f"{'/'.join(str(p) for p in err.absolute_path) or '(top level)'}: {err.message}"
        for err in Draft7Validator(schema).iter_errors(config)
    )
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
