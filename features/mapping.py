"""Source mappings: bring a real export (any file layout, any column names) into the canonical tables by configuration.

A mapping is a small YAML file (sources/*.yaml) that `pipelines` reads. Its keys are the typed models of
`features.mapping_schema` (unknown keys are refused with a "did you mean"); docs/mapping.md is the reference, with
worked examples in sources/examples/. This module validates the parsed dict (`load_mapping`: clear errors for
unknown keys, impossible combinations and note templates that name nothing), says how to read each file
(`sections`, `read_spec`), and applies the mapping to frames already read (`apply_mapping`). It does no I/O.

Every table section is applied in one fixed order, at training and scoring time alike:

    read -> rename -> null_values (and empty text) -> join (lookup tables) -> derive (SQL expressions)
         -> filter (SQL predicate; skipped rows are counted, never quarantined) -> value_maps -> roles

then `features.contract` checks the rows. `events:` is one source or a list of sources, each with its own steps,
unioned into the canonical events table. Nothing in a mapping runs Python: `derive` and `filter` are SQL read by
`polars.sql_expr`. Pseudo-times (`order_by`, `row_order`) are spread evenly over [start, end] in the order given, so
everything measured per unit of time downstream depends on that stated span, not on real dates.
"""

from __future__ import annotations

import codecs
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import PurePath
from typing import Any

import polars as pl
from pydantic import ValidationError

from features.contract import (
    GAP_PREFIX,
    RAW_PREFIX,
    REASON,
    REASON_COLUMN,
    ROW,
    SOURCE,
    BadInput,
    TimeFormat,
    check_layout,
    nonexistent_local_time,
    numeric_expr,
    origin_column,
    require_columns,
)
from features.contract import timestamp_expr as _timestamp_expr
from features.mapping_schema import SourceMapping, unknown_key, validation_message
from features.schema import (
    CONVERTED,
    CONVERTED_AT,
    CREATED_AT,
    EVENT_TYPE,
    EVENT_TYPES,
    EVENT_VALUE,
    GROUPS,
    LEAD_ID,
    LEGACY_SCORE,
    OCCURRED_AT,
    OTHER_EVENT,
    TS,
    utc,
)

FORMATS = ("csv", "parquet")
PARSERS = ("seniority",)
DUPLICATES = ("quarantine", "earliest")
_EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
SCHEMA_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(), "str": pl.String(), "text": pl.String(),
    "int": pl.Int64(), "int64": pl.Int64(), "integer": pl.Int64(),
    "float": pl.Float64(), "float64": pl.Float64(), "double": pl.Float64(), "number": pl.Float64(),
    "bool": pl.Boolean(), "boolean": pl.Boolean(),
    "date": pl.Date(), "datetime": pl.Datetime("us"),
}  # fmt: skip
#: Names a declared column may not take: they belong to the canonical tables.
RESERVED = frozenset({LEAD_ID, CREATED_AT, LEGACY_SCORE, CONVERTED, CONVERTED_AT, OCCURRED_AT, EVENT_TYPE, "t0",
                      "split", "label", "scope", ROW, REASON, REASON_COLUMN})
#: Columns the reader and the mapping add to every table (row number, a reason set before the contract).
_INTERNAL = (ROW, REASON, REASON_COLUMN)
UNKNOWN_JOIN_KEY = "no lead with this join key"
AMBIGUOUS_JOIN_KEY = "join key matches several leads"
REPEAT_OUTCOME = "repeat outcome for the lead (its earliest win, else its earliest, kept)"
TARGET_UNRECOGNISED = "unrecognised target value"
#: The table key of a single events source; a source of a list is "events:<name>".
EVENTS = "events"
SENIORITY_LEVELS = ("executive", "vp", "director", "manager", "student", "individual_contributor")
_NAME = re.compile(r"^[A-Za-z_]\w*$")
_BRACES = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDER = re.compile(r"^(\w+)(?:\|[^}|]+(?:\|[^}]+)?)?$")
_CONDITION_NAME = re.compile(r"^\s*(\w+)\s*(?:>=|<=|==|!=|>|<)")
#: Names a note template may use besides columns and features: values `models.reasons.derived_values` adds.
_TEMPLATE_EXTRAS = re.compile(r"^(value|seniority_label|last_high_intent_action|(research|demo_trial)_\d+d)$")


class MappingError(BadInput):
    """The source mapping itself is wrong (an unknown key, a missing group, a contradiction): exit 2."""


@dataclass(frozen=True)
class ReadSpec:
    """How `pipelines` reads one table's file."""

    table: str
    path: str
    format: str
    #: None: sniffed from the file's first lines (pipelines.ingest.read_table).
    separator: str | None = None
    quote: str | None = '"'
    #: None: UTF-8 when the whole file decodes as UTF-8, else Windows-1252 (pipelines.ingest.read_table).
    encoding: str | None = None
    null_values: tuple[str, ...] = ()
    schema_overrides: dict[str, pl.DataType] | None = None
    infer_schema_length: int | None = None


@dataclass(frozen=True)
class Mapped:
    """A mapping applied: canonical-named frames for the contract, and what the contract and the report need."""

    leads: pl.LazyFrame
    events: pl.LazyFrame | None
    #: None only for a canonical check without outcomes (`leadlift validate` given no outcomes file).
    outcomes: pl.LazyFrame | None
    source: dict[str, Any]
    #: Role columns of leads for `contract.annotate_leads`.
    categorical: list[str]
    numeric: dict[str, dict[str, Any]]
    legacy_score: bool
    passthrough: list[str]
    time_formats: dict[str, TimeFormat]
    #: table -> canonical column -> the source column it came from (for messages that point into the file).
    origins: dict[str, dict[str, str]]
    #: table -> {"leaky": [...], "undeclared": [...], "used_for_roles": [...]}.
    dropped: dict[str, dict[str, list[str]]]
    #: section key -> a one-row frame counting the rows its `filter` skipped (sections with a filter only).
    skipped: dict[str, pl.LazyFrame] = field(default_factory=dict)
    #: The event vocabulary: built-in types, then the mapping's own (unknown raw types become "other").
    event_types: tuple[str, ...] = EVENT_TYPES


# ---------------------------------------------------------------- load and validate


def load_mapping(raw: Mapping[str, Any] | None, *, origin: str = "source mapping",
                 require_target: bool = True) -> dict[str, Any]:
    """Validate a parsed mapping; return it with defaults filled. Raises MappingError naming the key and the fix.

    `require_target=False` loads a mapping for scoring new leads, which have no outcome yet.
    """
    if not isinstance(raw, Mapping):
        raise MappingError(origin, "a source mapping must be a YAML mapping with at least `name` and `leads`")
    raw = _yaml_on_key(raw)
    problem = unknown_key(raw)
    if problem:
        raise MappingError(origin, problem)
    for key in ("name", "leads"):
        if key not in raw:
            raise MappingError(origin, f"missing required key {key!r}")
    try:
        SourceMapping.model_validate(raw)
    except ValidationError as e:
        raise MappingError(origin, validation_message(e)) from None
    m: dict[str, Any] = {"name": str(raw["name"]),
                         "null_values": _str_list(raw.get("null_values"), "null_values", origin)}
    m["snapshot_at"] = _instant(raw["snapshot_at"], "snapshot_at", origin) if raw.get("snapshot_at") else None
    m["groups"] = _groups(raw.get("groups"), origin)
    m["event_types"] = _event_types(raw.get("event_types"), m["groups"], origin)
    m["leads"] = _load_leads(_section(raw, "leads", origin), m, origin)
    m["events"] = _load_events(raw["events"], m, origin) if raw.get("events") else None
    m["outcomes"] = _load_outcomes(_section(raw, "outcomes", origin), m, origin) if raw.get("outcomes") else None
    truth = raw.get("truth")
    if isinstance(truth, Mapping):
        truth = truth.get("path")
    m["truth"] = str(truth) if truth else None
    if require_target and m["outcomes"] is None and m["leads"]["target"] is None:
        raise MappingError(origin, "no target: give `outcomes:` (a table) or `leads.target: {column, positive}`")
    if m["outcomes"] is not None and m["leads"]["target"] is not None:
        raise MappingError(origin, "give the target once: `outcomes:` or `leads.target`, not both")
    if m["events"] is not None and m["leads"]["lead_id"].get("row_number"):
        raise MappingError(origin, "leads.lead_id is a row number, so no events table can refer to the leads")
    outcomes = m["outcomes"]
    if outcomes is not None and outcomes["lead_id"].get("row_number"):
        raise MappingError(origin, "outcomes.lead_id cannot be a row number; use a column or `join`")
    if outcomes is not None and m["leads"]["lead_id"].get("row_number") and not outcomes.get("join"):
        raise MappingError(origin, "leads.lead_id is a row number: the outcomes need `join` on a leads column")
    valued = [s["name"] for s in m["events"] or [] if s["value"]]
    if valued and not any(t.get("value") for t in m["event_types"].values()):
        raise MappingError(origin, f"event source {valued[0]!r} gives a `value` column, but no declared event type "
                                   "says what it means: add `value: {description, unit}` to the types it belongs to")
    _check_templates(m, origin)
    return m


def _yaml_on_key(raw: Mapping[str, Any]) -> dict[str, Any]:
    """YAML 1.1 reads a bare `on:` key as the boolean true; a lookup join's `on:` means the word."""
    def fix(join: Any) -> Any:
        if isinstance(join, list):
            return [fix(j) for j in join]
        if isinstance(join, Mapping) and True in join and "on" not in join:
            return {("on" if k is True else k): v for k, v in join.items()}
        return join

    out = dict(raw)
    for key in ("leads", "events"):
        sections_ = out.get(key)
        items = sections_ if isinstance(sections_, list) else [sections_]
        fixed = [{**s, "join": fix(s["join"])} if isinstance(s, Mapping) and "join" in s else s for s in items]
        out[key] = fixed if isinstance(sections_, list) else fixed[0]
    return out


def event_vocabulary(mapping_or_source: Mapping[str, Any]) -> tuple[str, ...]:
    """Built-in event types followed by the mapping's own (from a loaded mapping or a source.json)."""
    return (*EVENT_TYPES, *(mapping_or_source.get("event_types") or {}))


def sections(mapping: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every file the mapping reads, by table key: leads, events (or events:<name> per source), outcomes, and each
    lookup table as <key>.join<n>."""
    out: dict[str, dict[str, Any]] = {}
    for spec in [mapping.get("leads"), *(mapping.get("events") or []), mapping.get("outcomes")]:
        if spec is None:
            continue
        out[spec["key"]] = spec
        for lookup in spec.get("join_tables") or []:
            out[lookup["key"]] = lookup
    return out


def read_spec(mapping: Mapping[str, Any], table: str, *, path: str | None = None) -> ReadSpec:
    """How to read the file of section `table` (a key of `sections`); `path` overrides the mapping's."""
    t = sections(mapping)[table]
    csv = t.get("csv") or {}
    return ReadSpec(
        table=table,
        path=str(path or t["path"]),
        format=t["format"] if path is None or t.get("format_given") else _format_of(str(path), None, table),
        separator=csv.get("separator"),
        quote=csv.get("quote", '"'),
        encoding=csv.get("encoding"),
        null_values=tuple(csv.get("null_values", ())),
        schema_overrides={k: SCHEMA_TYPES[v] for k, v in (t.get("schema") or {}).items()} or None,
        infer_schema_length=csv.get("infer_schema_length"),
    )


def canonical_mapping(*, leads: Sequence[str], events: bool = False, outcomes: Sequence[str] | None = None,
                      name: str = "canonical") -> dict[str, Any]:
    """The mapping of files already in canonical form (what `leadlift validate` without --source and `leadlift score`
    read): legacy_score and the usual PII columns keep their roles; every other leads column is carried through
    unchanged. The paths are placeholders: the caller passes the real files to `read_spec(..., path=...)`."""
    pii = [c for c in ("name", "email", "phone") if c in leads]
    keep = [c for c in leads if c not in {LEAD_ID, CREATED_AT, LEGACY_SCORE, ROW, *pii}]
    raw: dict[str, Any] = {
        "name": name,
        "leads": {"path": "leads.parquet", "created_at": {"column": CREATED_AT}, "pii": pii, "keep": keep,
                  "legacy_score": LEGACY_SCORE if LEGACY_SCORE in leads else None},
        "outcomes": {"path": "outcomes.parquet"},
    }
    if events:
        raw["events"] = {"path": "events.parquet", "occurred_at": {"column": OCCURRED_AT}}
    if outcomes is not None and CONVERTED_AT in outcomes:
        raw["outcomes"]["converted_at"] = {"column": CONVERTED_AT}
    m = load_mapping(raw, origin="canonical")
    if outcomes is None:
        m["outcomes"] = None
    # A canonical CSV is read as text: the contract, not a guess at types from the first rows, decides what is bad,
    # and an id such as "00123" stays "00123".
    for section in sections(m).values():
        section["csv"] = {**(section.get("csv") or {}), "infer_schema_length": 0}
    return m


# ---------------------------------------------------------------- apply


def apply_mapping(
    mapping: Mapping[str, Any],
    tables: Mapping[str, pl.LazyFrame | pl.DataFrame],
    *,
    files: Mapping[str, str] | None = None,
) -> Mapped:
    """Canonical-named frames (not yet typed or checked) from the frames read per `read_spec`.

    `tables` holds a frame per key of `sections(mapping)` ("leads", "events" or "events:<name>", "outcomes", and the
    lookup tables). Each gets ROW, its 1-based data row, before anything else, so row numbers in messages and the
    quarantine point into the file.
    """
    files = dict(files or {})
    for key, spec in sections(mapping).items():
        files.setdefault(key, str(spec["path"]))
    skipped: dict[str, pl.LazyFrame] = {}
    spec = mapping["leads"]
    leads = _prepare(tables["leads"], spec, mapping, files["leads"], tables, files, skipped)
    present = leads.collect_schema().names()
    lid_expr, lid_origin, lid_cols = _lead_id(spec["lead_id"], present, files["leads"])
    created, created_origin, created_cols, time_basis = _created_at(spec["created_at"], present, files["leads"])
    feature_cols = [*spec["categorical"], *spec["numeric"]]
    legacy = spec["legacy_score"]
    passthrough = _unique([*spec["pii"], *spec["keep"], *spec["after_outcome"]])
    passthrough = [c for c in passthrough if c not in feature_cols]
    not_in_file: list[str] = []
    if spec.get("passthrough_if_present"):
        # Scoring new leads: PII, keep and after_outcome columns and the legacy score are never model inputs, so a
        # batch without them (PII stripped before export) is scored; they are listed in the report, not required.
        not_in_file = [c for c in [*passthrough, *([legacy] if legacy else [])] if c not in present]
        passthrough = [c for c in passthrough if c in present]
        legacy = legacy if legacy in present else None
    target = spec["target"]
    join_col = ((mapping.get("outcomes") or {}).get("join") or {}).get("leads_column")
    needed = {
        "a categorical feature": list(spec["categorical"]), "a numeric feature": list(spec["numeric"]),
        "the legacy score": [legacy] if legacy else [], "a PII, keep or after_outcome column": passthrough,
        "the target": [target["column"]] if target else [],
        "the target's converted_at": [target["converted_at"]["column"]] if target and target["converted_at"] else [],
        "the outcomes join key": [join_col] if join_col else [],
    }  # fmt: skip
    for what, cols in needed.items():
        _require_derived(present, cols, spec.get("derive") or {}, file=files["leads"], what=what)
        require_columns(present, cols, file=files["leads"], what=what)
    base = leads.with_columns(lid_expr.alias(LEAD_ID))
    leads_out = base.select(
        pl.col(ROW),
        *_prior_reason(present),
        pl.col(LEAD_ID),
        created.alias(CREATED_AT),
        *[pl.col(c) for c in feature_cols],
        *([pl.col(legacy).alias(LEGACY_SCORE)] if legacy else []),
        *[pl.col(c) for c in passthrough],
    )
    used = set(lid_cols) | set(created_cols) | set(feature_cols) | set(passthrough) | {legacy} - {None}
    used |= {target["column"]} if target else set()
    used |= {target["converted_at"]["column"]} if target and target["converted_at"] else set()
    used |= {join_col} if join_col else set()
    roles_only = set(lid_cols) | set(created_cols) | (used - set(feature_cols) - set(passthrough) - {legacy})
    leaky_present = [c for c in spec["drop_leaky"] if c in present]
    origins = {"leads": {LEAD_ID: lid_origin, CREATED_AT: created_origin, **({LEGACY_SCORE: legacy} if legacy else {})}}
    dropped = {"leads": {
        "leaky": leaky_present,
        "leaky_not_in_file": [c for c in spec["drop_leaky"] if c not in present],
        "undeclared": [c for c in present if c not in _INTERNAL and c not in used and c not in spec["drop_leaky"]],
        "used_for_roles": sorted(c for c in roles_only if c not in feature_cols + passthrough),
        **({"not_in_file": not_in_file} if not_in_file else {}),
    }}  # fmt: skip
    time_formats = {CREATED_AT: spec["created_at"]["time_format"]} if spec["created_at"].get("column") else {}

    vocabulary = event_vocabulary(mapping)
    events = None
    if mapping.get("events") is not None:
        events, origins["events"], dropped["events"] = _apply_events(mapping, tables, files, skipped)
        time_formats[OCCURRED_AT] = TimeFormat()  # parsed per source by the mapping
    outcomes = None
    outcome_format: TimeFormat | None = None
    if target is not None:
        outcomes, origins["outcomes"], outcome_format = _outcomes_from_target(base, target, lid_origin, files["leads"])
        dropped["outcomes"] = {"leaky": [], "undeclared": []}
    elif mapping.get("outcomes") is not None:
        outcomes, origins["outcomes"], dropped["outcomes"], outcome_format = _apply_outcomes(
            mapping["outcomes"], mapping, files["outcomes"], base, tables, files, skipped)
    if outcome_format is not None:
        time_formats[CONVERTED_AT] = outcome_format
    has_times = bool((target and target["converted_at"]) or (mapping.get("outcomes") or {}).get("converted_at"))
    source = describe(mapping, has_outcome_times=has_times, time_basis=time_basis)
    return Mapped(
        leads=leads_out, events=events, outcomes=outcomes, source=source,
        categorical=list(spec["categorical"]), numeric={c: dict(v) for c, v in spec["numeric"].items()},
        legacy_score=bool(legacy), passthrough=passthrough, time_formats=time_formats, origins=origins,
        dropped=dropped, skipped=skipped, event_types=vocabulary,
    )  # fmt: skip


def describe(mapping: Mapping[str, Any], *, has_outcome_times: bool, time_basis: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved source description written to data/interim/source.json (snapshot_at filled by `finalize`).

    The mapping's own event types and groups appear only when it declares some, so a source without them describes
    itself exactly as before they existed."""
    spec = mapping["leads"]
    out: dict[str, Any] = {
        "name": mapping["name"],
        "categorical": {c: _meta(v) for c, v in spec["categorical"].items()},
        "numeric": {c: _meta(v) for c, v in spec["numeric"].items()},
        "pii": list(spec["pii"]),
        "notes_allowed": list(spec["notes_allowed"]),
        "who": list(spec["who"]),
        "what_happened": list(spec["what_happened"]),
        "after_outcome": list(spec["after_outcome"]),
        "dropped_leaky": list(spec["drop_leaky"]),
        "keep": list(spec["keep"]),
        "legacy_score": bool(spec["legacy_score"]),
        "has_events": mapping.get("events") is not None,
        "has_outcome_times": has_outcome_times,
        "snapshot_at": _iso(mapping["snapshot_at"]) if mapping.get("snapshot_at") else None,
        "truth": mapping.get("truth"),
        "time_basis": dict(time_basis),
    }
    if mapping.get("event_types"):
        out["event_types"] = {k: _meta(v) for k, v in mapping["event_types"].items()}
    if mapping.get("groups"):
        out["groups"] = {k: _meta(v) for k, v in mapping["groups"].items()}
    return out


def finalize(source: Mapping[str, Any], *, newest: datetime | None) -> dict[str, Any]:
    """source.json with snapshot_at resolved: the mapping's value, else the newest clean timestamp seen."""
    out = dict(source)
    if out.get("snapshot_at") is None:
        out["snapshot_at"] = _iso(newest) if newest is not None else None
    return out


# ---------------------------------------------------------------- per-table loaders


def _load_table(raw: Mapping[str, Any], table: str, key: str, mapping: Mapping[str, Any],
                origin: str) -> dict[str, Any]:
    if not raw.get("path"):
        raise MappingError(origin, f"{table}.path is required")
    t: dict[str, Any] = {"key": key, "path": str(raw["path"])}
    t.update(_read_options(raw, table, origin))
    t["rename"] = {str(k): str(v) for k, v in (raw.get("rename") or {}).items()}
    t["null_values"] = _str_list(raw.get("null_values"), f"{table}.null_values", origin)
    t["empty_is_missing"] = bool(raw.get("empty_is_missing", True))
    joins = raw.get("join") if table != "outcomes" else None
    joins = [joins] if isinstance(joins, Mapping) else list(joins or [])
    t["join_tables"] = [_lookup(j, f"{table}.join", f"{key}.join{i + 1}", origin) for i, j in enumerate(joins)]
    t["derive"] = {str(k): _sql(str(v), f"{table}.derive.{k}", origin) for k, v in (raw.get("derive") or {}).items()}
    for col in t["derive"]:
        if col in RESERVED:
            raise MappingError(origin, f"{table}.derive.{col}: {col!r} is a name of the canonical tables; pick another")
    t["filter"] = _sql(str(raw["filter"]), f"{table}.filter", origin) if raw.get("filter") else None
    t["value_maps"] = {}
    nulls = {*mapping.get("null_values", []), *t["null_values"]}
    for col, vm in (raw.get("value_maps") or {}).items():
        where = f"{table}.value_maps.{col}"
        if not isinstance(vm, Mapping):
            raise MappingError(origin, f"{where} must map old values to new ones (null = missing)")
        for k in vm:
            if k == "" and t["empty_is_missing"]:
                raise MappingError(origin, f"{where}: the key \"\" can never match, because empty fields are read as "
                                           "missing; map missing values with the key `null` (e.g. null: Cold)")
            if isinstance(k, str) and k in nulls:
                raise MappingError(origin, f"{where}: the key {k!r} can never match, because null_values turns it "
                                           "into a missing value first; map missing values with the key `null`")
        t["value_maps"][str(col)] = dict(vm)
    return t


def _read_options(raw: Mapping[str, Any], table: str, origin: str) -> dict[str, Any]:
    """format, csv and schema of one file (a table or a lookup)."""
    t: dict[str, Any] = {"format": _format_of(str(raw["path"]), raw.get("format"), table, origin),
                         "format_given": raw.get("format") is not None}
    csv = dict(raw.get("csv") or {})
    if csv:
        if t["format"] != "csv":
            raise MappingError(origin, f"{table}.csv options given, but the file is {t['format']}")
        if "encoding" in csv and csv["encoding"] not in ("utf8", "utf8-lossy"):
            try:
                codecs.lookup(str(csv["encoding"]))
            except LookupError:
                raise MappingError(origin, f"{table}.csv.encoding {csv['encoding']!r} is not an encoding") from None
        sep = csv.get("separator", ",")
        if not isinstance(sep, str) or len(sep) != 1:
            raise MappingError(origin, f"{table}.csv.separator must be one character, got {sep!r}")
        csv["null_values"] = _str_list(csv.get("null_values"), f"{table}.csv.null_values", origin)
        if csv.get("decimal", ".") == ",":
            if sep == "," and "separator" in csv:
                raise MappingError(origin, f"{table}.csv: decimal ',' needs another separator than ','")
            csv["infer_schema_length"] = 0  # numbers stay text until the decimal mark is read (_decimal_comma)
    t["csv"] = csv
    schema = dict(raw.get("schema") or {})
    for col, typ in schema.items():
        if str(typ).lower() not in SCHEMA_TYPES:
            raise MappingError(origin, f"{table}.schema.{col}: unknown type {typ!r}; known: {sorted(SCHEMA_TYPES)}")
        schema[col] = str(typ).lower()
    if schema and t["format"] != "csv":
        raise MappingError(origin, f"{table}.schema applies to CSV files; a Parquet file carries its own types")
    t["schema"] = schema
    return t


def _lookup(raw: Mapping[str, Any], where: str, key: str, origin: str) -> dict[str, Any]:
    t: dict[str, Any] = {"key": key, "path": str(raw["path"]), **_read_options(raw, where, origin)}
    if not raw.get("on"):
        raise MappingError(origin, f"{where}.on is required: {{column here: column of the lookup table}}")
    t["on"] = {str(k): str(v) for k, v in raw["on"].items()}
    t["columns"] = {str(k): str(v) for k, v in raw["columns"].items()} if raw.get("columns") else None
    return t


def _sql(expression: str, where: str, origin: str) -> str:
    """A derive expression or filter, parsed once at load so a typo fails before any file is read."""
    try:
        pl.sql_expr(expression)
    except Exception as e:  # noqa: BLE001 - polars raises several types for bad SQL
        raise MappingError(origin, f"{where}: cannot read the SQL expression {expression!r}: "
                                   f"{_first_line(e)}") from None
    return expression


def _load_leads(raw: Mapping[str, Any], mapping: Mapping[str, Any], origin: str) -> dict[str, Any]:
    t = _load_table(raw, "leads", "leads", mapping, origin)
    t["lead_id"] = _lead_id_spec(raw.get("lead_id", LEAD_ID), "leads", origin)
    t["created_at"] = _created_spec(raw.get("created_at", {"column": CREATED_AT}), origin)
    t["target"] = _target_spec(raw["target"], origin) if raw.get("target") else None
    groups = {*GROUPS, *mapping["groups"]}
    t["categorical"] = _features(raw.get("categorical"), "categorical", groups, origin)
    t["numeric"] = _features(raw.get("numeric"), "numeric", groups, origin)
    t["legacy_score"] = str(raw["legacy_score"]) if raw.get("legacy_score") else None
    for key in ("pii", "notes_allowed", "keep", "drop_leaky", "after_outcome"):
        t[key] = _str_list(raw.get(key), f"leads.{key}", origin)
    for key in ("who", "what_happened"):
        t[key] = _templates(raw[key], f"leads.{key}", origin) if raw.get(key) is not None else []
    _check_roles(t, origin)
    return t


def _load_events(raw: Any, mapping: Mapping[str, Any], origin: str) -> list[dict[str, Any]]:
    """One source (the single-mapping form, table key "events") or a list of them ("events:<name>")."""
    many = isinstance(raw, list)
    items = raw if many else [raw]
    if not items:
        raise MappingError(origin, "events: give one source or a list of sources")
    vocabulary = (*event_vocabulary(mapping), OTHER_EVENT)
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise MappingError(origin, f"events[{i}] must be a mapping (path, lead_id, occurred_at, event_type...)")
        name = str(item.get("name") or (EVENTS if not many else f"{EVENTS}_{i + 1}"))
        where = f"events[{name}]" if many else EVENTS
        t = _load_table(item, where, f"{EVENTS}:{name}" if many else EVENTS, mapping, origin)
        t["name"] = name
        t["lead_id"] = _lead_id_spec(item.get("lead_id", LEAD_ID), where, origin)
        t["occurred_at"] = _time_spec(item.get("occurred_at", {"column": OCCURRED_AT}), f"{where}.occurred_at",
                                      origin, end_of_day=True)
        kind = item.get("event_type", EVENT_TYPE)
        kind = {"column": kind} if isinstance(kind, str) else dict(kind or {})
        targets = {str(k): str(v) for k, v in (kind.get("map") or {}).items()}
        bad = sorted({v for v in targets.values() if v not in vocabulary})
        if bad:
            raise MappingError(origin, f"{where}.event_type.map targets {bad} are not event types; known: "
                                       f"{list(vocabulary)} (declare your own under `event_types`)")
        t["event_type"] = {"column": str(kind.get("column", EVENT_TYPE)), "map": targets}
        t["value"] = str(item["value"]) if item.get("value") else None
        out.append(t)
    names = [t["name"] for t in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MappingError(origin, f"events: two sources are named {dupes[0]!r}; give each its own `name`")
    return out


def _load_outcomes(raw: Mapping[str, Any], mapping: Mapping[str, Any], origin: str) -> dict[str, Any]:
    t = _load_table(raw, "outcomes", "outcomes", mapping, origin)
    if raw.get("join") and raw.get("lead_id"):
        raise MappingError(origin, "outcomes: give `lead_id` or `join`, not both")
    t["lead_id"] = _lead_id_spec(raw.get("lead_id", LEAD_ID), "outcomes", origin)
    join = raw.get("join")
    if join:
        if not join.get("column") or not join.get("leads_column"):
            raise MappingError(origin, "outcomes.join needs `column` (in the outcomes file) and `leads_column`")
        join = {"column": str(join["column"]), "leads_column": str(join["leads_column"])}
    t["join"] = join or None
    conv = raw.get("converted")
    if conv is not None:
        conv = {"column": conv} if isinstance(conv, str) else dict(conv)
        conv = _positive_negative(conv, "outcomes.converted", origin)
    t["converted"] = conv
    at = raw.get("converted_at")
    t["converted_at"] = _time_spec(at, "outcomes.converted_at", origin) if at else None
    dup = raw.get("duplicates", "earliest" if join else "quarantine")
    if dup not in DUPLICATES:
        raise MappingError(origin, f"outcomes.duplicates must be one of {DUPLICATES}, got {dup!r}")
    if dup == "earliest" and t["converted_at"] is None:
        raise MappingError(origin, "outcomes.duplicates: earliest needs outcomes.converted_at")
    t["duplicates"] = dup
    return t


def _groups(raw: Any, origin: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, meta in (raw or {}).items():
        name = str(name)
        if name in GROUPS or not _NAME.match(name):
            raise MappingError(origin, f"groups.{name}: a group name must be a new identifier (built-in groups: "
                                       f"{sorted(GROUPS)})")
        if meta.get("reason") is not None:
            _reason(meta["reason"], f"groups.{name}", origin)
        out[name] = {k: v for k, v in meta.items() if v is not None}
    return out


def _event_types(raw: Any, groups: Mapping[str, Any], origin: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, meta in (raw or {}).items():
        name = str(name)
        where = f"event_types.{name}"
        if name in (*EVENT_TYPES, OTHER_EVENT) or not _NAME.match(name) or name in RESERVED:
            raise MappingError(origin, f"{where}: a declared event type must be a new identifier, not one of the "
                                       f"built-in types {[*EVENT_TYPES, OTHER_EVENT]}")
        _group_known(meta.get("group"), {*GROUPS, *groups}, f"{where}.group", origin)
        noun = meta.get("noun")
        if noun is not None and (not isinstance(noun, list) or len(noun) != 2):
            raise MappingError(origin, f"{where}.noun must be [one, many], e.g. [call, calls]")
        if meta.get("reason") is not None:
            _reason(meta["reason"], where, origin)
        out[name] = {k: v for k, v in meta.items() if v is not None}
        out[name]["high_intent"] = bool(meta.get("high_intent", False))
    return out


def _lead_id_spec(raw: Any, table: str, origin: str) -> dict[str, Any]:
    if isinstance(raw, str):
        return {"column": raw}
    if not isinstance(raw, Mapping):
        raise MappingError(origin, f"{table}.lead_id must be a column name or {{column: X}} or {{row_number: true}}")
    if raw.get("row_number"):
        if table != "leads":
            raise MappingError(origin, f"{table}.lead_id cannot be a row number")
        return {"row_number": True, "prefix": str(raw.get("prefix") or "")}
    if not raw.get("column"):
        raise MappingError(origin, f"{table}.lead_id needs `column` or `row_number: true`")
    return {"column": str(raw["column"])}


def _time_spec(raw: Any, where: str, origin: str, *, end_of_day: bool = False) -> dict[str, Any]:
    raw = {"column": raw} if isinstance(raw, str) else raw
    if not isinstance(raw, Mapping) or not raw.get("column"):
        raise MappingError(origin, f"{where} needs `column` (and optionally `format`, `timezone`)")
    return {"column": str(raw["column"]), "time_format": _time_format(raw, where, origin, end_of_day=end_of_day)}


def _time_format(raw: Mapping[str, Any], where: str, origin: str, *, end_of_day: bool = False) -> TimeFormat:
    zone = str(raw.get("timezone") or "UTC")
    try:
        pl.Series([datetime(2020, 1, 1)]).dt.replace_time_zone(zone)
    except Exception:  # noqa: BLE001 - polars raises several types for an unknown zone
        raise MappingError(origin, f"{where}.timezone {zone!r} is not a known time zone") from None
    return TimeFormat(format=str(raw["format"]) if raw.get("format") else None, timezone=zone, end_of_day=end_of_day)


def _created_spec(raw: Any, origin: str) -> dict[str, Any]:
    raw = {"column": raw} if isinstance(raw, str) else raw
    if not isinstance(raw, Mapping):
        raise MappingError(origin, "leads.created_at must be {column: X} or {order_by: X, start, end} or "
                                   "{row_order: true, start, end}")
    forms = [k for k in ("column", "order_by", "row_order") if raw.get(k)]
    if len(forms) != 1:
        raise MappingError(origin, "leads.created_at needs exactly one of `column`, `order_by` or `row_order: true`; "
                                   f"got {forms or 'none'}")
    if forms[0] == "column":
        extra = [k for k in ("start", "end", "descending") if raw.get(k) is not None]
        if extra:
            raise MappingError(origin, f"leads.created_at.{extra[0]} only applies to order_by / row_order")
        return {"column": str(raw["column"]), "time_format": _time_format(raw, "leads.created_at", origin)}
    for k in ("start", "end"):
        if not raw.get(k):
            raise MappingError(origin, f"leads.created_at.{forms[0]} needs `start` and `end` (the span the "
                                       "pseudo-times are spread over)")
    if raw.get("format") is not None or raw.get("timezone") is not None:
        raise MappingError(origin, "leads.created_at.format/timezone only apply to `column`")
    start = _instant(raw["start"], "leads.created_at.start", origin)
    end = _instant(raw["end"], "leads.created_at.end", origin)
    if end <= start:
        raise MappingError(origin, f"leads.created_at.end ({_iso(end)}) must be after start ({_iso(start)})")
    out = {"start": start, "end": end, "descending": bool(raw.get("descending", False))}
    if forms[0] == "order_by":
        out["order_by"] = str(raw["order_by"])
    else:
        out["row_order"] = True
    return out


def _target_spec(raw: Any, origin: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not raw.get("column"):
        raise MappingError(origin, "leads.target needs {column: X, positive: [values]}")
    out = _positive_negative(raw, "leads.target", origin)
    if raw.get("positive") is None:
        raise MappingError(origin, "leads.target.positive is required: the values that mean converted")
    at = raw.get("converted_at")
    out["converted_at"] = _time_spec(at, "leads.target.converted_at", origin) if at else None
    return out


def _positive_negative(raw: Mapping[str, Any], where: str, origin: str) -> dict[str, Any]:
    def values(key: str) -> list[Any] | None:
        v = raw.get(key)
        if v is None:
            return None
        return list(v) if isinstance(v, list | tuple) else [v]

    return {"column": str(raw["column"]), "positive": values("positive"), "negative": values("negative")}


def _group_known(group: Any, known: set[str], where: str, origin: str) -> None:
    if group not in known:
        close = difflib.get_close_matches(str(group), sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MappingError(origin, f"{where} {group!r} is not a business group{hint}; known: {sorted(known)} "
                                   "(declare your own under `groups`)")


def _features(raw: Any, kind: str, groups: set[str], origin: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for col, meta in (raw or {}).items():
        where = f"leads.{kind}.{col}"
        if not isinstance(meta, Mapping):
            raise MappingError(origin, f"{where} needs {{group, description}}")
        _group_known(meta.get("group"), groups, f"{where}.group", origin)
        if not meta.get("description"):
            raise MappingError(origin, f"{where}.description is required: reason codes and reports show it")
        if meta.get("parse") is not None and meta["parse"] not in PARSERS:
            raise MappingError(origin, f"{where}.parse {meta['parse']!r} is unknown; known: {list(PARSERS)}")
        if meta.get("patterns") is not None:
            if meta.get("parse") != "seniority":
                raise MappingError(origin, f"{where}.patterns only apply with parse: seniority")
            for level, patterns in meta["patterns"].items():
                for pattern in patterns or []:
                    try:
                        pl.Series(["x"]).str.contains(str(pattern))
                    except Exception:  # noqa: BLE001 - a regex polars cannot compile
                        raise MappingError(origin, f"{where}.patterns.{level}: {pattern!r} is not a regular "
                                                   "expression") from None
        for bound in ("min", "max"):
            if meta.get(bound) is not None and not isinstance(meta[bound], int | float):
                raise MappingError(origin, f"{where}.{bound} must be a number, got {meta[bound]!r}")
        if meta.get("reason") is not None:
            _reason(meta["reason"], where, origin)
        clean = {k: v for k, v in meta.items() if v is not None}
        if clean.get("patterns"):
            clean["patterns"] = {k: [str(p) for p in v] for k, v in clean["patterns"].items() if v}
        out[str(col)] = clean
    return out


def _reason(reason: Any, where: str, origin: str) -> None:
    if not isinstance(reason, Mapping) or not reason or set(reason) - {"for", "against"}:
        raise MappingError(origin, f"{where}.reason must be {{for: text, against: text}} (either or both)")
    for direction, variants in reason.items():
        _templates(variants, f"{where}.reason.{direction}", origin)


def _templates(raw: Any, where: str, origin: str) -> list[Any]:
    """A note template list: a text, or a list of texts and {if: condition(s), text} variants."""
    variants = [raw] if isinstance(raw, str) else raw
    if not isinstance(variants, list) or not variants:
        raise MappingError(origin, f"{where} must be a text or a list of texts / {{if, text}} variants")
    for i, v in enumerate(variants):
        ok = isinstance(v, str) or (isinstance(v, Mapping) and isinstance(v.get("text"), str)
                                    and set(v) <= {"if", "text"})
        if not ok:
            raise MappingError(origin, f"{where}[{i}] must be a text or {{if, text}}, got {v!r}")
    return [v if isinstance(v, str) else {k: x for k, x in v.items() if x is not None} for v in variants]


def _check_roles(t: Mapping[str, Any], origin: str) -> None:
    """A column plays one role: a feature is never PII, leaky, reserved, or the target."""
    cats, nums = set(t["categorical"]), set(t["numeric"])
    both = sorted(cats & nums)
    if both:
        raise MappingError(origin, f"columns {both} are declared both categorical and numeric")
    features = cats | nums
    kept = set(t["pii"]) | set(t["keep"]) | set(t["after_outcome"])
    clashes = {
        "reserved names of the canonical tables": (features | kept) & RESERVED,
        "PII": features & set(t["pii"]),
        "drop_leaky": (features | set(t["pii"]) | set(t["keep"]) | set(t["after_outcome"])) & set(t["drop_leaky"]),
        "the legacy score": features & {t["legacy_score"]},
        "the target": (features | set(t["keep"]) | set(t["pii"])) & ({t["target"]["column"]} if t["target"] else set()),
    }
    for what, cols in clashes.items():
        if cols:
            raise MappingError(origin, f"columns {sorted(cols)} are declared as features or kept, but are {what}")
    allowed = set(t["pii"]) | features | set(t["keep"])
    stray = sorted(set(t["notes_allowed"]) - allowed)
    if stray:
        raise MappingError(origin, f"leads.notes_allowed {stray} must also be declared (pii, a feature, or keep)")


def _check_templates(m: dict[str, Any], origin: str) -> None:
    """Every `{placeholder}` (and every name in an `if:`) of a note template must name something a note can show:
    a feature, a kept or derived leads column, or a value the reason code adds. A derived leads column a template
    uses is carried through (kept), so its value reaches the note."""
    leads = m["leads"]
    kinds = [*EVENT_TYPES, *m["event_types"], OTHER_EVENT]
    alt = "|".join(map(re.escape, kinds))
    event_feature = re.compile(rf"^(({alt})(_value)?_\d+d|days_since_({alt})|days_since_high_intent|"
                               r"velocity_7d_vs_prior_23d|breadth_90d|careers_only_90d)$")
    columns = {*leads["categorical"], *leads["numeric"], *leads["keep"], *leads["notes_allowed"], "seniority",
               "is_student_domain"}
    derived = set(leads["derive"])
    templates: list[tuple[str, Any]] = [("leads.who", leads["who"]), ("leads.what_happened", leads["what_happened"])]
    for kind in ("categorical", "numeric"):
        for col, meta in leads[kind].items():
            for d, v in (meta.get("reason") or {}).items():
                templates.append((f"leads.{kind}.{col}.reason.{d}", v))
    for section in ("event_types", "groups"):
        for name, meta in m[section].items():
            for d, v in (meta.get("reason") or {}).items():
                templates.append((f"{section}.{name}.reason.{d}", v))
    used_derived: set[str] = set()
    for where, variants in templates:
        for i, v in enumerate(variants if isinstance(variants, list) else [variants]):
            text = v if isinstance(v, str) else v["text"]
            conditions = [] if isinstance(v, str) else v.get("if") or []
            names = [_placeholder_name(p, where, i, text, origin) for p in _BRACES.findall(text)]
            for c in [conditions] if isinstance(conditions, str) else conditions:
                match = _CONDITION_NAME.match(str(c))
                names += [match.group(1)] if match else []
            for name in names:
                if name in derived:
                    used_derived.add(name)
                elif not (name in columns or event_feature.match(name) or _TEMPLATE_EXTRAS.match(name)):
                    raise MappingError(origin, f"template {where}[{i}] {text!r}: {{{name}}} names no feature, kept "
                                               "column or derived column of the leads (declare it under categorical, "
                                               "numeric or keep, or derive it)")
    roles = {*leads["categorical"], *leads["numeric"], *leads["pii"], *leads["keep"], *leads["after_outcome"]}
    leads["keep"] = [*leads["keep"], *sorted(used_derived - roles)]


def _placeholder_name(inner: str, where: str, i: int, text: str, origin: str) -> str:
    match = _PLACEHOLDER.match(inner)
    if not match:
        raise MappingError(origin, f"template {where}[{i}] {text!r}: {{{inner}}} is not a placeholder; a placeholder "
                                   "is {name} or {name|noun} with a name of letters, digits and _: rename a column "
                                   "with spaces or slashes first (rename: {\"Country/Region\": country})")
    return match.group(1)


# ---------------------------------------------------------------- apply helpers


def _require_derived(present: list[str], needed: list[str], derive: Mapping[str, str], *, file: str,
                     what: str) -> None:
    """A needed column the mapping derives could not be derived (new leads to score lack a column it is computed
    from): name the file's missing source columns, not the derived name the file never had."""
    for col in needed:
        if col not in present and col in derive:
            roots = sorted(set(pl.sql_expr(derive[col]).meta.root_names()) - set(present))
            raise BadInput(file, f"missing column needed as {what} {col!r}, which the mapping derives "
                                 f"(leads.derive.{col}) from {', '.join(map(repr, roots))}",
                           column=roots[0] if roots else col)


def _prepare(frame: pl.LazyFrame | pl.DataFrame, spec: Mapping[str, Any], mapping: Mapping[str, Any], file: str,
             tables: Mapping[str, pl.LazyFrame | pl.DataFrame], files: Mapping[str, str],
             skipped: dict[str, pl.LazyFrame]) -> pl.LazyFrame:
    """Row numbers, then the fixed order: rename, null_values (and empty text), join, derive, filter, value_maps."""
    lf = frame.lazy()
    names = lf.collect_schema().names()
    check_layout(names, file=file, expected_separator=(spec.get("csv") or {}).get("separator", ","))
    lf = lf.with_row_index(ROW, offset=1) if ROW not in names else lf
    rename = spec["rename"]
    require_columns(names, list(rename), file=file, what="a column to rename")
    new_names = [rename.get(c, c) for c in names]
    dupes = sorted({c for c in new_names if new_names.count(c) > 1})
    if dupes:
        raise BadInput(file, f"rename gives several columns the name {dupes[0]!r}", column=dupes[0])
    lf = lf.rename(rename) if rename else lf
    lf = _missing_text(lf, [*mapping.get("null_values", []), *spec["null_values"]], spec.get("empty_is_missing", True))
    if (spec.get("csv") or {}).get("decimal", ".") == ",":
        numbers = [*(spec.get("numeric") or {}), *([spec["legacy_score"]] if spec.get("legacy_score") else []),
                   *([spec["value"]] if spec.get("value") else [])]
        lf = _decimal_comma(lf, numbers)
    for lookup in spec.get("join_tables") or []:
        lf = _join_lookup(lf, lookup, tables[lookup["key"]], file, files.get(lookup["key"], lookup["path"]))
    for col, expression in spec.get("derive", {}).items():
        if spec.get("derive_if_present") and not set(pl.sql_expr(expression).meta.root_names()) <= set(
                lf.collect_schema().names()):
            continue  # scoring new leads: a column derived from the outcome (a won date) is not there yet
        lf = _derive(lf, col, expression, f"{spec['key']}.derive.{col}", file)
    if spec.get("filter"):
        predicate = _checked_sql(lf, spec["filter"], f"{spec['key']}.filter", file)
        keep = predicate.fill_null(False)
        skipped[spec["key"]] = lf.filter(~keep).select(pl.len().alias("skipped"))
        lf = lf.filter(keep)
    schema = lf.collect_schema()
    require_columns(schema.names(), list(spec["value_maps"]), file=file, what="a value_maps column")
    exprs = [_value_map(col, schema[col], vm, file) for col, vm in spec["value_maps"].items()]
    return lf.with_columns(exprs) if exprs else lf


#: What groups thousands in a number written with a decimal comma: 1.234,5, 1 234,5, 1'234,5 (and a no-break space).
_GROUPING = "[. '\u00a0\u202f\u2019]"


def _decimal_comma(lf: pl.LazyFrame, columns: Sequence[str]) -> pl.LazyFrame:
    """Text numbers with a decimal comma as the contract reads numbers: 1.234,5 -> 1234.5 (a text that is still no
    number after this is quarantined by the contract, naming its value)."""
    schema = lf.collect_schema()
    return lf.with_columns(
        pl.col(c).str.strip_chars().str.replace_all(_GROUPING, "").str.replace(",", ".", literal=True)
        for c in dict.fromkeys(columns) if c in schema and schema[c] == pl.String)


def _missing_text(lf: pl.LazyFrame, nulls: Sequence[str], empty: bool) -> pl.LazyFrame:
    """Text columns: the mapping's missing-value markers, and (by default) empty text, become missing."""
    markers = [*nulls, *([""] if empty else [])]
    if not markers:
        return lf
    text = [c for c, dt in lf.collect_schema().items() if isinstance(dt, pl.String) and c != ROW]
    if not text:
        return lf
    return lf.with_columns(pl.when(pl.col(c).is_in(markers)).then(None).otherwise(pl.col(c)).alias(c) for c in text)


def _join_lookup(lf: pl.LazyFrame, lookup: Mapping[str, Any], table: pl.LazyFrame | pl.DataFrame, file: str,
                 lookup_file: str) -> pl.LazyFrame:
    """A left join on a lookup table whose keys are unique (a repeated key would copy rows and break the count)."""
    right = _missing_text(table.lazy(), [], True)
    right_names = right.collect_schema().names()
    here = lf.collect_schema().names()
    on = lookup["on"]
    require_columns(here, list(on), file=file, what="a join key")
    require_columns(right_names, list(on.values()), file=lookup_file, what="a join key of the lookup table")
    columns = lookup["columns"] or {c: c for c in right_names if c not in on.values()}
    require_columns(right_names, list(columns), file=lookup_file, what="a column to take from the lookup table")
    clash = sorted(set(columns.values()) & set(here))
    if clash:
        raise BadInput(lookup_file, f"the lookup's column would replace the column {clash[0]!r} of the table it joins; "
                                    "rename it under join.columns", column=clash[0])
    keys = [f"_join_key{i}" for i in range(len(on))]
    right = right.select(*[pl.col(r).cast(pl.String).alias(k) for r, k in zip(on.values(), keys, strict=True)],
                         *[pl.col(src).alias(dst) for src, dst in columns.items()])
    repeated = right.group_by(keys).len().filter(pl.col("len") > 1).select(keys).head(1).collect()
    if repeated.height:
        raise BadInput(lookup_file, "a lookup table's join key must be unique; a repeated key would copy rows",
                       column=next(iter(on.values())))
    left = lf.with_columns(pl.col(c).cast(pl.String).alias(k) for c, k in zip(on, keys, strict=True))
    return left.join(right, on=keys, how="left", maintain_order="left").drop(keys)


def _checked_sql(lf: pl.LazyFrame, expression: str, where: str, file: str) -> pl.Expr:
    """A mapping's SQL expression as a polars expression whose columns exist and whose types fit (checked on an
    empty slice of the table, so the error names the key and lists the columns instead of failing mid-run)."""
    names = [c for c in lf.collect_schema().names() if c != ROW]
    expr = pl.sql_expr(expression)
    unknown = [c for c in expr.meta.root_names() if c not in names]
    shown = ", ".join(repr(c) for c in names[:60])
    if unknown:
        raise BadInput(file, f"{where}: {expression!r} names the column {unknown[0]!r}, which this table does not "
                             f"have; available: {shown}", column=unknown[0])
    try:
        lf.limit(0).select(expr.alias("_probe")).collect()
    except pl.exceptions.PolarsError as e:
        raise BadInput(file, f"{where}: {expression!r} cannot be evaluated on this table: {_first_line(e)}; "
                             f"available columns: {shown}") from None
    return expr


def _derive(lf: pl.LazyFrame, col: str, expression: str, where: str, file: str) -> pl.LazyFrame:
    return lf.with_columns(_checked_sql(lf, expression, where, file).alias(col))


def _value_map(col: str, dtype: pl.DataType, vm: Mapping[Any, Any], file: str) -> pl.Expr:
    """Values replaced, values sent to missing (null value), and missing values given one (the null key)."""
    to_null = [k for k, v in vm.items() if v is None and k is not None]
    pairs = {k: v for k, v in vm.items() if v is not None and k is not None}
    expr = pl.col(col)
    if pairs:
        expr = expr.replace(_typed_values(list(pairs), dtype, col, file),
                            _typed_values(list(pairs.values()), dtype, col, file))
    if to_null:
        missing = _typed_values(to_null, dtype, col, file).implode()
        expr = pl.when(pl.col(col).is_in(missing)).then(None).otherwise(expr)
    if vm.get(None) is not None:
        filled = _typed_values([vm[None]], dtype, col, file)[0]
        expr = pl.when(pl.col(col).is_null()).then(pl.lit(filled, dtype=dtype)).otherwise(expr)
    return expr.alias(col)


def _typed_values(values: Sequence[Any], dtype: pl.DataType, col: str, file: str) -> pl.Series:
    """Mapping values as a Series of the column's type (polars compares like with like); refuse what cannot be."""
    if isinstance(dtype, pl.String) and any(isinstance(v, bool) for v in values):
        raise BadInput(file, "the mapping gives a boolean for a text column; YAML reads bare yes/no/on/off as "
                                  "booleans: quote it, e.g. \"yes\"", column=col)
    try:
        if isinstance(dtype, pl.String):
            return pl.Series([str(v) for v in values], dtype=pl.String)
        if dtype.is_numeric() and any(isinstance(v, str) for v in values):
            values = [float(v) if isinstance(v, str) else v for v in values]
        if isinstance(dtype, pl.Boolean):  # a CSV reader types "true"/"false" columns as booleans
            words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
            values = [words.get(v.strip().lower(), v) if isinstance(v, str) else v for v in values]
        return pl.Series(values).cast(dtype, strict=True)
    except (ValueError, TypeError, pl.exceptions.PolarsError):
        raise BadInput(file, f"the mapping's values {list(values)} cannot be compared with this column of type "
                                  f"{dtype}", column=col) from None
def _lead_id(spec: Mapping[str, Any], present: Sequence[str], file: str) -> tuple[pl.Expr, str, list[str]]:
    if spec.get("row_number"):
        return pl.concat_str(pl.lit(spec["prefix"]), pl.col(ROW).cast(pl.String)), "(row number)", []
    require_columns(present, [spec["column"]], file=file, what="the lead id")
    return pl.col(spec["column"]).cast(pl.String), spec["column"], [spec["column"]]


def _created_at(spec: Mapping[str, Any], present: Sequence[str],
                file: str) -> tuple[pl.Expr, str, list[str], dict[str, Any]]:
    """created_at from a column, or pseudo-times spread evenly over [start, end] in the order given."""
    if spec.get("column"):
        require_columns(present, [spec["column"]], file=file, what="created_at")
        basis = {"kind": "column", "column": spec["column"]}
        return pl.col(spec["column"]), spec["column"], [spec["column"]], basis
    start, end = spec["start"], spec["end"]
    if spec.get("order_by"):
        col = spec["order_by"]
        require_columns(present, [col], file=file, what="created_at.order_by")
        rank = pl.col(col).rank("min", descending=spec["descending"]) - 1
        origin, cols, kind = col, [col], "order_by"
    else:
        rank = (pl.len() - pl.col(ROW)) if spec["descending"] else (pl.col(ROW) - 1)
        origin, cols, kind = "(row order)", [], "row_order"
    # Whole seconds: pseudo-times should not pretend to microsecond precision.
    span_s = int((end - start).total_seconds())
    start_us = int((start - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds()) * 1_000_000
    n = pl.len().cast(pl.Float64)
    frac = pl.when(n > 1).then(rank.cast(pl.Float64) / (n - 1)).otherwise(0.0)
    expr = (pl.lit(start_us) + (frac * span_s).round(0).cast(pl.Int64) * 1_000_000).cast(TS)
    basis = {"kind": kind, "column": spec.get("order_by"), "start": _iso(start), "end": _iso(end),
             "descending": spec["descending"],
             "note": "pseudo-times spread evenly over [start, end] in the order given; rates per week and the time "
                     "split's dates depend on this stated span"}
    return expr, origin, cols, basis


def _apply_events(mapping: Mapping[str, Any], tables: Mapping[str, pl.LazyFrame | pl.DataFrame],
                  files: Mapping[str, str], skipped: dict[str, pl.LazyFrame],
                  ) -> tuple[pl.LazyFrame, dict[str, str], dict[str, list[str]]]:
    """Every event source through its own steps, typed times included (each has its own format and zone), then
    unioned. Sources of a list carry their name (SOURCE) and per-row source columns, so a quarantined row points
    into the right file."""
    sources = mapping["events"]
    many = len(sources) > 1 or sources[0]["key"] != EVENTS
    with_value = any(s["value"] for s in sources)
    parts, undeclared, origins = [], [], {}
    for spec in sources:
        key = spec["key"]
        lf = _prepare(tables[key], spec, mapping, files[key], tables, files, skipped)
        schema = lf.collect_schema()
        present = schema.names()
        lid, at, kind = spec["lead_id"]["column"], spec["occurred_at"]["column"], spec["event_type"]["column"]
        for col, what in ((lid, "the lead id"), (at, "occurred_at"), (kind, "event_type")):
            require_columns(present, [col], file=files[key], what=what)
        kind_expr = pl.col(kind).cast(pl.String)
        if spec["event_type"]["map"]:
            vm = spec["event_type"]["map"]
            kind_expr = kind_expr.replace(list(vm), list(vm.values()))
        fmt = spec["occurred_at"]["time_format"]
        # A reason the reader gave a row (a ragged CSV row) rides along; sources without one get an empty one,
        # so the union has one shape.
        prior = _prior_reason(present) or [pl.lit(None, dtype=pl.String).alias(REASON),
                                           pl.lit(None, dtype=pl.String).alias(REASON_COLUMN)]
        cols = [pl.col(ROW), *prior, pl.col(lid).cast(pl.String).alias(LEAD_ID),
                _timestamp_expr(at, schema[at], fmt).alias(OCCURRED_AT),
                (pl.col(at).cast(pl.String) if isinstance(schema[at], pl.String) else pl.lit(None, dtype=pl.String)
                 ).alias(RAW_PREFIX + OCCURRED_AT),
                _gap_flag(at, schema[at], fmt),
                kind_expr.alias(EVENT_TYPE)]
        if with_value:
            value = spec["value"]
            if value:
                require_columns(present, [value], file=files[key], what="the event value")
            cols.append(numeric_expr(value, schema[value]).alias(EVENT_VALUE) if value
                        else pl.lit(None, dtype=pl.Float64).alias(EVENT_VALUE))
        if many:
            cols += [pl.lit(spec["name"], dtype=pl.String).alias(SOURCE),
                     *[pl.lit(c, dtype=pl.String).alias(origin_column(canon))
                       for canon, c in ((LEAD_ID, lid), (OCCURRED_AT, at), (EVENT_TYPE, kind))]]
        parts.append(lf.select(cols))
        used = {lid, at, kind, *([spec["value"]] if spec["value"] else [])}
        undeclared += [c if not many else f"{spec['name']}: {c}" for c in present
                       if c not in _INTERNAL and c not in used]
        origins = {LEAD_ID: lid, OCCURRED_AT: at, EVENT_TYPE: kind}
    out = parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical")
    if many:
        origins = {LEAD_ID: "lead id column", OCCURRED_AT: "time column", EVENT_TYPE: "event type column"}
    return out, origins, {"leaky": [], "undeclared": undeclared}


def _outcomes_from_target(leads: pl.LazyFrame, target: Mapping[str, Any], lid_origin: str,
                          file: str) -> tuple[pl.LazyFrame, dict[str, str], TimeFormat | None]:
    """One outcome per lead row, from the target column of the leads file (no outcome times unless given)."""
    col = target["column"]
    schema = leads.collect_schema()
    converted = _converted_expr(col, schema[col], target, file)
    at = target["converted_at"]
    frame = leads.select(
        pl.col(ROW),
        pl.col(LEAD_ID),
        converted.alias(CONVERTED),
        (_conversion_time(at["column"], converted) if at else pl.lit(None, dtype=TS)).alias(CONVERTED_AT),
        *_target_reason(col, converted),
    )
    origins = {LEAD_ID: lid_origin, CONVERTED: col, **({CONVERTED_AT: at["column"]} if at else {})}
    return frame, origins, at["time_format"] if at else None


def _gap_flag(column: str, dtype: pl.DataType, fmt: TimeFormat) -> pl.Expr:
    """The contract's per-row flag of a time its zone skips; every source carries it (False where none can be), so
    that several sources union into one shape."""
    gap = nonexistent_local_time(column, dtype, fmt)
    return (pl.lit(False) if gap is None else gap).alias(GAP_PREFIX + OCCURRED_AT)


def _conversion_time(column: str, converted: pl.Expr | None) -> pl.Expr:
    """`column` as the conversion time, except on a row the mapping reads as not converted: a deals export gives a
    lost deal its close date too, which is no conversion time (the contract would quarantine the row for it)."""
    return pl.col(column) if converted is None else pl.when(converted.eq(False)).then(None).otherwise(pl.col(column))


def _converted_expr(col: str, dtype: pl.DataType, spec: Mapping[str, Any], file: str) -> pl.Expr:
    """True for `positive` values, False for `negative` ones (or for every other value when none are listed)."""
    pos = _typed_values(spec["positive"] or [], dtype, col, file)
    neg = _typed_values(spec["negative"], dtype, col, file) if spec["negative"] else None
    c = pl.col(col)
    expr: Any = pl.when(c.is_null()).then(None).when(c.is_in(pos.implode())).then(True)
    expr = expr.when(c.is_in(neg.implode())).then(False) if neg is not None else expr.otherwise(False)
    return (expr.otherwise(None) if neg is not None else expr).cast(pl.Boolean)


def _target_reason(col: str, converted: pl.Expr, *, prior: bool = False) -> list[pl.Expr]:
    """"unrecognised target value" where the target does not map; a reason the reader gave the row comes first."""
    bad = converted.is_null()
    reason = pl.when(bad).then(pl.lit(TARGET_UNRECOGNISED)).otherwise(None).cast(pl.String)
    column = pl.when(bad).then(pl.lit(col)).otherwise(None).cast(pl.String)
    if prior:
        reason = pl.when(pl.col(REASON).is_not_null()).then(pl.col(REASON)).otherwise(reason)
        column = pl.when(pl.col(REASON).is_not_null()).then(pl.col(REASON_COLUMN)).otherwise(column)
    return [reason.alias(REASON), column.alias(REASON_COLUMN)]


def _prior_reason(present: Sequence[str]) -> list[pl.Expr]:
    """A reason the reader already gave a row (a CSV row with more or fewer fields than the header) rides along,
    so the contract quarantines that row with it."""
    return [pl.col(REASON), pl.col(REASON_COLUMN)] if REASON in present else []


def _apply_outcomes(spec: Mapping[str, Any], mapping: Mapping[str, Any], file: str, leads: pl.LazyFrame,
                    tables: Mapping[str, pl.LazyFrame | pl.DataFrame], files: Mapping[str, str],
                    skipped: dict[str, pl.LazyFrame]) -> tuple[pl.LazyFrame, dict[str, str], dict[str, list[str]],
                                                              TimeFormat | None]:
    """An outcomes table keyed by lead id, or a won-deals table joined to the leads through a key column."""
    lf = _prepare(tables["outcomes"], spec, mapping, file, tables, files, skipped)
    schema = lf.collect_schema()
    present = schema.names()
    at, conv = spec["converted_at"], spec["converted"]
    used: set[str] = set()
    origins: dict[str, str] = {}
    cols: list[pl.Expr] = [pl.col(ROW)]
    if conv:
        require_columns(present, [conv["column"]], file=file, what="converted")
        converted = _converted_expr(conv["column"], schema[conv["column"]], conv, file)
        cols += [converted.alias(CONVERTED), *_target_reason(conv["column"], converted, prior=REASON in present)]
        used.add(conv["column"])
        origins[CONVERTED] = conv["column"]
    else:
        if CONVERTED in present:
            cols.append(pl.col(CONVERTED))
            used.add(CONVERTED)
        cols += _prior_reason(present) or [pl.lit(None, dtype=pl.String).alias(REASON),
                                           pl.lit(None, dtype=pl.String).alias(REASON_COLUMN)]
    if at:
        require_columns(present, [at["column"]], file=file, what="converted_at")
        cols.append(_conversion_time(at["column"], converted if conv else None).alias(CONVERTED_AT))
        used.add(at["column"])
        origins[CONVERTED_AT] = at["column"]
    if spec["join"]:
        key = spec["join"]["column"]
        require_columns(present, [key], file=file, what="the outcomes join key")
        used.add(key)
        origins[LEAD_ID] = key
        out = _join_to_leads(lf, key, leads, spec["join"]["leads_column"], cols)
    else:
        lid = spec["lead_id"]["column"]
        require_columns(present, [lid], file=file, what="the lead id")
        used.add(lid)
        origins[LEAD_ID] = lid
        out = lf.select(*cols, pl.col(lid).cast(pl.String).alias(LEAD_ID))
    if spec["duplicates"] == "earliest":
        out = _keep_earliest(out, at["time_format"], at["column"])
    dropped = {"leaky": [], "undeclared": [c for c in present if c not in _INTERNAL and c not in used]}
    return out, origins, dropped, at["time_format"] if at else None


def _join_to_leads(lf: pl.LazyFrame, key: str, leads: pl.LazyFrame, leads_key: str,
                   cols: Sequence[pl.Expr]) -> pl.LazyFrame:
    """Attach lead ids to a won-deals table through a key column the leads file also has (e.g. an email).

    A key no lead has, or one several leads share, is quarantined with that reason rather than guessed.
    """
    keys = (
        leads.select(pl.col(leads_key).cast(pl.String).alias("_key"), pl.col(LEAD_ID).alias("_joined_id"))
        .filter(pl.col("_key").is_not_null())
        .group_by("_key")
        .agg(pl.col("_joined_id").min(), pl.len().alias("_matches"))
    )
    joined = lf.with_columns(pl.col(key).cast(pl.String).alias("_key")).join(
        keys, on="_key", how="left", maintain_order="left")
    why = (
        pl.when(pl.col("_matches").is_null()).then(pl.lit(UNKNOWN_JOIN_KEY))
        .when(pl.col("_matches") > 1).then(pl.lit(AMBIGUOUS_JOIN_KEY))
        .otherwise(None)
    )  # fmt: skip
    return joined.select(*cols, pl.col("_joined_id").alias(LEAD_ID), why.alias("_why")).with_columns(
        pl.coalesce(pl.col("_why"), pl.col(REASON)).alias(REASON),
        pl.when(pl.col("_why").is_not_null()).then(pl.lit(key)).otherwise(pl.col(REASON_COLUMN)).alias(REASON_COLUMN),
    ).drop("_why")


def _keep_earliest(frame: pl.LazyFrame, fmt: TimeFormat, at_origin: str) -> pl.LazyFrame:
    """Several outcomes for one lead (several deals): keep its earliest win, else its earliest row, and quarantine
    the rest with a reason. A deal lost before a later win does not hide the win."""
    schema = frame.collect_schema()
    at = _timestamp_expr(CONVERTED_AT, schema[CONVERTED_AT], fmt)
    eligible = pl.col(REASON).is_null() & pl.col(LEAD_ID).is_not_null()
    group = pl.when(eligible).then(pl.col(LEAD_ID))
    not_won = ~pl.col(CONVERTED).fill_null(False).cast(pl.Boolean) if CONVERTED in schema else pl.lit(False)
    first = pl.col(ROW).sort_by([not_won, pl.col("_at"), pl.col(ROW)], nulls_last=True).first().over(group)
    repeat = eligible & (pl.col(ROW) != first)
    return (
        frame.with_columns(at.alias("_at"))
        .with_columns(repeat.alias("_repeat"))
        .with_columns(
            pl.when(pl.col("_repeat")).then(pl.lit(REPEAT_OUTCOME)).otherwise(pl.col(REASON)).alias(REASON),
            pl.when(pl.col("_repeat")).then(pl.lit(at_origin)).otherwise(pl.col(REASON_COLUMN)).alias(REASON_COLUMN),
        )
        .drop("_at", "_repeat")
    )


# ---------------------------------------------------------------- small helpers


def _section(raw: Mapping[str, Any], key: str, origin: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if not isinstance(value, Mapping):
        raise MappingError(origin, f"{key} must be a mapping (path, columns...)")
    return value


def _str_list(raw: Any, where: str, origin: str) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list | tuple):
        raise MappingError(origin, f"{where} must be a list")
    if any(isinstance(v, bool) for v in raw):
        raise MappingError(origin, f"{where}: YAML read a bare yes/no/on/off as a boolean; quote it, e.g. \"yes\"")
    return [str(v) for v in raw]


def _format_of(path: str, given: Any, table: str, origin: str = "source mapping") -> str:
    if given is not None:
        if given not in FORMATS:
            raise MappingError(origin, f"{table}.format must be one of {FORMATS}, got {given!r}")
        return str(given)
    fmt = _EXTENSIONS.get(PurePath(path).suffix.lower())
    if fmt is None:
        raise MappingError(origin, f"{table}.path {path!r}: cannot tell the format from the extension; set "
                                   f"{table}.format to csv or parquet")
    return fmt


def _instant(value: Any, where: str, origin: str) -> datetime:
    """A YAML date, datetime or ISO string as an aware UTC datetime."""
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, date):
        ts = datetime(value.year, value.month, value.day)
    else:
        try:
            ts = datetime.fromisoformat(str(value))
        except ValueError:
            raise MappingError(origin, f"{where}: {value!r} is not an ISO date or timestamp") from None
    return utc(ts)


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat()


def _meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if v is not None}


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))




def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
