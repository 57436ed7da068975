"""The typed mapping, its committed JSON Schema, its reference page and its worked examples stay in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from features.mapping import load_mapping
from features.mapping_schema import json_schema
from pipelines.schema_doc import END, START, reference_markdown, schema_text
from tests.conftest import ROOT

DOCS = ROOT / "docs"
MAPPINGS = sorted((ROOT / "sources").glob("**/*.yaml"))


def test_the_committed_json_schema_is_the_one_the_code_generates() -> None:
    committed = (DOCS / "mapping.schema.json").read_text()
    assert committed == schema_text(), "stale: run `leadlift mapping-schema --out docs/mapping.schema.json`"


def test_the_reference_page_lists_every_key_of_the_schema() -> None:
    page = (DOCS / "mapping.md").read_text()
    section = page[page.index(START):page.index(END) + len(END)]
    assert section + "\n" == reference_markdown(), "stale: run `leadlift mapping-schema --docs docs/mapping.md`"
    schema = json_schema()
    for name, model in {**schema["$defs"], "SourceMapping": schema}.items():
        documented = re.findall(r"^\| `([^`]+)` \|", section.split(f"### {name}\n", 1)[1].split("###", 1)[0], re.M)
        assert documented == list(model.get("properties", {})), name


def test_the_reference_page_has_the_worked_examples_the_issue_lists() -> None:
    page = (DOCS / "mapping.md").read_text()
    for title in ("events whose page views are typed by URL", "two activity tables, one joined to a lookup table",
                  "a target taken from a won-date column", "outcomes from a won-deals table joined by id",
                  "a derived email-domain kind", "the decision time and horizon", "spaces or slashes"):
        assert title.lower() in page.lower(), title
    assert "value: CallDurationInSeconds" in page and "params:\n  base:" in page


@pytest.mark.parametrize("path", MAPPINGS, ids=lambda p: p.name)
def test_every_mapping_and_worked_example_loads(path: Path) -> None:
    loaded = load_mapping(yaml.safe_load(path.read_text()), origin=str(path))
    assert loaded["name"]


def test_there_is_a_worked_example_for_each_new_capability() -> None:
    text = "\n".join(p.read_text() for p in (ROOT / "sources" / "examples").glob("*.yaml"))
    for capability in ("derive:", "filter:", "join:", "event_types:", "groups:", "value: CallDurationInSeconds",
                       "timezone: America/New_York", "{null: Cold}", "patterns:", "converted_at", "base:",
                       "leads_column"):
        assert capability in text, capability
