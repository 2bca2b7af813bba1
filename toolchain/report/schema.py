"""Validate a report view against schema.json (the contract of OUT/report/report.json)."""

import json
from functools import lru_cache
from pathlib import Path

from ..util.errors import NtcError

SCHEMA_PATH = Path(__file__).with_name("schema.json")


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate(view: dict) -> None:
    """Raise NtcError naming the first violation when `view` does not follow schema.json."""
    import jsonschema

    try:
        jsonschema.validate(view, schema())
    except jsonschema.ValidationError as e:
        where = "/".join(map(str, e.absolute_path)) or "(top level)"
        raise NtcError(f"report does not follow its schema at {where}: {e.message[:300]}") from None
