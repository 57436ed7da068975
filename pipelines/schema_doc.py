"""The source mapping's JSON Schema as committed text (docs/mapping.schema.json), generated from the typed models."""

from __future__ import annotations

import json

from features.mapping_schema import json_schema


def schema_text() -> str:
    """Stable text: sorted keys and a trailing newline, so a stale committed copy shows as a diff."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
