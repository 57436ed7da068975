"""The feature spec: every model column with its type, categories, business group and plain-English meaning.

Train, calibrate, explain and score all turn a feature frame into a matrix through `to_matrix` with the same spec,
so a category code means the same thing everywhere and an unseen value lands in "other" instead of a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from features.build import (
    BREADTH,
    BREADTH_DAYS,
    CAREERS_ONLY,
    HIGH_INTENT_RECENCY,
    IS_STUDENT_DOMAIN,
    LABEL,
    SCOPE,
    SENIORITY,
    SENIORITY_LEVELS,
    SPLIT,
    T0,
    VELOCITY,
    VELOCITY_BASE_DAYS,
    VELOCITY_RECENT_DAYS,
    count_name,
    event_kinds,
    feature_columns,
    firmographic_columns,
    high_intent_kinds,
    recency_name,
    value_kinds,
    value_name,
)
from features.schema import EVENT_GROUP, GROUPS, LEAD_ID, LEGACY_SCORE

OTHER = "other"
NUMERIC = "numeric"
CATEGORICAL = "categorical"
#: Columns a feature frame carries besides the features; they are never "extra".
META_COLUMNS: frozenset[str] = frozenset({LEAD_ID, T0, SPLIT, SCOPE, LABEL, LEGACY_SCORE})

#: How each event kind reads in a sentence: (what is counted, unit, one such event).
KIND_TEXT: dict[str, tuple[str, str, str]] = {
    "page_pricing": ("Pricing-page views", "views", "pricing-page view"),
    "page_product": ("Product-page views", "views", "product-page view"),
    "page_docs": ("Documentation-page views", "views", "documentation-page view"),
    "page_careers": ("Careers-page views", "views", "careers-page view"),
    "page_blog": ("Blog-post views", "views", "blog-post view"),
    "email_open": ("Marketing emails opened", "emails", "email opened"),
    "email_click": ("Links clicked in marketing emails", "clicks", "email link click"),
    "email_reply": ("Replies to our emails", "replies", "email reply"),
    "form_fill": ("Web forms filled in", "forms", "form filled in"),
    "content_download": ("Content downloads (guides, white papers)", "downloads", "content download"),
    "webinar": ("Webinars attended", "webinars", "webinar attended"),
    "demo_request": ("Demo requests", "requests", "demo request"),
    "trial_start": ("Free trials started", "trials", "trial start"),
    "meeting": ("Meetings held with sales", "meetings", "meeting with sales"),
    "other": ("Other tracked activities", "events", "other tracked activity"),
}


def make_spec(
    frame: pl.DataFrame,
    source: Mapping[str, Any],
    *,
    observation_days: int,
    horizon_days: int,
    windows: Sequence[int],
    train_mask: pl.Series | np.ndarray | None = None,
) -> dict[str, Any]:
    """Describe every feature column `build_features` wrote; categories are learned from the train rows only.

    Examples
    --------
    >>> frame = pl.DataFrame({"lead_id": ["a", "b", "c"], "industry": ["retail", "software", "retail"],
    ...                       "seats": [3.0, None, 10.0]})
    >>> source = {"name": "demo", "has_events": False,
    ...           "categorical": {"industry": {"group": "company_fit", "description": "Industry"}},
    ...           "numeric": {"seats": {"group": "company_fit", "description": "Seats in use"}}}
    >>> spec = make_spec(frame, source, observation_days=7, horizon_days=30, windows=[7],
    ...                  train_mask=pl.Series([True, False, True]))
    >>> [(f["name"], f["kind"], f.get("categories"), f["missing_share"]) for f in spec["features"]]
    [('industry', 'categorical', ['retail', 'other'], 0.0), ('seats', 'numeric', None, 0.0)]
    """
    names = feature_columns(source, windows)
    check_compatible({"features": [{"name": n} for n in names]}, frame.columns, allow_extra=True)
    train = frame if train_mask is None else frame.filter(pl.Series(train_mask, dtype=pl.Boolean))
    described = {f["name"]: f for f in _describe(source, windows=windows)}
    features: list[dict[str, Any]] = []
    for name in names:
        f = dict(described[name])
        if f["kind"] == CATEGORICAL:
            f["categories"] = _categories(train[name])
        if "source_column" in f:
            # How often the input was missing in training: scoring warns and refuses a batch that misses it far more
            # often (a column left out, or values the model never saw), see `input_gaps`.
            f["missing_share"] = round(train[name].null_count() / train.height, 4) if train.height else 0.0
        features.append(f)
    return {
        "version": 1,
        "source": source.get("name"),
        "observation_days": int(observation_days),
        "horizon_days": int(horizon_days),
        "windows": sorted({int(w) for w in windows}),
        "has_events": bool(source.get("has_events", True)),
        "event_types": list(event_kinds(source)),
        "label": _label_definition(observation_days, horizon_days, bool(source.get("has_outcome_times", True))),
        "train_rows": train.height,
        "source_roles": _source_roles(source),
        "features": features,
        # The source's own note templates for "who is this lead" and "what happened" (tried before the catalog's).
        "who": list(source.get("who") or []),
        "what_happened": list(source.get("what_happened") or []),
        # A source's own reason groups (label, generic sentences) and event types (nouns, high-intent phrases).
        **({"groups": dict(source["groups"])} if source.get("groups") else {}),
        **({"declared_event_types": dict(source["event_types"])} if source.get("event_types") else {}),
    }


def feature_names(spec: Mapping[str, Any]) -> list[str]:
    """Feature names in matrix column order."""
    return [f["name"] for f in spec["features"]]


def categorical_indices(spec: Mapping[str, Any]) -> list[int]:
    """Matrix columns that hold category codes (for LightGBM's `categorical_feature`)."""
    return [j for j, f in enumerate(spec["features"]) if f["kind"] == CATEGORICAL]


def check_compatible(spec: Mapping[str, Any], frame_columns: Iterable[str], *, allow_extra: bool = False) -> None:
    """Raise ValueError naming the spec's features the frame lacks and the frame's columns the spec does not know.

    lead_id, t0, split, scope, label and legacy_score are never extra.

    Examples
    --------
    >>> check_compatible({"features": [{"name": "a"}, {"name": "b"}]}, ["lead_id", "a", "c"])
    Traceback (most recent call last):
    ...
    ValueError: frame does not match the feature spec: missing ['b']; extra ['c']
    """
    cols = list(frame_columns)
    names = feature_names(spec)
    missing = [n for n in names if n not in set(cols)]
    extra = [] if allow_extra else [c for c in cols if c not in set(names) and c not in META_COLUMNS]
    if missing or extra:
        parts = ([f"missing {missing}"] if missing else []) + ([f"extra {extra}"] if extra else [])
        raise ValueError(f"frame does not match the feature spec: {'; '.join(parts)}")


def to_matrix(frame: pl.DataFrame, spec: Mapping[str, Any]) -> np.ndarray:
    """Float64 matrix in spec order: category codes by position in the spec (unseen -> "other", null -> NaN).

    Examples
    --------
    >>> spec = {"features": [{"name": "tier", "kind": "categorical", "categories": ["gold", "silver", "other"]},
    ...                      {"name": "visits", "kind": "numeric"}]}
    >>> to_matrix(pl.DataFrame({"tier": ["silver", "bronze", None], "visits": [1, None, 3]}), spec)
    array([[ 1.,  1.],
           [ 2., nan],
           [nan,  3.]])
    """
    check_compatible(spec, frame.columns, allow_extra=True)
    exprs = [_encode(f) for f in spec["features"]]
    if not exprs:
        return np.empty((frame.height, 0), dtype=np.float64)
    matrix = frame.select(exprs).to_numpy(order="c")
    return np.asarray(matrix, dtype=np.float64)


def input_gaps(leads: pl.DataFrame, spec: Mapping[str, Any], *, absent: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Per model input read from the leads file (one entry per source column): rows that miss it, rows with a
    category the model never saw (scored as "other"), their share of the batch, and the share of training rows that
    missed it (`missing_share` in the spec; 0 for a spec written before it was kept). `absent` names columns the file
    did not have at all (filled as missing). Scoring warns about, and refuses, inputs missing far more often than in
    training: the model still scores such leads, but as if nothing were known.

    Examples
    --------
    >>> spec = {"features": [{"name": "tier", "kind": "categorical", "categories": ["gold", "other"],
    ...                       "source_column": "tier", "missing_share": 0.1}]}
    >>> [(g["column"], g["missing"], g["unseen"], g["share"]) for g in
    ...  input_gaps(pl.DataFrame({"tier": ["gold", "bronze", None]}), spec)]
    [('tier', 1, 1, 0.6667)]
    """
    absent = set(absent)
    seen: set[str] = set()
    gaps: list[dict[str, Any]] = []
    for f in spec["features"]:
        col = f.get("source_column")
        if col is None or col in seen or col not in leads.columns:
            continue
        seen.add(col)
        values = leads[col]
        missing = values.null_count()
        unseen = 0
        if f["kind"] == CATEGORICAL and f["name"] == col:  # a parsed column (job_title -> seniority) has no unseen
            unseen = int((values.is_not_null() & ~values.cast(pl.String).is_in(list(f["categories"]))).sum())
        gaps.append({
            "column": col, "feature": f["name"], "absent": col in absent, "missing": missing, "unseen": unseen,
            "share": _gap_share(missing + unseen, leads.height), "train_share": float(f.get("missing_share", 0.0)),
        })
    return gaps


def merge_gaps(parts: Sequence[Sequence[Mapping[str, Any]]], rows: int) -> list[dict[str, Any]]:
    """`input_gaps` of a batch from those of its disjoint parts (every part's gaps list the same columns in the same
    order), `rows` leads in all: the counts add up and the shares are taken over the whole batch.

    Examples
    --------
    >>> part = [{"column": "tier", "feature": "tier", "absent": False, "missing": 1, "unseen": 0, "share": 0.5,
    ...          "train_share": 0.1}]
    >>> [(g["missing"], g["share"]) for g in merge_gaps([part, part, part], rows=5)]
    [(3, 0.6)]
    """
    merged: list[dict[str, Any]] = []
    for same in zip(*parts, strict=True):
        missing, unseen = sum(int(g["missing"]) for g in same), sum(int(g["unseen"]) for g in same)
        merged.append({**same[0], "missing": missing, "unseen": unseen, "share": _gap_share(missing + unseen, rows)})
    return merged


def _gap_share(gaps: int, rows: int) -> float:
    return round(gaps / rows, 4) if rows else 0.0


def _encode(feature: Mapping[str, Any]) -> pl.Expr:
    col = pl.col(feature["name"])
    if feature["kind"] != CATEGORICAL:
        return col.cast(pl.Float64).fill_nan(None).alias(feature["name"])
    cats = list(feature["categories"])
    other = cats.index(OTHER) if OTHER in cats else len(cats)
    codes = col.cast(pl.String).replace_strict(
        cats, list(range(len(cats))), default=other, return_dtype=pl.Float64
    )
    return pl.when(col.is_null()).then(pl.lit(None, dtype=pl.Float64)).otherwise(codes).alias(feature["name"])


def _categories(values: pl.Series) -> list[str]:
    """Sorted values seen in train, then "other" (unseen values and "other" itself share its code)."""
    seen = values.cast(pl.String).drop_nulls().unique().to_list()
    return sorted(v for v in seen if v != OTHER) + [OTHER]


def _describe(source: Mapping[str, Any], *, windows: Sequence[int]) -> list[dict[str, Any]]:
    """Name, kind, group, description and unit of every feature (categories are added from the data)."""
    cats, numeric = firmographic_columns(source)
    categorical_meta = source.get("categorical") or {}
    numeric_meta = source.get("numeric") or {}
    groups = {*GROUPS, *(source.get("groups") or {})}
    out: list[dict[str, Any]] = []
    for name, src in cats:
        meta = categorical_meta[src] or {}
        f: dict[str, Any] = {"name": name, "kind": CATEGORICAL, "group": _group(meta, src, groups), "unit": "category",
                             "source_column": src}
        if name == SENIORITY and src != SENIORITY:
            f["description"] = (f"Seniority parsed from the free-text {src} ({', '.join(SENIORITY_LEVELS)}); "
                                "the title itself is never a feature")
        else:
            f["description"] = str(meta.get("description") or src)
        if meta.get("reason"):
            f["reason"] = meta["reason"]
        out.append(f)
    for name in numeric:
        meta = numeric_meta[name] or {}
        f = {"name": name, "kind": NUMERIC, "group": _group(meta, name, groups),
             "unit": str(meta.get("unit") or "value"), "description": str(meta.get("description") or name),
             "source_column": name}
        if meta.get("reason"):
            f["reason"] = meta["reason"]
        out.append(f)
    if IS_STUDENT_DOMAIN in feature_columns(source, windows):
        out.append({"name": IS_STUDENT_DOMAIN, "kind": NUMERIC, "group": "email_domain", "unit": "flag",
                    "description": "1 if the email address is on a student (education) domain, else 0",
                    "source_column": "email_domain_kind"})
    if source.get("has_events", True):
        out += _describe_events(windows, source)
    return out


def kind_text(kind: str, source: Mapping[str, Any]) -> tuple[str, str, str]:
    """(what is counted, unit, one such event) for a built-in kind or a source's declared one."""
    if kind in KIND_TEXT:
        return KIND_TEXT[kind]
    meta = (source.get("event_types") or {})[kind]
    noun = meta.get("noun") or [kind.replace("_", " "), kind.replace("_", " ") + "s"]
    return str(meta["description"]), str(noun[1]), str(noun[0])


def _describe_events(windows: Sequence[int], source: Mapping[str, Any]) -> list[dict[str, Any]]:
    declared = source.get("event_types") or {}
    group = {**EVENT_GROUP, **{k: v["group"] for k, v in declared.items()}}
    out: list[dict[str, Any]] = []
    wins = sorted({int(w) for w in windows})

    def feature(name: str, kind: str, **f: Any) -> dict[str, Any]:
        reason = (declared.get(kind) or {}).get("reason")
        return {"name": name, "kind": NUMERIC, "group": group[kind], **f, **({"reason": reason} if reason else {})}

    for kind in event_kinds(source):
        what, unit, _ = kind_text(kind, source)
        for w in wins:
            span = "day" if w == 1 else f"{w} days"
            out.append(feature(count_name(kind, w), kind, unit=unit,
                               description=f"{what} in the {span} before the decision time"))
    for kind in event_kinds(source):
        one = kind_text(kind, source)[2]
        # "A demo request 2 days ago" is a demo/trial reason; the "recency" group is the high-intent recency and pace.
        out.append(feature(recency_name(kind), kind, unit="days",
                           description=f"Days since the last {one} before the decision time (empty if none)"))
    for kind in value_kinds(source):
        meaning = declared[kind]["value"]
        for w in wins:
            span = "day" if w == 1 else f"{w} days"
            out.append(feature(value_name(kind, w), kind, unit=str(meaning.get("unit") or "value"),
                               description=f"{meaning['description']} in the {span} before the decision time"))
    prior = VELOCITY_BASE_DAYS - VELOCITY_RECENT_DAYS
    extra = [kind_text(k, source)[2] for k in high_intent_kinds(source) if k in declared]
    out += [
        {"name": HIGH_INTENT_RECENCY, "kind": NUMERIC, "group": "recency", "unit": "days",
         "description": "Days since the last high-intent action (pricing-page view, demo request, trial start"
                        + "".join(f", {e}" for e in extra) + " or email reply) before the decision time (empty if "
                        "none)"},
        {"name": VELOCITY, "kind": NUMERIC, "group": "recency", "unit": "ratio",
         "description": f"Activity in the {VELOCITY_RECENT_DAYS} days before the decision time against the pace of "
                        f"the {prior} days before that, each count +1 (1 = steady, above 1 = speeding up)"},
        {"name": BREADTH, "kind": NUMERIC, "group": "engagement", "unit": "kinds",
         "description": f"Number of different kinds of activity in the {BREADTH_DAYS} days before the decision time"},
        {"name": CAREERS_ONLY, "kind": NUMERIC, "group": "job_seeker", "unit": "flag",
         "description": f"1 if the only website or buying activity in the {BREADTH_DAYS} days before the decision "
                        "time was careers-page views, else 0"},
    ]
    return out


def _group(meta: Mapping[str, Any], column: str, groups: set[str]) -> str:
    group = meta.get("group")
    if group not in groups:
        raise ValueError(f"column {column!r}: group {group!r} is not one of {sorted(groups)}")
    return str(group)


def _label_definition(observation_days: int, horizon_days: int, has_outcome_times: bool) -> dict[str, Any]:
    if not has_outcome_times:
        return {"t0": f"created_at + {observation_days} days", "target": "converted (the source has no outcome "
                "times, so every lead is in scope and the label is whether it converted at all)",
                "has_outcome_times": False}
    return {
        "t0": f"created_at + {observation_days} days (scoring: the as-of time)",
        "target": f"converted within {horizon_days} days after t0 (t0 <= converted_at < t0 + {horizon_days} days)",
        "out_of_scope": {"converted_before_t0": "converted_at < t0",
                         "censored": f"t0 + {horizon_days} days is after the snapshot, or a conversion without a time"},
        "has_outcome_times": True,
    }


def _source_roles(source: Mapping[str, Any]) -> dict[str, Any]:
    """The column roles scoring needs to rebuild the same features from a new export."""
    keys = ("name", "categorical", "numeric", "pii", "notes_allowed", "after_outcome", "keep", "legacy_score",
            "has_events", "has_outcome_times", "event_types", "groups")
    return {k: source[k] for k in keys if k in source}
