"""The source mapping as typed models (pydantic v2, unknown keys refused): the one definition the loader, the JSON
Schema (docs/mapping.schema.json) and the reference page (docs/mapping.md) all follow, so they cannot drift apart.

These models say what a mapping may contain and of which type; `features.mapping.load_mapping` adds the checks that
need more than one key at a time (a feature is never PII, a target is given once, a template names real columns).
Nothing in a mapping runs Python: derived columns and filters are SQL expressions read by `polars.sql_expr`.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Text = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Csv(_Strict):
    """How a CSV file is written."""

    separator: str = Field(",", description="One character between fields.")
    quote: str | None = Field('"', description="Quote character; null: no quoting.")
    encoding: str = Field("utf8", description="Text encoding (utf8, utf8-lossy, latin-1, cp1252, ...).")
    null_values: str | list[str] | None = Field(None, description="Field texts read as missing by the CSV reader.")
    infer_schema_length: int | None = Field(None, description="Rows read to infer types; null: the whole file.")
    decimal: Literal[".", ","] = Field(".", description="Decimal mark of the file's numbers. ',' (German, French, "
                                                        "Brazilian exports): the file is read as text, and numeric "
                                                        "features, the legacy score and event values read 1.234,5 as "
                                                        "1234.5 ('.', space or apostrophe group thousands).")


class LookupJoin(_Strict):
    """A lookup table joined (left) before `derive`, so its columns can type an event or become features."""

    path: Text = Field(description="The lookup file, relative to the project root.")
    format: Literal["csv", "parquet"] | None = Field(None, description="Default: from the extension.")
    csv: Csv | None = Field(None, description="How the lookup CSV is written.")
    on: dict[str, str] = Field(description="{column of this table: column of the lookup table}; the lookup's keys "
                                           "must be unique.")
    columns: dict[str, str] | None = Field(None, description="{lookup column: new name}; default: every other "
                                                             "lookup column under its own name.")


ValueMap = dict[Any, Any]


class _Table(_Strict):
    """Keys every table section shares, applied in this order: read, rename, null_values, join, derive, filter,
    value_maps, then the roles."""

    path: Text = Field(description="The file, relative to the project root (the working directory).")
    format: Literal["csv", "parquet"] | None = Field(None, description="Default: from the extension.")
    csv: Csv | None = Field(None, description="How the CSV file is written.")
    schema_: dict[str, str] | None = Field(None, alias="schema", description="Read types by file column name "
                                           "(CSV only): string, int, float, bool, date, datetime.")
    rename: dict[str, str] | None = Field(None, description="{file column: new name}; every later key uses the new "
                                                            "names.")
    null_values: str | list[str] | None = Field(None, description="Text values that mean missing in this table.")
    empty_is_missing: bool = Field(True, description="Read empty text fields (\"\") as missing.")
    join: LookupJoin | list[LookupJoin] | None = Field(None, description="Lookup table(s) joined before `derive` "
                                                                     "(leads and events).")
    derive: dict[str, str] | None = Field(None, description="{new column: SQL expression}, evaluated in order by "
                                                            "polars' SQL (CASE WHEN, LIKE, ||, lower, split_part, "
                                                            "regexp_replace, ...). Quote names with spaces: "
                                                            "\"Page URL\".")
    filter: str | None = Field(None, description="SQL predicate: rows where it is not true are skipped and counted, "
                                                 "never quarantined.")
    value_maps: dict[str, ValueMap] | None = Field(None, description="{column: {old value: new value}}; a null key "
                                                                     "maps missing values, a null value means missing.")


class LeadId(_Strict):
    """The lead id: a column, or the row number (leads only, and only without events)."""

    column: str | None = Field(None, description="The id column.")
    row_number: bool | None = Field(None, description="Use the 1-based data row number as the id.")
    prefix: str | None = Field(None, description="Text put before a row-number id.")


class TimeColumn(_Strict):
    """A time column and how it is written."""

    column: Text = Field(description="The column.")
    format: str | None = Field(None, description="strftime format, epoch_s, epoch_ms or epoch_us; default: ISO 8601 "
                                                 "(with Z or a numeric offset, or date-only).")
    timezone: str | None = Field(None, description="Zone of times written without an offset; default UTC.")


class CreatedAt(_Strict):
    """When each lead was created: a column, or pseudo-times spread evenly over [start, end] in the order given."""

    column: str | None = Field(None, description="The creation time column.")
    format: str | None = Field(None, description="strftime format of `column` (default: ISO 8601).")
    timezone: str | None = Field(None, description="Zone of `column` times written without an offset.")
    order_by: str | None = Field(None, description="Pseudo-times: order leads by this column.")
    row_order: bool | None = Field(None, description="Pseudo-times in file order.")
    start: Any = Field(None, description="Start of the span pseudo-times are spread over.")
    end: Any = Field(None, description="End of that span.")
    descending: bool | None = Field(None, description="Reverse the order (largest or last row oldest).")


class Target(_Strict):
    """The target taken from a column of the leads file."""

    column: Text = Field(description="The column (a derived one is fine).")
    positive: Any = Field(None, description="Values that mean converted.")
    negative: Any = Field(None, description="Values that mean not converted; default: every other value.")
    converted_at: str | TimeColumn | None = Field(None, description="When it converted (a won date).")


class Variant(_Strict):
    """A note template variant: used when its conditions hold and every placeholder has a value."""

    if_: str | list[str] | None = Field(None, alias="if", description="Condition(s) 'name OP value'.")
    text: str = Field(description="The sentence, with {name} or {name|noun} placeholders.")


Template = str | list[str | Variant]


class Reason(_Strict):
    """The sentences a handoff note uses when this is the strongest reason of its group."""

    for_: Template | None = Field(None, alias="for", description="Sentence when it raised the score.")
    against: Template | None = Field(None, description="Sentence when it lowered the score.")


class SeniorityPatterns(_Strict):
    """Title regexes (case-insensitive) per seniority level, tried before the built-in rules."""

    executive: list[str] | None = Field(None, description="e.g. ['\\bgm\\b'].")
    vp: list[str] | None = Field(None, description="Regexes for VP-level titles.")
    director: list[str] | None = Field(None, description="Regexes for director-level titles.")
    manager: list[str] | None = Field(None, description="Regexes for manager-level titles.")
    student: list[str] | None = Field(None, description="Regexes for students and interns.")
    individual_contributor: list[str] | None = Field(None, description="Regexes for individual contributors.")


class Categorical(_Strict):
    """A text column that becomes a categorical feature."""

    group: str = Field(description="A business group (or one declared under `groups`).")
    description: Text = Field(description="Plain-English meaning, shown in reports and reason codes.")
    parse: Literal["seniority"] | None = Field(None, description="seniority: use the level parsed from a job title.")
    patterns: SeniorityPatterns | None = Field(None, description="Extra title regexes per seniority level, tried "
                                                                 "before the built-in ones.")
    reason: Reason | None = Field(None, description="This column's own sentences ({value} is its value).")


class Numeric(_Strict):
    """A numeric column that becomes a feature."""

    group: str = Field(description="A business group (or one declared under `groups`).")
    description: Text = Field(description="Plain-English meaning, shown in reports and reason codes.")
    min: float | None = Field(None, description="Values below are quarantined.")
    max: float | None = Field(None, description="Values above are quarantined.")
    reason: Reason | None = Field(None, description="This column's own sentences ({value} is its value).")


class Leads(_Table):
    """The leads table: one row per lead."""

    lead_id: str | LeadId | None = Field(None, description="The id column (default lead_id).")
    created_at: str | CreatedAt | None = Field(None, description="The creation time (default created_at).")
    target: Target | None = Field(None, description="The target from a leads column (or give `outcomes`).")
    categorical: dict[str, Categorical] | None = Field(None, description="Categorical features by column.")
    numeric: dict[str, Numeric] | None = Field(None, description="Numeric features by column.")
    legacy_score: str | None = Field(None, description="The rule-based 0-100 score being replaced (never a feature).")
    pii: list[str] | None = Field(None, description="Kept for notes, never features.")
    notes_allowed: list[str] | None = Field(None, description="Columns a rep may see in a handoff note.")
    keep: list[str] | None = Field(None, description="Carried through unchanged (usable in note templates).")
    drop_leaky: list[str] | None = Field(None, description="Dropped, and listed as leaky.")
    after_outcome: list[str] | None = Field(None, description="Kept, but the leak guard refuses them as features.")
    who: Template | None = Field(None, description="Who the lead is: the first template whose values all exist.")
    what_happened: Template | None = Field(None, description="What happened so far (sources without events).")


class EventTypeColumn(_Strict):
    """Where an event's type comes from."""

    column: Text = Field(description="The column (a derived one is fine).")
    map: dict[str, str] | None = Field(None, description="{raw value: event type}; unmapped values stay as they are "
                                                         "(an undeclared type becomes 'other').")


class EventSource(_Table):
    """One activity table (`events:` takes one, or a list unioned into the canonical events)."""

    name: str | None = Field(None, description="Names this source in reports and quarantine rows; default events_<n>.")
    lead_id: str | LeadId | None = Field(None, description="The lead id column (default lead_id).")
    occurred_at: str | TimeColumn | None = Field(None, description="Default occurred_at. Date-only times count as "
                                                                   "known at the end of that day in the stated "
                                                                   "timezone.")
    event_type: str | EventTypeColumn | None = Field(None, description="The type column (default event_type).")
    value: str | None = Field(None, description="A numeric column (e.g. call seconds) summed per event type and "
                                                "window for types declared with a `value`.")


class OutcomeJoin(_Strict):
    """Attach outcomes to leads through a key both files have."""

    column: Text = Field(description="The key column of the outcomes table.")
    leads_column: Text = Field(description="The same key in the leads table.")


class Converted(_Strict):
    """Which outcome rows mean converted."""

    column: Text = Field(description="The column.")
    positive: Any = Field(None, description="Values that mean converted.")
    negative: Any = Field(None, description="Values that mean not converted.")


class Outcomes(_Table):
    """An outcomes table (or a won-deals table), instead of `leads.target`."""

    lead_id: str | LeadId | None = Field(None, description="The lead id column (or `join`).")
    join: OutcomeJoin | None = Field(None, description="Attach lead ids through a key column the leads file also "
                                                       "has (a won-deals table keyed by email).")  # type: ignore[assignment]
    converted: str | Converted | None = Field(None, description="Default: a `converted` column, else converted = "
                                                               "converted_at is set.")
    converted_at: str | TimeColumn | None = Field(None, description="When it converted.")
    duplicates: Literal["quarantine", "earliest"] | None = Field(None, description="Several rows for one lead: "
                                                                   "quarantine all, or keep the earliest (default "
                                                                   "with join).")


class ValueMeaning(_Strict):
    """What the numeric `value` of this type's events means."""

    description: Text = Field(description="What the summed value means, e.g. 'Seconds on connected calls'.")
    unit: str = Field("value", description="Its unit, e.g. seconds.")


class EventType(_Strict):
    """An event type of the export's own: counts, recency and value features like the built-in types."""

    group: str = Field(description="A business group (or one declared under `groups`).")
    description: Text = Field(description="What is counted, e.g. 'Connected sales calls'.")
    high_intent: bool = Field(False, description="Counts towards 'days since the last high-intent action'.")
    noun: list[str] | None = Field(None, description="[one, many] for activity summaries, e.g. [call, calls].")
    reason: Reason | None = Field(None, description="Sentences for this type's features.")
    value: ValueMeaning | None = Field(None, description="Its events carry a summed numeric value.")


class Group(_Strict):
    """A reason group of the mapping's own."""

    label: Text = Field(description="The group's name in a note, e.g. 'Sales calls'.")
    reason: Reason | None = Field(None, description="Generic sentences, used when no feature template fills.")


class Truth(_Strict):
    """Ground truth of a generated export."""

    path: Text = Field(description="Parquet with lead_id and p_true.")


class Base(_Strict):
    """Overrides of params.yaml's `base`."""

    observation_days: int | None = Field(None, description="t0 = created_at + this many days.")
    horizon_days: int | None = Field(None, description="Converted within this many days after t0.")
    seed: int | None = Field(None, description="Random seed.")


class Params(_Strict):
    """params.yaml overrides by section (base, featurize, train, calibrate, ...)."""

    model_config = ConfigDict(extra="allow")
    base: Base | None = Field(None, description="Decision time and horizon.")


class SourceMapping(_Strict):
    """A source mapping (sources/*.yaml): how one export reaches the canonical leads, events and outcomes."""

    name: Text = Field(description="Names the source; models register as leadlift-<name> (synthetic: leadlift).")
    description: str | None = Field(None, description="Free text.")
    snapshot_at: Any = Field(None, description="When the export was taken; default: the newest timestamp in it.")
    null_values: str | list[str] | None = Field(None, description="Text values meaning missing in every table.")
    event_types: dict[str, EventType] | None = Field(None, description="Event types beyond the built-in list.")
    groups: dict[str, Group] | None = Field(None, description="Reason groups beyond the built-in ones.")
    leads: Leads = Field(description="The leads table.")
    events: EventSource | list[EventSource] | None = Field(None, description="One activity source or a list.")
    outcomes: Outcomes | None = Field(None, description="An outcomes table (or `leads.target`).")
    truth: str | Truth | None = Field(None, description="Ground truth (generated exports only; only evaluation "
                                                        "reads it).")
    params: Params | None = Field(None, description="params.yaml overrides, by section (run-source, source-params).")


def json_schema() -> dict[str, Any]:
    """The JSON Schema editors validate mappings with (committed as docs/mapping.schema.json)."""
    schema = SourceMapping.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "leadlift source mapping"
    return schema


def unknown_key(raw: Any, model: type[BaseModel] = SourceMapping, where: str = "") -> str | None:
    """The first unknown key in `raw`, as "unknown key leads.renmae; did you mean 'rename'? (known: ...)"."""
    if not isinstance(raw, Mapping):
        return None
    fields = {(f.alias or name): f.annotation for name, f in model.model_fields.items()}
    open_ended = model.model_config.get("extra") == "allow"
    for key, value in raw.items():
        if key not in fields:
            if open_ended:
                continue
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"unknown key {where}{key}{hint} (known: {', '.join(sorted(fields))})"
        found = _nested(value, fields[key], f"{where}{key}.")
        if found:
            return found
    return None


def _nested(value: Any, annotation: Any, where: str) -> str | None:
    """Follow a value into the models its annotation allows (a model, a list of models, a dict of models)."""
    models = [a for a in _flatten(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    if isinstance(value, Mapping):
        for m in models:
            return unknown_key(value, m, where)
        for inner in _dict_values(annotation):
            for key, item in value.items():
                found = _nested(item, inner, f"{where}{key}.")
                if found:
                    return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            for m in models:
                found = unknown_key(item, m, f"{where}{i}.")
                if found:
                    return found
    return None


def _flatten(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType, list, Annotated):
        return [x for a in typing.get_args(annotation) for x in _flatten(a)]
    return [annotation]


def _dict_values(annotation: Any) -> list[Any]:
    out = []
    for a in [annotation, *typing.get_args(annotation)]:
        if typing.get_origin(a) is dict:
            out.append(typing.get_args(a)[1])
    return out


def validation_message(error: ValidationError) -> str:
    """The first problem pydantic found, as "leads.numeric.visits.min: Input should be a valid number"."""
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith(("function-", "union[")) and p not in
                   ("str", "list[union[str,Variant]]", "list[str]"))
    return f"{loc}: {first['msg']}" if loc else str(first["msg"])
