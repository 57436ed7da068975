"""Reason codes: SHAP contributions grouped into business groups, turned into score points and plain sentences.

The sentences live in a YAML catalog (models/reasons.yaml, plus `reason` templates that a source mapping gives its
own columns). A template is filled with the lead's own values; a feature the catalog cannot phrase is an error, never
a silent fallback to the column name.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.schema import EVENT_TYPES, GROUPS

_CONDITION = re.compile(r"^\s*(\w+)\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")
_PLACEHOLDER = re.compile(r"\{(\w+)(?:\|([^}|]+)(?:\|([^}]+))?)?\}")
_ABSENT = object()

#: How a rep would name each high-intent action, for "the latest buying signal".
HIGH_INTENT_PHRASE = {
    "page_pricing": "a pricing-page visit",
    "demo_request": "a demo request",
    "trial_start": "a trial start",
    "email_reply": "an email reply",
}

SENIORITY_LABEL = {
    "executive": "Executive",
    "vp": "VP",
    "director": "Director",
    "manager": "Manager",
    "individual_contributor": "Individual-contributor",
    "student": "Student",
}


@dataclass(frozen=True)
class Reason:
    """One reason a rep reads: its business group, its sentence, and what it added to the 0-100 score."""

    group: str
    label: str
    text: str
    points: float
    log_odds: float

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "label": self.label, "text": self.text, "points": self.points,
                "log_odds": self.log_odds}


class CatalogError(KeyError):
    """The catalog cannot phrase a feature or group: fix the YAML, do not fall back to a column name."""


def group_contributions(contrib: np.ndarray, spec: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """Sum per-feature log-odds contributions (n, F[+1]) into business groups (n, G), in a stable group order."""
    feats = spec["features"]
    groups = sorted({f["group"] for f in feats}, key=lambda g: (list(GROUPS).index(g) if g in GROUPS else 99, g))
    index = {g: i for i, g in enumerate(groups)}
    out = np.zeros((contrib.shape[0], len(groups)))
    for j, f in enumerate(feats):
        out[:, index[f["group"]]] += contrib[:, j]
    return groups, out


def strongest_features(contrib: np.ndarray, spec: Mapping[str, Any], groups: Sequence[str]) -> np.ndarray:
    """(n, G) names of each group's feature with the largest |contribution| per row (the first one on ties): the
    feature whose template phrases the group when its variants cannot."""
    names = np.array([f["name"] for f in spec["features"]], dtype=object)
    out = np.empty((contrib.shape[0], len(groups)), dtype=object)
    for k, g in enumerate(groups):
        idx = np.array([j for j, f in enumerate(spec["features"]) if f["group"] == g])
        out[:, k] = names[idx[np.argmax(np.abs(contrib[:, idx]), axis=1)]]
    return out


def to_points(group_contrib: np.ndarray, score: np.ndarray, base_score: float, margin: np.ndarray,
              base_margin: float, slope_at: np.ndarray) -> np.ndarray:
    """Share each lead's score above the average lead's score among its groups, in proportion to log-odds.

    The secant (score - base_score) / (margin - base_margin) converts log-odds to points, so a lead's points add up
    exactly to its score minus the average lead's; where the margin barely moves, the local slope is used instead.
    """
    diff = margin - base_margin
    close = np.abs(diff) < 1e-6
    slope = np.where(close, slope_at, (score - base_score) / np.where(close, 1.0, diff))
    return group_contrib * slope[:, None]


def derived_values(values: Mapping[str, Any], high_intent: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Values templates may use beyond the raw features: labels and sums a sentence reads better with.

    `high_intent` adds a source's own high-intent event types ({kind: "a connected call"}), so "the latest buying
    signal" can name them."""
    out = dict(values)
    if "seniority" in values:
        out["seniority_label"] = SENIORITY_LABEL.get(str(values["seniority"]), "Unknown-seniority")
    phrases = {**HIGH_INTENT_PHRASE, **(high_intent or {})}
    latest = [(float(values[f"days_since_{k}"]), k) for k in phrases
              if not _is_missing(values.get(f"days_since_{k}"))]
    if latest:
        out["last_high_intent_action"] = phrases[min(latest)[1]]
    for window in (7, 30, 90):
        parts = [f"{k}_{window}d" for k in ("page_product", "page_docs", "page_blog", "content_download")]
        if all(p in values for p in parts):
            out[f"research_{window}d"] = sum(_num(values[p]) for p in parts)
        parts = [f"{k}_{window}d" for k in ("demo_request", "trial_start", "meeting")]
        if all(p in values for p in parts):
            out[f"demo_trial_{window}d"] = sum(_num(values[p]) for p in parts)
    return out


def _num(v: Any) -> float:
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _holds(condition: str, values: Mapping[str, Any]) -> bool:
    m = _CONDITION.match(condition)
    if not m:
        raise CatalogError(f"cannot read condition {condition!r}; expected 'name OP value'")
    name, op, raw = m.groups()
    if name not in values:
        return False
    v = values[name]
    if raw == "null":
        return (op == "==") == _is_missing(v)
    if _is_missing(v):
        return False
    if raw[0] in "'\"":
        target: Any = raw.strip("'\"")
        left: Any = str(v)
        if op not in ("==", "!="):
            raise CatalogError(f"condition {condition!r}: text can only be compared with == or !=")
    else:
        target = float(raw)
        try:
            left = float(v)
        except (TypeError, ValueError):
            return False
    return {">": left > target, ">=": left >= target, "<": left < target, "<=": left <= target,
            "==": left == target, "!=": left != target}[op]


def _fmt(v: Any) -> str:
    if _is_missing(v):
        return "unknown"
    if isinstance(v, float):
        return str(int(round(v))) if abs(v - round(v)) < 1e-9 or abs(v) >= 10 else f"{v:.1f}"
    return str(v)


@functools.lru_cache(maxsize=4096)
def _parts(template: str) -> tuple[tuple[str, str | None, str | None, str | None], ...]:
    """A template split once into (literal text, name, noun, plural) pieces, so filling needs no regex."""
    pieces = _PLACEHOLDER.split(template)  # literal, name, noun, plural, literal, ...
    out = [(pieces[i], pieces[i + 1], pieces[i + 2], pieces[i + 3]) for i in range(0, len(pieces) - 1, 4)]
    return (*out, (pieces[-1], None, None, None))


def fill(template: str, values: Mapping[str, Any]) -> str | None:
    """Fill `{name}` and `{name|noun}` / `{name|noun|plural}` placeholders; None if a value is absent or missing."""
    out: list[str] = []
    for literal, name, noun, plural in _parts(template):
        out.append(literal)
        if name is None:
            continue
        v = values.get(name, _ABSENT)
        if v is _ABSENT or _is_missing(v):
            return None
        text = _fmt(v)
        if noun:
            one = _is_number(v) and abs(float(v) - 1.0) < 1e-9
            text = f"{text} {noun if one else (plural or noun + 's')}"
        out.append(text)
    return "".join(out)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating)


def _variants(entry: Any) -> list[dict[str, Any]]:
    if entry is None:
        return []
    if isinstance(entry, str):
        return [{"text": entry}]
    return [v if isinstance(v, dict) else {"text": v} for v in entry]


def first_variant(variants: Any, values: Mapping[str, Any]) -> str | None:
    """The first variant whose `if` conditions all hold and whose placeholders all have values, filled; else None."""
    for variant in _variants(variants):
        conditions = variant.get("if", [])
        conditions = [conditions] if isinstance(conditions, str) else conditions
        if all(_holds(c, values) for c in conditions):
            text = fill(variant["text"], values)
            if text is not None:
                return text
    return None


def render(group: str, direction: str, values: Mapping[str, Any], catalog: Mapping[str, Any],
           *, top_feature: str | None = None, spec_templates: Mapping[str, Mapping[str, str]] | None = None,
           derived: bool = False) -> str:
    """The sentence for one group and direction ('for' or 'against'), filled with the lead's values.

    Tried in order, the first whose `if` holds and whose placeholders all have values wins: the group's variants;
    then the template of the group's strongest feature (the source mapping's `reason`, else catalog `features:`);
    then the group's generic sentences (no condition, no placeholder), so a source's own words beat them.
    `derived=True` says `values` already went through `derived_values` (done once per lead by the callers).
    """
    vals = values if derived else derived_values(values)
    variants = _variants(catalog.get("groups", {}).get(group, {}).get(direction))
    # Generic sentences (no condition, no placeholder) are the group's last resort, tried after the feature's own.
    generic = [v for v in variants if not v.get("if") and not _PLACEHOLDER.search(v["text"])]
    text = first_variant([v for v in variants if v not in generic], vals)
    if text is None and top_feature is not None:
        # The source's own words for its column beat the group's generic sentence ("Engages with our emails and
        # events" is wrong for a source whose engagement column is a previous campaign's outcome).
        templates = dict(catalog.get("features", {}).get(top_feature, {}))
        templates.update((spec_templates or {}).get(top_feature, {}))
        text = first_variant(templates.get(direction), {**vals, "value": vals.get(top_feature)})
    if text is not None:
        return text
    if generic:
        return str(generic[0]["text"])
    raise CatalogError(f"no template can phrase group {group!r} ({direction}) for feature {top_feature!r}")


def source_catalog(catalog: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The catalog plus what a source mapping declared: its reason groups (label and generic sentences), and its
    event types' nouns (activity summaries) and high-intent phrases. Unchanged for a source that declares none."""
    groups = spec.get("groups") or {}
    declared = spec.get("declared_event_types") or {}
    if not groups and not declared:
        return dict(catalog)
    out = dict(catalog)
    out["groups"] = {**catalog.get("groups", {}),
                     **{g: {"label": meta["label"], **(meta.get("reason") or {})} for g, meta in groups.items()}}
    nouns = {k: list(meta.get("noun") or [k.replace("_", " "), k.replace("_", " ") + "s"])
             for k, meta in declared.items()}
    out["event_nouns"] = {**catalog.get("event_nouns", {}), **nouns}
    out["declared_kinds"] = list(declared)
    out["high_intent_phrase"] = {k: f"a {nouns[k][0]}" for k, meta in declared.items() if meta.get("high_intent")}
    return out


def group_label(group: str, catalog: Mapping[str, Any]) -> str:
    return str(catalog.get("groups", {}).get(group, {}).get("label", GROUPS.get(group, group)))


def spec_templates(spec: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """`reason` templates a source mapping gave its own columns, carried in the feature spec."""
    return {f["name"]: f["reason"] for f in spec["features"] if f.get("reason")}


def reasons_for_lead(
    values: Mapping[str, Any],
    contrib_row: np.ndarray,
    points_row: np.ndarray,
    groups: Sequence[str],
    spec: Mapping[str, Any],
    catalog: Mapping[str, Any],
    *,
    top: int = 3,
    extra_points: float = 5.0,
    most: int = 5,
    min_points: float = 1.0,
    templates: Mapping[str, Mapping[str, str]] | None = None,
    group_logodds: np.ndarray | None = None,
    best: Sequence[str] | None = None,
    derived: bool = False,
) -> tuple[list[Reason], Reason | None]:
    """Reasons for, by points: the strongest, then the rest of the `top` strongest that add at least `min_points`,
    then any further group adding at least `extra_points`, up to `most`; and the strongest reason against (None
    when nothing pulls the score down by `min_points`).

    Batch callers pass what they computed for all rows at once: `group_logodds` (this row of
    `group_contributions`), `best` (this row of `strongest_features`) and `derived=True` (values already derived).
    """
    templates = spec_templates(spec) if templates is None else templates
    vals = values if derived else derived_values(values)
    if group_logodds is None:
        group_logodds = group_contributions(contrib_row[None, :], spec)[1][0]
    if best is None:
        best = strongest_features(contrib_row[None, :], spec, groups)[0]
    best_feature = dict(zip(groups, best, strict=True))
    def make(i: int, direction: str) -> Reason:
        g = groups[i]
        text = render(g, direction, vals, catalog, top_feature=best_feature[g], spec_templates=templates,
                      derived=True)
        return Reason(
            g, group_label(g, catalog), text, round(float(points_row[i]), 1), round(float(group_logodds[i]), 4)
        )

    order = np.argsort(-points_row, kind="stable")
    # The strongest reason always; the next ones only when they move the score by a whole point (a "+0 pts"
    # reason is noise to a rep, and common on sources with few groups).
    chosen = [int(order[0])] + [int(i) for i in order[1:top] if points_row[i] >= min_points]
    chosen += [int(i) for i in order[top:most] if points_row[i] >= extra_points]
    reasons = [make(i, "for" if points_row[i] > 0 else "against") for i in chosen]
    worst = int(np.argmin(points_row))
    against = make(worst, "against") if points_row[worst] <= -min_points and worst not in chosen else None
    return reasons, against


def activity_summary(values: Mapping[str, Any], catalog: Mapping[str, Any], *, window: int = 30) -> str:
    """'In the last 30 days: 3 pricing-page views, 1 demo request ...' from the lead's own counts."""
    nouns = catalog.get("event_nouns", {})
    parts = []
    for kind in [*EVENT_TYPES, *catalog.get("declared_kinds", [])]:
        n = values.get(f"{kind}_{window}d")
        if n is None or _is_missing(n) or float(n) <= 0:
            continue
        one, many = nouns.get(kind, [kind.replace("_", " "), kind.replace("_", " ") + "s"])
        parts.append(f"{int(n)} {one if int(n) == 1 else many}")
    if not parts:
        return f"No tracked activity in the last {window} days."
    return f"In the last {window} days: " + ", ".join(parts) + "."
