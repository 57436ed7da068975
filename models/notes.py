"""Handoff notes for a whole chunk of leads at once: the rules of models/reasons.py applied to columns.

`models.handoff.build_notes_reference` states the rules one lead at a time (and a test holds this module to its
bytes). Here the reason catalog and the feature spec are compiled once per bundle (`compile_templates`): every template
variant becomes its parsed `if:` conditions and its literal and placeholder pieces. `render_notes` then, for all leads
and reason slots of a chunk together,

- chooses each slot's group by points (`why_now`, `strongest_against`) with numpy,
- picks the first variant whose conditions hold, whose values are there and that cites no count of zero (one
  boolean mask per variant), then the strongest feature's own templates, then the group's generic sentence,
- assembles the sentences with a few polars gathers and one `concat_str` (no per-row string code),
- and writes the JSON note exactly as `json.dumps(note, sort_keys=True)` would: its ", " and ": " separators,
  Python's repr of the rounded numbers (computed exactly, see `rounded`), and `\\uXXXX` escapes.

Python still runs per value in two rare places, on purpose: strings that hold a character outside printable ASCII (or
a quote or backslash) go through json's own C escaper, and values of types no polars expression formats the way
Python's `str` does (dates, decimals, floats compared as text, or formatted where a float is within 1e-6 of a rounding
tie) go through Python, once per distinct value.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from features.schema import EVENT_TYPES, LEAD_ID
from features.spec import KIND_TEXT
from models.reasons import (
    _CONDITION,
    _COUNT_NAME,
    _PLACEHOLDER,
    _SUMS,
    HIGH_INTENT_PHRASE,
    SENIORITY_LABEL,
    TIME_NOUNS,
    URGENCY_EVENTS,
    CatalogError,
    _fmt,
    _parts,
    _variants,
    event_phrase,
    group_contributions,
    group_label,
    source_catalog,
    spec_templates,
)

#: The headline when no group adds a whole point.
NO_REASON = "close to the average lead, no single factor adds a whole point"
#: Characters json.dumps(ensure_ascii=True) writes as they are: printable ASCII but the quote and the backslash.
_NEEDS_ESCAPE = r"[^\x20\x21\x23-\x5B\x5D-\x7E]"
_ESCAPED = re.compile(_NEEDS_ESCAPE)
_MARKDOWN = r"([\\`*_\[\]|~!#])"
_COMPARE: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    ">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal}
_NEVER = np.iinfo(np.int64).max


# ---------------------------------------------------------------- templates, compiled once per bundle


@dataclass(frozen=True)
class Condition:
    """One `if:` of a variant, parsed once: `name OP value`, where value is null, a quoted text or a number."""

    source: str
    name: str
    op: str
    #: "null", "text" or "number"; "invalid" when `models.reasons._holds` would raise (it raises when evaluated).
    kind: str
    target: float | str | None = None


@dataclass(frozen=True)
class Template:
    """One template variant: its conditions and its (literal, name, noun, plural) pieces."""

    id: int
    text: str
    conditions: tuple[Condition, ...]
    pieces: tuple[tuple[str, str | None, str | None, str | None], ...]
    #: A reason's sentence: it may not cite a count of zero (`models.reasons.cites_zero_count`).
    evidence: bool
    #: Where it is written: "catalog: groups.recency.for[2]", "source: company_size.reason.against[0]".
    origin: str = ""

    @property
    def names(self) -> list[str]:
        return [name for _, name, _, _ in self.pieces if name is not None]


@dataclass(frozen=True)
class Phrasing:
    """How one group is phrased in one direction, in the order `models.reasons.render_cited` tries: the group's own
    variants, then the templates of the lead's strongest feature of the group, then the generic sentence."""

    variants: tuple[int, ...]
    features: Mapping[str, tuple[int, ...]]
    generic: int | None


@dataclass(frozen=True)
class NoteTemplates:
    """A reason catalog and a feature spec compiled for columnar rendering (`compile_templates`)."""

    templates: tuple[Template, ...]
    groups: tuple[str, ...]
    labels: Mapping[str, str]
    #: Feature names in matrix order and the index of each one's group in `groups`.
    features: tuple[str, ...]
    feature_group: tuple[int, ...]
    phrasing: Mapping[tuple[str, str], Phrasing]
    who: tuple[int, ...]
    urgency: tuple[int, ...]
    #: The source's own "what happened" templates; None: the catalog's activity summary.
    what_happened: tuple[int, ...] | None
    #: Event kinds, their JSON names and how a rep names one event of each (urgency's last signal).
    kinds: tuple[str, ...]
    declared_kinds: frozenset[str]
    kind_phrase: Mapping[str, str]
    #: High-intent kinds and their phrases, in the order `derived_values` and `cited_events` try them.
    high_intent: Mapping[str, str]
    urgency_kinds: tuple[str, ...]
    activity: tuple[tuple[str, str, str], ...]

    def is_event_kind(self, kind: str) -> bool:
        return kind in KIND_TEXT or kind in self.declared_kinds


def parse_condition(source: Any) -> Condition:
    """A condition as `models.reasons._holds` reads it."""
    m = _CONDITION.match(source) if isinstance(source, str) else None
    if not m:
        return Condition(str(source), "", "", "invalid")
    name, op, raw = m.groups()
    if raw == "null":
        return Condition(source, name, op, "null")
    if raw[0] in "'\"":
        return Condition(source, name, op, "text" if op in ("==", "!=") else "invalid", raw.strip("'\""))
    try:
        return Condition(source, name, op, "number", float(raw))
    except ValueError:
        return Condition(source, name, op, "invalid")


def compile_templates(catalog: Mapping[str, Any], spec: Mapping[str, Any]) -> NoteTemplates:
    """Parse every template a note of this bundle can use, once: the catalog plus the source's own (see
    `models.reasons.source_catalog`), per group and direction in the order the row-by-row renderer tries them."""
    cat = source_catalog(catalog, spec)
    registry: list[Template] = []

    def listed(entry: Any, origin: str) -> list[tuple[str, dict[str, Any]]]:
        return [(f"{origin}[{i}]", v) for i, v in enumerate(_variants(entry))]

    def add(variants: Sequence[tuple[str, dict[str, Any]]], *, evidence: bool) -> tuple[int, ...]:
        ids = []
        for origin, variant in variants:
            conditions = variant.get("if", [])
            conditions = [conditions] if isinstance(conditions, str) else conditions
            registry.append(Template(len(registry), variant["text"], tuple(parse_condition(c) for c in conditions),
                                     _parts(variant["text"]), evidence, origin))
            ids.append(len(registry) - 1)
        return tuple(ids)

    feats = spec["features"]
    groups, _ = group_contributions(np.zeros((0, len(feats))), spec)
    own = spec_templates(spec)
    phrasing: dict[tuple[str, str], Phrasing] = {}
    for g in groups:
        whose = "source" if g in (spec.get("groups") or {}) else "catalog"
        for direction in ("for", "against"):
            variants = listed(cat.get("groups", {}).get(g, {}).get(direction), f"{whose}: groups.{g}.{direction}")
            generic = [(o, v) for o, v in variants if not v.get("if") and not _PLACEHOLDER.search(v["text"])]
            plain = [v for _, v in generic]
            specific = add([(o, v) for o, v in variants if v not in plain], evidence=True)
            by_feature = {}
            for f in feats:
                if f["group"] == g:
                    name = f["name"]
                    origin = (f"source: {name}.reason.{direction}" if direction in own.get(name, {})
                              else f"catalog: features.{name}.{direction}")
                    templates = dict(cat.get("features", {}).get(name, {}))
                    templates.update(own.get(name, {}))
                    by_feature[name] = add(listed(templates.get(direction), origin), evidence=True)
            phrasing[(g, direction)] = Phrasing(specific, by_feature,
                                                add(generic[:1], evidence=False)[0] if generic else None)
    declared = tuple(cat.get("declared_kinds") or ())
    high_intent = {**HIGH_INTENT_PHRASE, **(cat.get("high_intent_phrase") or {})}
    kinds = tuple(dict.fromkeys([*KIND_TEXT, *declared, *high_intent]))
    nouns = cat.get("event_nouns", {})
    activity = []
    for kind in [*EVENT_TYPES, *declared]:
        one, many = nouns.get(kind, [kind.replace("_", " "), kind.replace("_", " ") + "s"])
        activity.append((kind, str(one), str(many)))
    who = add([*listed(spec.get("who", []), "source: who"), *listed(cat.get("who") or [], "catalog: who")],
              evidence=False)
    urgency = add(listed(cat.get("urgency"), "catalog: urgency"), evidence=False)
    what_happened = (add(listed(spec["what_happened"], "source: what_happened"), evidence=False)
                     if spec.get("what_happened") else None)
    return NoteTemplates(
        templates=tuple(registry), groups=tuple(groups), labels={g: group_label(g, cat) for g in groups},
        features=tuple(f["name"] for f in feats), feature_group=tuple(groups.index(f["group"]) for f in feats),
        phrasing=phrasing, who=who, urgency=urgency, what_happened=what_happened,
        kinds=kinds, declared_kinds=frozenset(declared), kind_phrase={k: event_phrase(k, cat) for k in kinds},
        high_intent=high_intent, urgency_kinds=tuple(dict.fromkeys([*URGENCY_EVENTS, *high_intent])),
        activity=tuple(activity))


# ---------------------------------------------------------------- exact number formatting


#: Largest |round(v, digits) * 10**digits| read from a table of texts (`_decimals`) rather than built per value.
_TABLE_LIMIT = {1: 10_000, 4: 100_000}


def _decimal_texts(k: np.ndarray, digits: int, negative: np.ndarray) -> pl.Series:
    """The repr of k / 10**digits (k integral, |k| below 2**53): the decimal with its trailing zeros cut."""
    whole = np.abs(k).astype(np.int64)
    scale = 10**digits
    frac = pl.col("frac").cast(pl.String)
    if digits > 1:
        frac = frac.str.zfill(digits).str.strip_chars_end("0").replace("", "0")
    return pl.DataFrame({"neg": negative, "int": whole // scale, "frac": whole % scale}).select(
        pl.concat_str(pl.when(pl.col("neg")).then(pl.lit("-")).otherwise(pl.lit("")), pl.col("int").cast(pl.String),
                      pl.lit("."), frac)).to_series()


@functools.cache
def _decimals(digits: int) -> pl.Series:
    """repr(k / 10**digits) for k from -limit to limit, then "-0.0" (built once per process)."""
    limit = _TABLE_LIMIT[digits]
    k = np.arange(-limit, limit + 1)
    return _decimal_texts(k, digits, k < 0).append(pl.Series(["-0.0"])).rechunk()


def rounded(x: np.ndarray, digits: int) -> tuple[np.ndarray, pl.Series]:
    """Python's `round(v, digits)` of each value and its repr as json.dumps writes it, without a Python loop.

    round() is the decimal nearest to v's exact binary value (ties to even): that is rint(v * 10**digits) unless the
    product lies within 1e-6 of a tie (its own rounding error is below 1.2e-7 while |product| < 1e9), and the
    float nearest to k / 10**digits is IEEE division's own result. Its repr is that decimal, trailing zeros cut. The
    few values near a tie, huge or not finite go through Python."""
    x = np.asarray(x, dtype=np.float64)
    scale = float(10**digits)
    q = x * scale
    finite = np.isfinite(q)
    qf = np.where(finite, q, 0.0)
    slow = ~finite | (np.abs(qf) >= 1e9) | (np.abs(np.abs(qf - np.trunc(qf)) - 0.5) < 1e-6)
    k = np.where(slow, 0.0, np.rint(qf))
    value = np.where(k == 0, np.copysign(0.0, x), k / scale)
    limit = _TABLE_LIMIT.get(digits, 0)
    negative = np.signbit(value)
    if limit:
        wide = np.abs(k) > limit
        at = np.where((k == 0) & negative, 2 * limit + 1, np.where(wide, 0, k).astype(np.int64) + limit)
        text = _decimals(digits).gather(at)
        if wide.any():
            idx = np.flatnonzero(wide)
            text = text.scatter(idx, _decimal_texts(k[idx], digits, negative[idx]))
    else:
        text = _decimal_texts(k, digits, negative)
    if slow.any():
        idx = np.flatnonzero(slow)
        exact = [round(float(v), digits) for v in x[idx]]
        value[idx] = exact
        text = text.scatter(idx, [json.dumps(v) for v in exact])
    return value, text


@functools.cache
def _tenths() -> pl.Series:
    """f"{v:.1f}" for |v| < 10 by |rint(10 v)| (0..100), then the same with a minus sign."""
    k = np.arange(101)
    return pl.Series([f"{i // 10}.{i % 10}" for i in k] + [f"-{i // 10}.{i % 10}" for i in k], dtype=pl.String)


def format_floats(x: np.ndarray) -> pl.Series:
    """`models.reasons._fmt` of each float (null where not finite): whole numbers, and any from 10 up, as integers
    (Python's round, ties to even: np.rint), the others with one decimal, correctly rounded like f"{v:.1f}"."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    xf = np.where(finite, x, 0.0)
    r = np.rint(xf)
    whole = (np.abs(xf - r) < 1e-9) | (np.abs(xf) >= 10)
    q = xf * 10
    tie = np.abs(np.abs(q - np.trunc(q)) - 0.5) < 1e-6
    slow = finite & np.where(whole, np.abs(xf) >= 2.0**62, tie)
    safe = ~slow & finite
    ints = pl.Series(np.where(whole & safe, r, 0.0).astype(np.int64)).cast(pl.String)
    tenth = np.abs(np.where(whole | ~safe, 0.0, np.rint(q))).astype(np.int64) + np.where(xf < 0, 101, 0)
    text = pl.select(pl.when(pl.lit(~safe)).then(pl.lit(None, dtype=pl.String))
                     .when(pl.lit(whole)).then(pl.lit(ints)).otherwise(pl.lit(_tenths().gather(tenth)))).to_series()
    if slow.any():
        idx = np.flatnonzero(slow)
        text = text.scatter(idx, [_fmt(float(v)) for v in x[idx]])
    return text


def _needs_escape(text: str) -> bool:
    return _ESCAPED.search(text) is not None


#: The bytes of UTF-8 text that json.dumps escapes (or that start a character it escapes): control characters, '"',
#: backslash, DEL and every byte of a non-ASCII character.
_ESCAPED_BYTE = np.ones(256, dtype=bool)
_ESCAPED_BYTE[0x20:0x7F] = False
_ESCAPED_BYTE[[0x22, 0x5C]] = True


def _any_escaped_byte(s: pl.Series) -> bool:
    """Whether any text of a String column may need escapes, from its bytes at once (Arrow's data buffers): the
    regex per text costs about six times as much, and nearly every column holds none. Asked for Arrow's oldest
    layout (offsets + one data buffer): in the newer string view a short text lives inside its view, not in a data
    buffer, so another layout answers True and leaves the texts to the regex."""
    arrow = s.to_arrow(compat_level=pl.CompatLevel.oldest())
    if not (pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type)):
        return True
    for chunk in getattr(arrow, "chunks", [arrow]):
        buffers = chunk.buffers()
        for data in buffers[2:]:  # a (large) string array: validity, offsets, data
            if data is not None and _ESCAPED_BYTE[np.frombuffer(data, dtype=np.uint8)].any():
                return True
    return False


def needs_escape(s: pl.Series) -> np.ndarray:
    """Whether json.dumps escapes anything in each text: a character outside printable ASCII, a quote or a
    backslash. The bytes of the whole column are looked at first; the texts one by one only if any of them may."""
    s = s.cast(pl.String)
    if not _any_escaped_byte(s):
        return np.zeros(len(s), dtype=bool)
    return s.str.contains(_NEEDS_ESCAPE).fill_null(False).to_numpy()


def json_strings(s: pl.Series, escape: np.ndarray | None = None) -> pl.Series:
    """Each text as json.dumps writes it (null -> null): quoted, and escaped by json's own C function where it holds
    anything but printable ASCII (rare: those values alone go through Python). `escape` says which texts need it
    when the caller knows (see `assemble`), else they are scanned."""
    s = s.cast(pl.String)
    out = pl.select(pl.concat_str(pl.lit('"'), pl.lit(s), pl.lit('"')).fill_null("null")).to_series()
    idx = np.flatnonzero(needs_escape(s) if escape is None else escape)
    if len(idx):
        out = out.scatter(idx, [encode_basestring_ascii(v) for v in s.gather(idx).to_list()])
    return out


def json_values(s: pl.Series) -> pl.Series:
    """Each value of a column as json.dumps writes it (a raw value a note carries: buying timeline, contact)."""
    if s.dtype in (pl.String, pl.Categorical) or isinstance(s.dtype, pl.Enum):
        return json_strings(s)
    if s.dtype.is_integer():
        return s.cast(pl.String).fill_null("null")
    if s.dtype == pl.Boolean:
        return s.replace_strict([True, False], ["true", "false"], return_dtype=pl.String).fill_null("null")
    return pl.Series([json.dumps(v) for v in s.to_list()], dtype=pl.String)


def python_map(s: pl.Series, fn: Callable[[Any], Any], dtype: pl.DataType) -> pl.Series:
    """fn of each non-null value as Python sees it (`to_dicts` types), once per distinct value; null stays null. For
    the column types no polars expression formats the way Python does."""
    if s.dtype == pl.Null:
        return pl.repeat(None, len(s), dtype=dtype, eager=True)
    if isinstance(s.dtype, pl.List | pl.Array | pl.Struct | pl.Object) or s.dtype.is_float():
        return pl.Series([None if v is None else fn(v) for v in s.to_list()], dtype=dtype)
    if s.dtype == pl.Categorical or isinstance(s.dtype, pl.Enum):
        s = s.cast(pl.String)  # to_dicts gives the text
    distinct = s.drop_nulls().unique(maintain_order=True)
    return s.replace_strict(distinct, pl.Series([fn(v) for v in distinct.to_list()], dtype=dtype), default=None,
                            return_dtype=dtype)


# ---------------------------------------------------------------- the values a template can name


def _is_numeric(dtype: pl.DataType) -> bool:
    """Values Python sees as int, float or bool (`models.reasons._is_number`); a Decimal is not one."""
    return dtype.is_integer() or dtype.is_float() or dtype == pl.Boolean


def _is_text(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum)


def _py_float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class Values:
    """The values a chunk of leads' templates may name, one column per name, with what the row-by-row rules ask of
    each (computed once per name): whether a lead has the name at all, whether its value is missing (None, NaN or
    infinite), the number it is, the text `_fmt` writes for it, and Python's `float()` and `str()` of it.

    `present` names columns that only some leads have (a derived value set only where it exists)."""

    def __init__(self, frame: pl.DataFrame, present: Mapping[str, np.ndarray] | None = None,
                 parent: Values | None = None) -> None:
        self.frame = frame
        self.n = frame.height
        #: The frame's schema, read once (polars builds it anew on every access).
        self.schema: dict[str, pl.DataType] = dict(frame.schema)
        self._present = dict(present or {})
        self._parent = parent
        self._own = set(self.schema) if parent is None else set(self._present)
        self._cache: dict[tuple[str, str], Any] = {}
        self.ok_cache: dict[tuple[int, str | None], np.ndarray] = {}
        self.aliases: dict[str, Values] = {}

    def overlay(self, columns: Mapping[str, pl.Series], present: Mapping[str, np.ndarray]) -> Values:
        """These values with some names replaced (a template's "value", urgency's last signal)."""
        out = Values(self.frame.with_columns(list(columns.values())), {**present}, parent=self)
        out._own = set(columns)
        return out

    def _get(self, name: str, what: str, make: Callable[[pl.Series], Any]) -> Any:
        if self._parent is not None and name not in self._own:
            return self._parent._get(name, what, make)
        key = (name, what)
        if key not in self._cache:
            self._cache[key] = make(self.frame[name])
        return self._cache[key]

    def __contains__(self, name: str) -> bool:
        return name in self.schema

    def has(self, name: str) -> np.ndarray:
        if name not in self.schema:
            return np.zeros(self.n, dtype=bool)
        mine = self._present.get(name)
        if mine is None and self._parent is not None and name not in self._own:
            return self._parent.has(name)
        return np.ones(self.n, dtype=bool) if mine is None else mine

    def dtype(self, name: str) -> pl.DataType | None:
        return self.schema.get(name)

    def missing(self, name: str) -> np.ndarray:
        dtype = self.schema.get(name)
        if dtype is None:
            return np.ones(self.n, dtype=bool)
        if _is_numeric(dtype):  # null, NaN and infinities alike
            return ~np.isfinite(self.number(name))
        return self._get(name, "missing", lambda s: s.is_null().to_numpy())  # type: ignore[no-any-return]

    def number(self, name: str) -> np.ndarray:
        """float(v) for numeric values (NaN where null); all NaN when the column holds no numbers."""
        if name not in self.schema or not _is_numeric(self.schema[name]):
            return np.full(self.n, np.nan)

        def make(s: pl.Series) -> np.ndarray:
            if s.dtype == pl.Boolean or s.dtype.is_integer() and s.null_count():
                s = s.cast(pl.Float64)
            return np.asarray(s.to_numpy(), dtype=np.float64)  # polars writes a null float as NaN
        return self._get(name, "number", make)  # type: ignore[no-any-return]

    def as_float(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Python's float(v) and whether it succeeded (a condition `name > 3` on a text column parses the text)."""
        dtype = self.dtype(name)
        if dtype is None or _is_numeric(dtype):
            number = self.number(name)
            return number, ~self.missing(name)

        def make(s: pl.Series) -> tuple[np.ndarray, np.ndarray]:
            parsed = python_map(s, _py_float, pl.Float64())
            return parsed.fill_null(np.nan).to_numpy(), parsed.is_not_null().to_numpy()
        return self._get(name, "float", make)  # type: ignore[no-any-return]

    def number_or_zero(self, name: str) -> np.ndarray:
        """`models.reasons._num`: 0 for an absent or missing value."""
        value, ok = self.as_float(name)
        return np.where(ok & ~self.missing(name), value, 0.0)

    def as_str(self, name: str) -> pl.Series:
        """Python's str(v) (a condition `name == 'x'` compares it)."""
        def make(s: pl.Series) -> pl.Series:
            if _is_text(s.dtype) or s.dtype.is_integer():
                return s.cast(pl.String)
            if s.dtype == pl.Boolean:
                return s.replace_strict([True, False], ["True", "False"], return_dtype=pl.String)
            return python_map(s, str, pl.String())
        return self._get(name, "str", make)  # type: ignore[no-any-return]

    def text(self, name: str) -> pl.Series:
        """`models.reasons._fmt` of each value (null where missing): what a placeholder writes."""
        if name not in self.schema:
            return pl.repeat(None, self.n, dtype=pl.String, eager=True)

        def make(s: pl.Series) -> pl.Series:
            if s.dtype.is_float():
                return format_floats(s.fill_null(np.nan).to_numpy())
            if _is_text(s.dtype) or s.dtype.is_integer() or s.dtype == pl.Boolean:
                return self.as_str(name)
            return python_map(s, _fmt, pl.String())
        return self._get(name, "text", make)  # type: ignore[no-any-return]

    def escape(self, name: str) -> np.ndarray:
        """Whether the value's text needs JSON escapes (numbers never do)."""
        dtype = self.dtype(name)
        if dtype is None or _is_numeric(dtype):
            return np.zeros(self.n, dtype=bool)
        return self._get(name, "escape", lambda s: needs_escape(self.text(name)))  # type: ignore[no-any-return]

    def is_one(self, name: str) -> np.ndarray:
        """Whether the value is the number 1 (within 1e-9): the placeholder's noun is singular."""
        return np.abs(self.number(name) - 1.0) < 1e-9


def _holds(values: Values, c: Condition) -> np.ndarray:
    """`models.reasons._holds` for every lead."""
    if c.kind == "invalid":
        if not c.name or (values.has(c.name) & ~values.missing(c.name)).any():
            raise CatalogError(f"cannot read condition {c.source!r}; expected 'name OP value' (text compared with "
                               "== or != only)")
        return np.zeros(values.n, dtype=bool)
    has, missing = values.has(c.name), values.missing(c.name)
    if c.kind == "null":
        return has & (missing if c.op == "==" else ~missing)
    if c.name not in values:
        return np.zeros(values.n, dtype=bool)
    if c.kind == "text":
        same = (values.as_str(c.name) == c.target).fill_null(False).to_numpy()
        return has & ~missing & (same if c.op == "==" else ~same)
    number, parsed = values.as_float(c.name)
    with np.errstate(invalid="ignore"):
        return has & ~missing & parsed & _COMPARE[c.op](number, c.target)


def applies(values: Values, t: Template, alias: str | None = None) -> np.ndarray:
    """Whether each lead gets this variant if it is tried: its conditions hold, every placeholder has a value, and
    (for a reason) it cites no count of zero. `alias`: the feature a feature template's "value" stands for."""
    key = (t.id, alias)
    cache = values.ok_cache
    if key not in cache:
        vals = values if alias is None else _aliased(values, alias)
        ok = np.ones(values.n, dtype=bool)
        for c in t.conditions:
            ok &= _holds(vals, c)
        for _, name, noun, _ in t.pieces:
            if name is None:
                continue
            ok &= vals.has(name) & ~vals.missing(name)
            dtype = vals.dtype(name)
            if t.evidence and dtype is not None and _is_numeric(dtype) and (
                    _COUNT_NAME.match(name) or (noun is not None and noun not in TIME_NOUNS)):
                ok &= vals.number(name) != 0.0
        cache[key] = ok
    return cache[key]


def _aliased(values: Values, feature: str) -> Values:
    """The values with "value" standing for a feature (`{**vals, "value": vals.get(top_feature)}`)."""
    if feature not in values.aliases:
        column = (values.frame[feature] if feature in values
                  else pl.repeat(None, values.n, dtype=pl.String, eager=True))
        values.aliases[feature] = values.overlay({"value": column.alias("value")}, {})
    return values.aliases[feature]


def first_applying(values: Values, ids: Sequence[int], templates: NoteTemplates, rows: np.ndarray | None = None,
                   alias: str | None = None, chosen: np.ndarray | None = None) -> np.ndarray:
    """The id of the first variant that applies, per lead (-1: none); `chosen` carries earlier choices on."""
    rows = np.arange(values.n) if rows is None else rows
    out = np.full(len(rows), -1) if chosen is None else chosen
    for i in ids:
        open_ = out == -1
        if not open_.any():
            break
        out[open_ & applies(values, templates.templates[i], alias)[rows]] = i
    return out


@dataclass(frozen=True)
class Sentences:
    """Filled templates (null where none) and which of them need JSON escapes."""

    text: pl.Series
    escape: np.ndarray

    def or_blank(self) -> Sentences:
        """A note's field says "" where no template fills (`first_filled`)."""
        return Sentences(self.text.fill_null(""), self.escape)

    def json(self) -> pl.Series:
        return json_strings(self.text, self.escape)

    def json_body(self) -> pl.Series:
        """The JSON string without its quotes: the text itself, unless it needs escapes (the caller quotes it, so
        the text is not copied once more; null where no template filled)."""
        idx = np.flatnonzero(self.escape)
        if not len(idx):
            return self.text
        return self.text.scatter(idx, [encode_basestring_ascii(v)[1:-1] for v in self.text.gather(idx).to_list()])


def assemble(values: Values, templates: NoteTemplates, tid: np.ndarray, rows: np.ndarray,
             alias: np.ndarray | None = None, aliases: Sequence[str] = ()) -> Sentences:
    """The filled sentence of template `tid[e]` for lead `rows[e]`, for every entry e at once: literal pieces and
    formatted values gathered by index, then one `concat_str` (tid -1: null). `alias[e]` indexes `aliases`, the
    feature a "value" placeholder stands for. A sentence needs JSON escapes where a piece of it does."""
    m = len(tid)
    used = sorted({int(t) for t in np.unique(tid) if t >= 0})
    if not used:
        return Sentences(pl.repeat(None, m, dtype=pl.String, eager=True), np.zeros(m, dtype=bool))
    aliased = {aliases[a] for a in np.unique(alias[alias >= 0])} if alias is not None else set()
    names = sorted({n for t in used for n in templates.templates[t].names} | {"value"} | aliased)
    index = {n: i for i, n in enumerate(names)}
    n = values.n
    blank = len(names) * n
    texts = pl.concat([*(values.text(name) for name in names),
                       pl.Series([""], dtype=pl.String)], rechunk=True)
    ones = np.concatenate([*(values.is_one(name) for name in names), [False]])
    dirty = np.concatenate([*(values.escape(name) for name in names), [False]])
    width = max(len(templates.templates[t].pieces) for t in used)
    local = np.zeros(len(templates.templates), dtype=np.int64)
    local[used] = np.arange(len(used))
    words: dict[str, int] = {"": 0}
    lit = np.zeros((len(used), width), dtype=np.int64)
    name_at = np.full((len(used), width), -1, dtype=np.int64)
    singular = np.zeros((len(used), width), dtype=np.int64)
    plural = np.zeros((len(used), width), dtype=np.int64)
    for j, t in enumerate(used):
        for k, (literal, name, noun, many) in enumerate(templates.templates[t].pieces):
            lit[j, k] = words.setdefault(literal, len(words))
            if name is not None:
                name_at[j, k] = index[name]
            if noun:
                singular[j, k] = words.setdefault(f" {noun}", len(words))
                plural[j, k] = words.setdefault(f" {many or noun + 's'}", len(words))
    vocabulary = pl.Series(list(words), dtype=pl.String)
    word_dirty = np.array([_needs_escape(w) for w in words])
    lt = local[np.where(tid >= 0, tid, used[0])]
    # "value" is the column of that name, or for a feature template the feature it stands for.
    value_index = np.full(m, index["value"], dtype=np.int64)
    if alias is not None and aliased:
        known = np.array([index.get(a, index["value"]) for a in aliases], dtype=np.int64)
        value_index = np.where(alias >= 0, known[np.where(alias >= 0, alias, 0)], value_index)
    parts: list[pl.Series] = []
    escape = np.zeros(m, dtype=bool)
    for k in range(width):
        if lit[:, k].any():
            parts.append(vocabulary.gather(lit[lt, k]))
            escape |= word_dirty[lit[lt, k]]
        if (name_at[:, k] >= 0).any():
            nid = name_at[lt, k]
            nid = np.where(nid == index["value"], value_index, nid)
            at = np.where(nid >= 0, nid * n + rows, blank)
            parts.append(texts.gather(at))
            escape |= dirty[at]
            if singular[:, k].any():
                word = np.where(ones[at], singular[lt, k], plural[lt, k])
                parts.append(vocabulary.gather(word))
                escape |= word_dirty[word]
    frame = pl.DataFrame({f"p{i}": p for i, p in enumerate(parts)})
    out = frame.select(pl.concat_str(pl.all())).to_series()
    missing = tid < 0
    if missing.any():
        out = out.scatter(np.flatnonzero(missing), None)
    return Sentences(out, escape & ~missing)


# ---------------------------------------------------------------- derived values and the last signal


def derive(frame: pl.DataFrame, templates: NoteTemplates) -> tuple[Values, np.ndarray]:
    """`models.reasons.derived_values` for every lead: seniority label, the latest high-intent action and the
    research / demo-trial sums; plus each lead's latest high-intent kind (index into `templates.kinds`, -1: none),
    which reasons that cite "the latest buying signal" name."""
    values = Values(frame)
    columns: dict[str, pl.Series] = {}
    present: dict[str, np.ndarray] = {}
    if "seniority" in frame.columns:
        columns["seniority_label"] = values.as_str("seniority").replace_strict(
            SENIORITY_LABEL, default="Unknown-seniority", return_dtype=pl.String).fill_null("Unknown-seniority")
    latest, _ = last_signal(values, tuple(templates.high_intent))
    kind_index = {k: i for i, k in enumerate(templates.kinds)}
    hi = tuple(templates.high_intent)
    phrases = pl.Series([templates.high_intent[k] for k in hi] + [None], dtype=pl.String)
    action = phrases.gather(np.where(latest >= 0, latest, len(hi)))
    if "last_high_intent_action" in frame.columns:  # a column of that name keeps its value (as text) where no
        action = pl.select(pl.when(pl.lit(latest >= 0)).then(pl.lit(action))  # action is derived
                           .otherwise(pl.lit(values.as_str("last_high_intent_action")))).to_series()
    else:
        present["last_high_intent_action"] = latest >= 0
    columns["last_high_intent_action"] = action
    for window in (7, 30, 90):
        for name, kinds in _SUMS.items():
            parts = [f"{k}_{window}d" for k in kinds]
            if all(p in frame.columns for p in parts):
                total = np.zeros(values.n)
                for p in parts:
                    total = total + values.number_or_zero(p)
                columns[f"{name}_{window}d"] = pl.Series(total, dtype=pl.Float64)
    derived = values.overlay({k: s.alias(k) for k, s in columns.items()}, present)
    hi_kind = np.where(latest >= 0, np.array([kind_index[k] for k in hi] + [-1])[latest], -1)
    return derived, hi_kind


def last_signal(values: Values, kinds: Sequence[str], order: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """`models.reasons.last_signal` for every lead: the index (into `kinds`) of the most recent kind with a known
    time, ties to the earliest in `order` (default: the kinds' own order; a kind ordered `_NEVER` is not looked at),
    and its days; -1 and NaN where there is none."""
    n = values.n
    if not kinds:
        return np.full(n, -1), np.full(n, np.nan)
    days = np.column_stack([np.where(values.missing(f"days_since_{k}"), np.inf,
                                     values.as_float(f"days_since_{k}")[0]) for k in kinds])
    rank = np.broadcast_to(np.arange(len(kinds)), days.shape) if order is None else order
    allowed = (rank < _NEVER) & np.isfinite(days)
    soonest = np.where(allowed, days, np.inf).min(axis=1)
    tied = allowed & (days == soonest[:, None])
    pick = np.argmin(np.where(tied, rank, _NEVER), axis=1)
    found = allowed.any(axis=1)
    return np.where(found, pick, -1), np.where(found, days[np.arange(n), pick], np.nan)


# ---------------------------------------------------------------- notes


@dataclass(frozen=True)
class Explained:
    """What the model says about each lead of a chunk (`models.handoff.explain_rows` plus the bundle's score)."""

    probability: np.ndarray
    score: np.ndarray
    percentile: np.ndarray
    decision: np.ndarray
    contrib: np.ndarray
    groups: Sequence[str]
    group_contrib: np.ndarray
    points: np.ndarray


def reason_slots(points: np.ndarray, *, top: int, most: int = 5, min_points: float = 1.0,
                 extra_points: float = 5.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`why_now` and `strongest_against` for every lead: (row, position, group) of each reason for, in note order,
    and each lead's reason against (group index, -1: none)."""
    n, g = points.shape
    order = np.argsort(-points, axis=1, kind="stable")
    ranked = np.take_along_axis(points, order, axis=1)
    width = min(g, max(top, most))
    pos = np.arange(width)
    valid = np.where(pos < top, ranked[:, :width] >= min_points, (pos < most) & (ranked[:, :width] >= extra_points))
    rows, cols = np.nonzero(valid)
    position = (np.cumsum(valid, axis=1) - 1)[rows, cols]
    groups = order[rows, cols]
    worst = np.argmin(points, axis=1)
    chosen = np.zeros((n, g), dtype=bool)
    chosen[rows, groups] = True
    against = (points[np.arange(n), worst] <= -min_points) & ~chosen[np.arange(n), worst]
    return rows, position, groups, np.where(against, worst, -1)


def render_notes(values: pl.DataFrame, ex: Explained, templates: NoteTemplates, *, top: int = 3,
                 contact: pl.DataFrame | None = None, used: set[int] | None = None) -> pl.DataFrame:
    """One handoff note per row of `values` (each lead's features and firmographic text values, lead_id included),
    as columns: the flat CRM columns, every reason (`reason_<k>` and its points), the contact values as text, and
    `note`, the whole note as `json.dumps(note, sort_keys=True)` writes it. `used` (when given) receives the ids of
    the template variants the notes say."""
    n = values.height
    if n == 0:
        return _empty(min(len(templates.groups), max(top, 5)))
    vals, hi_kind = derive(values, templates)
    rows, position, groups, against = reason_slots(ex.points, top=top)
    width = min(len(templates.groups), max(top, 5))
    a_rows = np.flatnonzero(against >= 0)
    # Entries: every reason for, then every reason against; each has a row, a group and a direction.
    e_row = np.concatenate([rows, a_rows])
    e_group = np.concatenate([groups, against[a_rows]])
    e_for = np.arange(len(e_row)) < len(rows)
    e_pos = np.concatenate([position, np.full(len(a_rows), -1)])
    e_feature = _strongest(ex.contrib, templates, e_row, e_group)
    tid, alias = _choose(vals, templates, e_row, e_group, e_for, e_feature)
    aliases = list(templates.features)
    said = assemble(vals, templates, tid, e_row, alias, aliases)
    text = said.text
    events = _cited(vals, templates, tid, alias, e_row, hi_kind)
    points_value, points_json = rounded(ex.points[e_row, e_group], 1)
    _, logodds_json = rounded(ex.group_contrib[e_row, e_group], 4)
    # Each reason as JSON: a list's later items carry their ", " so a note joins them without another copy.
    opening = pl.Series(["{", ", {"], dtype=pl.String).gather((e_pos > 0).astype(np.int64))
    group_label = pl.Series([f'{encode_basestring_ascii(g)}, "label": {encode_basestring_ascii(templates.labels[g])}'
                             for g in templates.groups], dtype=pl.String)
    entry = pl.DataFrame({"text": text, "points": points_value}).with_columns(
        pl.concat_str(pl.lit(opening), pl.lit('"events": '), pl.lit(_event_lists(events, templates)),
                      pl.lit(', "group": '), pl.lit(group_label.gather(e_group)), pl.lit(', "log_odds": '),
                      pl.lit(logodds_json), pl.lit(', "points": '), pl.lit(points_json), pl.lit(', "text": "'),
                      pl.lit(said.json_body()), pl.lit('"}')).alias("json"))
    # Per-lead columns: each reason slot, and the reason against.
    cols: dict[str, pl.Series] = {}
    for k in range(width):
        sel = np.flatnonzero(e_pos == k)
        for name, src in ((f"reason_{k + 1}", "text"), (f"reason_{k + 1}_points", "points"), (f"_json_{k}", "json")):
            cols[name] = _scatter(n, e_row[sel], entry[src].gather(sel))
        if k == 0:
            first_escape = np.zeros(n, dtype=bool)
            first_escape[e_row[sel]] = said.escape[sel]
    sel = np.flatnonzero(~e_for)
    for name, src in (("reason_against", "text"), ("reason_against_points", "points"), ("_json_against", "json")):
        cols[name] = _scatter(n, e_row[sel], entry[src].gather(sel))
    # Urgency: the latest of the buying signals and of every event the note's reasons cite.
    signal_kind, signal_days, has_signal = _urgency_signal(vals, templates, events, e_row, e_pos, width)
    kinds = pl.Series([*templates.kinds, None], dtype=pl.String)
    pick = np.where(signal_kind >= 0, signal_kind, len(templates.kinds))
    last_kind = kinds.gather(pick)
    last_action = pl.Series([*(templates.kind_phrase[k] for k in templates.kinds), None], dtype=pl.String).gather(pick)
    signal = {"last_signal": last_kind, "last_signal_action": last_action,
              "last_signal_days": pl.Series(signal_days, dtype=pl.Float64).fill_nan(None)}
    urgency_vals = vals.overlay(
        {k: _where(has_signal, s, vals.frame[k] if k in vals else None).alias(k) for k, s in signal.items()},
        {k: has_signal | (k in vals) for k in signal})
    every = np.arange(n)
    chosen = {"who": first_applying(vals, templates.who, templates),
              "urgency": first_applying(urgency_vals, templates.urgency, templates),
              "what_happened": first_applying(vals, templates.what_happened or (), templates)}
    if used is not None:
        used.update(int(t) for t in np.unique(np.concatenate([tid, *chosen.values()])) if t >= 0)
    who = assemble(vals, templates, chosen["who"], every).or_blank()
    urgency = assemble(urgency_vals, templates, chosen["urgency"], every).or_blank()
    happened = (assemble(vals, templates, chosen["what_happened"], every).or_blank()
                if templates.what_happened is not None else _activity_summary(vals, templates))
    probability, probability_json = rounded(ex.probability, 4)
    percentile, percentile_json = rounded(ex.percentile, 1)
    score = pl.Series(np.asarray(ex.score).astype(np.int64))
    top_share = np.maximum(1, np.rint(100 - np.asarray(ex.percentile, dtype=np.float64))).astype(np.int64)
    decision = pl.Series(np.asarray(ex.decision).astype(str), dtype=pl.String)
    lead_id = values[LEAD_ID]
    headline = pl.select(pl.concat_str(
        pl.lit("Score "), pl.lit(score).cast(pl.String), pl.lit(" (top "), pl.lit(top_share).cast(pl.String),
        pl.lit("% of leads): "), pl.lit(cols["reason_1"] if width else _nulls(n)).fill_null(NO_REASON),
    )).to_series()
    contact = contact if contact is not None else pl.DataFrame()
    frame = pl.DataFrame({
        LEAD_ID: lead_id, "decision": decision, "score": score, "probability": probability,
        "percentile": percentile, "headline": headline,
        **{c: cols[c] for k in range(width) for c in (f"reason_{k + 1}", f"reason_{k + 1}_points")},
        "reason_against": cols["reason_against"], "reason_against_points": cols["reason_against_points"],
        "who": who.text, "urgency": urgency.text, "what_happened": happened.text,
        "contact": _contact_texts(contact, n),
    })
    days_high = (_maybe_int(vals.as_float("days_since_high_intent")[0], vals.missing("days_since_high_intent"))
                 if "days_since_high_intent" in vals else _nulls(n))
    timeline = (json_values(vals.frame["buying_timeline"]) if "buying_timeline" in vals
                else pl.repeat("null", n, dtype=pl.String, eager=True))
    headline_body = Sentences(headline, first_escape if width else needs_escape(headline)).json_body()
    # One copy into the note: every piece is there (null pieces are the reason slots a note does not fill).
    note = frame.select(pl.concat_str(
        pl.lit('{"against": '), pl.lit(cols["_json_against"]).fill_null("null"),
        pl.lit(', "contact": '), pl.lit(_contact_json(contact, n)),
        pl.lit(', "decision": '), pl.lit(json_strings(decision)),
        pl.lit(', "headline": "'), pl.lit(headline_body),
        pl.lit('", "lead_id": '), pl.lit(json_values(lead_id)),
        pl.lit(', "percentile": '), pl.lit(percentile_json),
        pl.lit(', "probability": '), pl.lit(probability_json),
        pl.lit(', "reasons": ['), *(pl.lit(cols[f"_json_{k}"]) for k in range(width)), pl.lit("]"),
        pl.lit(', "score": '), pl.lit(score).cast(pl.String),
        pl.lit(', "urgency": {"buying_timeline": '), pl.lit(timeline),
        pl.lit(', "days_since_high_intent": '), pl.lit(days_high).fill_null("null"),
        pl.lit(', "days_since_last_signal": '),
        pl.lit(_maybe_int(signal_days, np.isnan(signal_days))).fill_null("null"),
        pl.lit(', "last_signal": '), pl.lit(json_strings(_where(has_signal, last_kind, None))),
        pl.lit(', "text": "'), pl.lit(urgency.json_body()),
        pl.lit('"}, "what_happened": "'), pl.lit(happened.json_body()),
        pl.lit('", "who": "'), pl.lit(who.json_body()), pl.lit('"}'),
        ignore_nulls=True,
    )).to_series()
    return frame.with_columns(note.alias("note"))


def _event_lists(events: np.ndarray, templates: NoteTemplates) -> pl.Series:
    """Each entry's cited kinds as a JSON list ('["page_pricing", "meeting"]'), written once per distinct list."""
    m, width = events.shape
    if not width:
        return pl.repeat("[]", m, dtype=pl.String, eager=True)
    base = len(templates.kinds) + 1
    if base**width < 2**62:
        key = np.zeros(m, dtype=np.int64)
        for c in range(width):  # one integer per list: its kinds as digits in base len(kinds) + 1
            key = key * base + events[:, c] + 1
        _, first, at = np.unique(key, return_index=True, return_inverse=True)
    else:
        _, first, at = np.unique(events, axis=0, return_index=True, return_inverse=True)
    names = [encode_basestring_ascii(k) for k in templates.kinds]
    lists = ["[" + ", ".join(names[k] for k in events[i] if k >= 0) + "]" for i in first]
    return pl.Series(lists, dtype=pl.String).gather(np.asarray(at).reshape(-1))


def _choose(vals: Values, templates: NoteTemplates, e_row: np.ndarray, e_group: np.ndarray, e_for: np.ndarray,
            e_feature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`models.reasons.render_cited`'s choice for every entry: the template id, and the feature (index) its "value"
    stands for (-1: a group variant or the generic sentence). Where nothing phrases a group, raises the CatalogError
    the row-by-row renderer raises first (the first such lead, its reasons for before its reason against)."""
    tid = np.full(len(e_row), -1)
    alias = np.full(len(e_row), -1)
    unphrased: list[tuple[int, int, int, str]] = []
    feature_index = {f: j for j, f in enumerate(templates.features)}
    for gi, g in enumerate(templates.groups):
        for direction, mask in (("for", e_for), ("against", ~e_for)):
            sel = np.flatnonzero(mask & (e_group == gi))
            if not len(sel):
                continue
            ph = templates.phrasing[(g, direction)]
            r = e_row[sel]
            chosen = first_applying(vals, ph.variants, templates, r)
            for f, ids in ph.features.items():
                open_ = (chosen == -1) & (e_feature[sel] == feature_index[f])
                if ids and open_.any():
                    before = chosen.copy()
                    picked = first_applying(vals, ids, templates, r, alias=f, chosen=np.where(open_, -1, -2))
                    chosen = np.where(open_ & (picked >= 0), picked, before)
                    alias[sel[open_ & (picked >= 0)]] = feature_index[f]
            if (chosen == -1).any():
                if ph.generic is None:
                    first = int(sel[np.flatnonzero(chosen == -1)[0]])
                    unphrased.append((int(e_row[first]), int(not e_for[first]), first,
                                      f"no template can phrase group {g!r} ({direction}) for feature "
                                      f"{templates.features[e_feature[first]]!r}"))
                chosen[chosen == -1] = ph.generic if ph.generic is not None else -1
            tid[sel] = chosen
    if unphrased:
        raise CatalogError(min(unphrased)[3])
    return tid, alias


def _strongest(contrib: np.ndarray, templates: NoteTemplates, rows: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """For each (row, group) entry, the index of the group's feature with the largest |contribution|, the first on
    ties (`models.reasons.strongest_features`)."""
    out = np.zeros(len(rows), dtype=np.int64)
    group_of = np.array(templates.feature_group)
    for k in np.unique(groups):
        at = np.flatnonzero(groups == k)
        idx = np.flatnonzero(group_of == k)
        out[at] = idx[np.argmax(np.abs(contrib[np.ix_(rows[at], idx)]), axis=1)]
    return out


def _cited(vals: Values, templates: NoteTemplates, tid: np.ndarray, alias: np.ndarray, e_row: np.ndarray,
           hi_kind: np.ndarray) -> np.ndarray:
    """`models.reasons.cited_events` for every entry: (entries, C) kind indexes in citing order (-1: none)."""
    m = len(tid)
    events = np.full((m, 0), -1, dtype=np.int64)
    count = np.zeros(m, dtype=np.int64)
    kind_index = {k: i for i, k in enumerate(templates.kinds)}

    def cite(entries: np.ndarray, kind: np.ndarray, mask: np.ndarray) -> None:
        nonlocal events
        seen = (events[entries] == kind[:, None]).any(axis=1) if events.shape[1] else np.zeros(len(entries), bool)
        add = mask & ~seen & (kind >= 0)
        if not add.any():
            return
        if count[entries[add]].max() >= events.shape[1]:
            events = np.hstack([events, np.full((m, 1), -1, dtype=np.int64)])
        events[entries[add], count[entries[add]]] = kind[add]
        count[entries[add]] += 1

    key = tid * (len(templates.features) + 1) + alias + 1
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    for entries in np.split(order, bounds) if m else []:
        t, a = int(tid[entries[0]]), int(alias[entries[0]])
        r = e_row[entries]
        feature = templates.features[a] if a >= 0 else None
        for name in templates.templates[t].names:
            name = feature if (feature is not None and name == "value") else name
            kind = name[len("days_since_"):]
            if name.startswith("days_since_") and templates.is_event_kind(kind):
                cite(entries, np.full(len(r), kind_index[kind]), ~vals.missing(name)[r])
            elif name in ("days_since_high_intent", "last_high_intent_action"):
                cite(entries, hi_kind[r], hi_kind[r] >= 0)
            elif (match := _COUNT_NAME.match(name)):
                gate = vals.number_or_zero(name)[r] > 0
                base, window = match.group(1), match.group(2)
                for part in _SUMS.get(base, (base,) if templates.is_event_kind(base) else ()):
                    cite(entries, np.full(len(r), kind_index[part]),
                         gate & (vals.number_or_zero(f"{part}_{window}d")[r] > 0))
    return events


def _urgency_signal(vals: Values, templates: NoteTemplates, events: np.ndarray, e_row: np.ndarray,
                    e_pos: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`models.reasons.urgency_values` for every lead: the latest kind (index into templates.kinds, -1: none) among
    the buying signals and the kinds the note's reasons cite (in citing order, for ties), its days, and whether the
    lead has a signal at all (False for a source without event times)."""
    n = vals.n
    timed = [k for k in templates.kinds if f"days_since_{k}" in vals]
    column = {k: j for j, k in enumerate(timed)}
    to_timed = np.array([column.get(k, -1) for k in templates.kinds] + [-1])
    rank = np.full((n, len(timed)), _NEVER, dtype=np.int64)
    for i, k in enumerate(templates.urgency_kinds):
        if k in column:
            rank[:, column[k]] = i
    following = np.full(n, len(templates.urgency_kinds), dtype=np.int64)
    slots = [np.flatnonzero(e_pos == k) for k in range(width)] + [np.flatnonzero(e_pos == -1)]
    for entries in slots:
        for c in range(events.shape[1]):
            kind = to_timed[events[entries, c]]
            keep = kind >= 0
            r, kk = e_row[entries][keep], kind[keep]
            new = rank[r, kk] == _NEVER
            rank[r[new], kk[new]] = following[r[new]]
            following[r[new]] += 1
    has_signal = np.asarray((rank < _NEVER).any(axis=1), dtype=bool)
    pick, days = last_signal(vals, timed, rank)
    kind_index = {k: i for i, k in enumerate(templates.kinds)}
    as_kind = np.array([kind_index[k] for k in timed] + [-1])
    return np.where(pick >= 0, as_kind[pick], -1), days, has_signal


#: Counts below this are phrased from a table ("3 pricing-page views"), larger ones built per value.
_COUNT_TABLE = 1000


@functools.lru_cache(maxsize=256)
def _count_phrases(one: str, many: str) -> pl.Series:
    """f"{c} {one or many}" for the counts 1.._COUNT_TABLE-1, null for 0 (a kind the summary leaves out)."""
    return pl.Series([None] + [f"{c} {one if c == 1 else many}" for c in range(1, _COUNT_TABLE)], dtype=pl.String)


def _activity_summary(vals: Values, templates: NoteTemplates, window: int = 30) -> Sentences:
    """`models.reasons.activity_summary` for every lead: "In the last 30 days: 3 pricing-page views, ..." from the
    lead's counts (int(n) of each positive count, as Python truncates it)."""
    parts: list[pl.Series] = []
    escape = np.zeros(vals.n, dtype=bool)
    for kind, one, many in templates.activity:
        name = f"{kind}_{window}d"
        if vals.dtype(name) is None:
            continue
        value, parsed = vals.as_float(name)
        shown = parsed & ~vals.missing(name) & (np.where(parsed, value, 0.0) > 0)
        count = np.trunc(np.where(shown, value, 0.0))
        part = _count_phrases(one, many).gather(np.where(shown & (count < _COUNT_TABLE), count, 0).astype(np.int64))
        big = np.flatnonzero(shown & (count >= _COUNT_TABLE))
        if len(big):
            part = part.scatter(big, [f"{int(value[i])} {many}" for i in big])
        parts.append(part)
        escape |= shown & _needs_escape(one + many)
    empty = f"No tracked activity in the last {window} days."
    if not parts:
        return Sentences(pl.repeat(empty, vals.n, dtype=pl.String, eager=True), escape)
    joined = pl.concat_str([pl.lit(p) for p in parts], separator=", ", ignore_nulls=True)
    text = pl.select(pl.when(joined == "").then(pl.lit(empty))
                     .otherwise(pl.concat_str(pl.lit(f"In the last {window} days: "), joined, pl.lit(".")))).to_series()
    return Sentences(text, escape)


def _contact_texts(contact: pl.DataFrame, n: int) -> pl.Series:
    """str() of each note's non-null contact values, in column order (the Markdown contact line); null when the
    source allows no contact field in notes."""
    if not contact.width:
        return pl.Series("contact", [None] * n, dtype=pl.List(pl.String))
    texts = Values(contact)
    return pl.select(pl.concat_list([pl.lit(texts.as_str(c)) for c in contact.columns]).list.drop_nulls()).to_series()


def _contact_json(contact: pl.DataFrame, n: int) -> pl.Series:
    if not contact.width:
        return pl.repeat("{}", n, dtype=pl.String, eager=True)
    keys = sorted(contact.columns)
    pieces: list[pl.Expr] = []
    for i, key in enumerate(keys):
        pieces += [pl.lit(("{" if i == 0 else ", ") + encode_basestring_ascii(key) + ": "),
                   pl.lit(json_values(contact[key]))]
    return pl.select(pl.concat_str(*pieces, pl.lit("}"))).to_series()


def _maybe_int(x: np.ndarray, missing: np.ndarray) -> pl.Series:
    """`models.handoff._maybe_int`: int(round(v)) as text, null where missing."""
    ok = ~missing & np.isfinite(x)
    big = ok & (np.abs(x) >= 2.0**62)
    out = pl.Series(np.where(ok & ~big, np.rint(np.where(ok, x, 0.0)), 0).astype(np.int64)).cast(pl.String)
    out = out.scatter(np.flatnonzero(~ok), None) if (~ok).any() else out
    if big.any():
        idx = np.flatnonzero(big)
        out = out.scatter(idx, [str(int(round(float(v)))) for v in x[idx]])
    return out


def spread_index(n: int, rows: np.ndarray) -> pl.Series:
    """The gather index that spreads m values over n rows: value i to row rows[i] (rows distinct), null elsewhere
    (a null index gathers null: no null row appended, whose second chunk makes every gather slower)."""
    at = np.zeros(n, dtype=np.uint32)
    at[rows] = np.arange(len(rows), dtype=np.uint32)
    index = pl.Series(at)
    if len(rows) == n:
        return index
    empty = np.ones(n, dtype=bool)
    empty[rows] = False
    return pl.select(pl.when(pl.lit(empty)).then(None).otherwise(pl.lit(index))).to_series()


def _scatter(n: int, rows: np.ndarray, values: pl.Series) -> pl.Series:
    """A column of n rows holding values[i] at rows[i] (rows distinct) and null elsewhere."""
    return values.gather(spread_index(n, rows))


def _where(mask: np.ndarray, yes: pl.Series, no: pl.Series | None) -> pl.Series:
    other = pl.lit(None, dtype=yes.dtype) if no is None else pl.lit(no.cast(yes.dtype))
    return pl.select(pl.when(pl.lit(mask)).then(pl.lit(yes)).otherwise(other)).to_series().alias(yes.name)


def _nulls(n: int) -> pl.Series:
    return pl.repeat(None, n, dtype=pl.String, eager=True)


def note_columns_all(width: int) -> dict[str, pl.DataType]:
    """The columns of a notes frame with `width` reason slots (see `render_notes`)."""
    schema: dict[str, pl.DataType] = {LEAD_ID: pl.String(), "decision": pl.String(), "score": pl.Int64(),
                                      "probability": pl.Float64(), "percentile": pl.Float64(),
                                      "headline": pl.String()}
    for k in range(width):
        schema |= {f"reason_{k + 1}": pl.String(), f"reason_{k + 1}_points": pl.Float64()}
    return schema | {"reason_against": pl.String(), "reason_against_points": pl.Float64(), "who": pl.String(),
                     "urgency": pl.String(), "what_happened": pl.String(), "contact": pl.List(pl.String()),
                     "note": pl.String()}


def _empty(width: int) -> pl.DataFrame:
    return pl.DataFrame(schema=note_columns_all(width))


# ---------------------------------------------------------------- Markdown


def md_expr(text: pl.Expr) -> pl.Expr:
    """`models.handoff.md_text` as an expression: HTML escaped, on one line, Markdown syntax backslash-escaped."""
    return (text.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True)
            .str.replace_all(">", "&gt;", literal=True).str.replace_all("\n", " ", literal=True)
            .str.replace_all("\r", " ", literal=True).str.replace_all(_MARKDOWN, r"\${1}"))


def _points_expr(points: pl.Expr) -> pl.Expr:
    """Signed whole points ("+0" for -0.4), as `models.handoff._points` writes them."""
    v = points.cast(pl.Float64).round(0, mode="half_to_even").cast(pl.Int64)
    return pl.when(v >= 0).then(pl.concat_str(pl.lit("+"), v.cast(pl.String))).otherwise(v.cast(pl.String))


def notes_markdown(frame: pl.DataFrame) -> pl.Series:
    """Each note as a rep reads it (`models.handoff.note_markdown`), from a notes frame."""
    width = sum(1 for c in frame.columns if c.startswith("reason_") and c[7:].isdigit())
    no_reason = f"- {NO_REASON[0].upper()}{NO_REASON[1:]}"

    def text(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.String)

    def reason(prefix: str, name: str) -> pl.Expr:
        return pl.concat_str(pl.lit(prefix), md_expr(text(name)), pl.lit(" ("), _points_expr(pl.col(f"{name}_points")),
                             pl.lit(" pts)"))

    lines: list[pl.Expr] = [
        pl.concat_str(pl.lit("### Lead "), md_expr(text(LEAD_ID)), pl.lit(": score "), text("score"), pl.lit(" ("),
                      text("decision"), pl.lit(")")),
        pl.lit(""),
        pl.concat_str(pl.lit("**Who:** "), md_expr(text("who"))),
        pl.concat_str(pl.lit("**Contact:** "),
                      pl.col("contact").cast(pl.List(pl.String)).list.eval(md_expr(pl.element())).list.join(", ")),
        pl.lit(""), pl.lit("**Why now:**"),
        *(reason("- ", f"reason_{k}") for k in range(1, width + 1)),
        pl.when((text("reason_1") if width else pl.lit(None, dtype=pl.String)).is_null()).then(pl.lit(no_reason)),
        reason("- Against: ", "reason_against"),
        pl.lit(""), pl.concat_str(pl.lit("**Urgency:** "), md_expr(text("urgency"))),
        pl.concat_str(pl.lit("**What happened:** "), md_expr(text("what_happened"))),
        pl.lit(""),
    ]
    return frame.select(pl.concat_str(lines, separator="\n", ignore_nulls=True)).to_series()


__all__ = ["NO_REASON", "Explained", "NoteTemplates", "compile_templates", "notes_markdown", "render_notes",
           "rounded", "spread_index"]
