"""Reason codes: SHAP contributions grouped into business groups, turned into score points and plain sentences.

The sentences live in a YAML catalog (models/reasons.yaml, plus `reason` templates that a source mapping gives its
own columns). A template is filled with the lead's own values; a feature the catalog cannot phrase is an error, never
a silent fallback to the column name.

A note must agree with itself. The rules, each a small function so a columnar renderer can apply them the same way:

- `why_now`: only groups that add at least one point are listed as reasons for ("+0 pts" is noise, and a reason that
  lowers the score is not a reason for); when none does, the note says the lead is close to the average one.
- `cites_zero_count`: a reason never cites a count of zero as evidence ("0 careers-page views suggest job hunting");
  a variant that would is skipped, and the next one is tried.
- `cited_events` / `last_signal`: urgency is the most recent of the buying signals (HIGH_INTENT_EVENTS and meetings)
  and of every event the note's reasons cite, so a note that says "Met with sales 3 days ago" never says "no
  high-intent action yet".
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.schema import EVENT_TYPES, GROUPS, HIGH_INTENT_EVENTS
from features.spec import KIND_TEXT

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

#: Events urgency always looks at (besides those a note's reasons cite): buying signals and meetings with sales.
URGENCY_EVENTS: tuple[str, ...] = (*HIGH_INTENT_EVENTS, "meeting")
#: Nouns that measure time, not a count: "{days|day}" may be 0 ("0 days ago"), "{visits|time}" may not be cited as 0.
TIME_NOUNS = frozenset({"second", "minute", "hour", "day", "week", "month", "year"})
_COUNT_NAME = re.compile(r"^(\w+)_(\d+)d$")
#: Derived sums (see derived_values) and the event kinds they add up.
_SUMS: dict[str, tuple[str, ...]] = {
    "research": ("page_product", "page_docs", "page_blog", "content_download"),
    "demo_trial": ("demo_request", "trial_start", "meeting"),
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
    #: Event kinds the sentence cites as having happened (urgency must cover them).
    events: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "label": self.label, "text": self.text, "points": self.points,
                "log_odds": self.log_odds, "events": list(self.events)}


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
    latest = last_signal(values, tuple(phrases))
    if latest:
        out["last_high_intent_action"] = phrases[latest[0]]
    for window in (7, 30, 90):
        for name, kinds in _SUMS.items():
            parts = [f"{k}_{window}d" for k in kinds]
            if all(p in values for p in parts):
                out[f"{name}_{window}d"] = sum(_num(values[p]) for p in parts)
    return out


def event_phrase(kind: str, catalog: Mapping[str, Any] | None = None) -> str:
    """How a rep names one event of a kind: "a pricing-page visit", "a meeting with sales"; a source's declared kinds
    by their high-intent phrase or their noun (`source_catalog`)."""
    declared = (catalog or {}).get("high_intent_phrase") or {}
    if kind in declared:
        return str(declared[kind])
    if kind in HIGH_INTENT_PHRASE:
        return HIGH_INTENT_PHRASE[kind]
    nouns = (catalog or {}).get("event_nouns") or {}
    one = str(nouns[kind][0]) if kind not in KIND_TEXT and kind in nouns else KIND_TEXT.get(kind, KIND_TEXT["other"])[2]
    return f"{'an' if one[0] in 'aeiou' else 'a'} {one}"


def _high_intent_kinds(catalog: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The built-in high-intent kinds plus those a source declared high-intent."""
    return tuple(dict.fromkeys([*HIGH_INTENT_PHRASE, *((catalog or {}).get("high_intent_phrase") or {})]))


def _is_event_kind(kind: str, catalog: Mapping[str, Any] | None) -> bool:
    return kind in KIND_TEXT or kind in ((catalog or {}).get("declared_kinds") or ())


def last_signal(values: Mapping[str, Any], kinds: Sequence[str]) -> tuple[str, float] | None:
    """The most recent of these event kinds before the decision time, and its days ago (the first kind on ties);
    None when the lead has none of them."""
    known = [(float(values[f"days_since_{k}"]), i, k) for i, k in enumerate(kinds)
             if not _is_missing(values.get(f"days_since_{k}"))]
    if not known:
        return None
    days, _, kind = min(known)
    return kind, days


def cited_events(names: Sequence[str], values: Mapping[str, Any],
                 catalog: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Event kinds a filled template cites as having happened: a recency it names, a count above 0 (directly or in a
    derived sum), or the latest high-intent action. `catalog` (a `source_catalog`) adds the source's declared kinds."""
    kinds: list[str] = []
    for name in names:
        if name.startswith("days_since_") and _is_event_kind(name[len("days_since_"):], catalog):
            if not _is_missing(values.get(name)):
                kinds.append(name[len("days_since_"):])
        elif name in ("days_since_high_intent", "last_high_intent_action"):
            latest = last_signal(values, _high_intent_kinds(catalog))
            kinds += [latest[0]] if latest else []
        elif (m := _COUNT_NAME.match(name)) and _num(values.get(name)) > 0:
            kind, window = m.group(1), m.group(2)
            parts = _SUMS.get(kind, (kind,) if _is_event_kind(kind, catalog) else ())
            kinds += [k for k in parts if _num(values.get(f"{k}_{window}d")) > 0]
    return tuple(dict.fromkeys(kinds))


def urgency_values(values: Mapping[str, Any], cited: Sequence[str],
                   catalog: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`last_signal_action` and `last_signal_days` for the urgency line: the most recent of URGENCY_EVENTS (plus a
    source's declared high-intent kinds) and the events the note's reasons cite (both None when there is none).
    Empty for a source without event times."""
    kinds = tuple(dict.fromkeys([*URGENCY_EVENTS, *_high_intent_kinds(catalog), *cited]))
    if not any(f"days_since_{k}" in values for k in kinds):
        return {}
    latest = last_signal(values, kinds)
    if latest is None:
        return {"last_signal": None, "last_signal_action": None, "last_signal_days": None}
    return {"last_signal": latest[0], "last_signal_action": event_phrase(latest[0], catalog),
            "last_signal_days": latest[1]}


def cites_zero_count(names_nouns: Sequence[tuple[str, str | None]], values: Mapping[str, Any]) -> bool:
    """Whether a template would cite a count of zero: an event count (or a derived sum) that is 0, or any value
    written with a count noun ("{visits|time}") that is 0. Time nouns ("{days|day}") may be 0."""
    for name, noun in names_nouns:
        v = values.get(name)
        if v is None or _is_missing(v) or not _is_number(v) or float(v) != 0.0:
            continue
        if _COUNT_NAME.match(name) or (noun is not None and noun not in TIME_NOUNS):
            return True
    return False


def why_now(points_row: np.ndarray, *, top: int = 3, most: int = 5, min_points: float = 1.0,
            extra_points: float = 5.0) -> list[int]:
    """Groups listed as reasons for, strongest first: the `top` strongest that add at least `min_points`, then any
    further group adding at least `extra_points`, up to `most`. Empty when no group adds `min_points`."""
    order = [int(i) for i in np.argsort(-points_row, kind="stable")]
    chosen = [i for i in order[:top] if points_row[i] >= min_points]
    return chosen + [i for i in order[top:most] if points_row[i] >= extra_points]


def strongest_against(points_row: np.ndarray, chosen: Sequence[int], *, min_points: float = 1.0) -> int | None:
    """The group that lowers the score most, when it lowers it by at least `min_points`."""
    worst = int(np.argmin(points_row))
    return worst if points_row[worst] <= -min_points and worst not in chosen else None


def _num(v: Any) -> float:
    return 0.0 if _is_missing(v) else float(v)


def _is_missing(v: Any) -> bool:
    """None, NaN and infinities: no sentence can state them (the contract quarantines infinities before notes, and
    this keeps note text safe for any value that gets here)."""
    return v is None or (isinstance(v, float | np.floating) and not math.isfinite(v))


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
    """A value as a note states it: whole numbers without decimals, small ones with one; never raises."""
    if _is_missing(v):
        return "unknown"
    if isinstance(v, float | np.floating):
        v = float(v)
        return str(int(round(v))) if abs(v - round(v)) < 1e-9 or abs(v) >= 10 else f"{v:.1f}"
    return str(v)


@functools.lru_cache(maxsize=4096)
def _parts(template: str) -> tuple[tuple[str, str | None, str | None, str | None], ...]:
    """A template split once into (literal text, name, noun, plural) pieces, so filling needs no regex."""
    pieces = _PLACEHOLDER.split(template)  # literal, name, noun, plural, literal, ...
    out = [(pieces[i], pieces[i + 1], pieces[i + 2], pieces[i + 3]) for i in range(0, len(pieces) - 1, 4)]
    return (*out, (pieces[-1], None, None, None))


def placeholders(template: str) -> list[tuple[str, str | None]]:
    """(name, noun) of each placeholder in a template."""
    return [(name, noun) for _, name, noun, _ in _parts(template) if name is not None]


def fill(template: str, values: Mapping[str, Any], *, evidence: bool = False) -> str | None:
    """Fill `{name}` and `{name|noun}` / `{name|noun|plural}` placeholders; None if a value is absent or missing,
    or, for a reason (`evidence=True`), if it would cite a count of zero (see `cites_zero_count`)."""
    if evidence and cites_zero_count(placeholders(template), values):
        return None
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


def first_variant(variants: Any, values: Mapping[str, Any], *, evidence: bool = False) -> str | None:
    """The first variant whose `if` conditions all hold and whose placeholders all have values, filled; else None."""
    found = first_variant_cited(variants, values, evidence=evidence)
    return None if found is None else found[0]


def first_variant_cited(variants: Any, values: Mapping[str, Any], *, evidence: bool = False
                        ) -> tuple[str, list[str]] | None:
    """Like `first_variant`, with the names the winning template filled in (what the sentence cites)."""
    for variant in _variants(variants):
        conditions = variant.get("if", [])
        conditions = [conditions] if isinstance(conditions, str) else conditions
        if all(_holds(c, values) for c in conditions):
            text = fill(variant["text"], values, evidence=evidence)
            if text is not None:
                return text, [name for name, _ in placeholders(variant["text"])]
    return None


def render(group: str, direction: str, values: Mapping[str, Any], catalog: Mapping[str, Any],
           *, top_feature: str | None = None, spec_templates: Mapping[str, Mapping[str, str]] | None = None,
           derived: bool = False) -> str:
    """The sentence for one group and direction ('for' or 'against'), filled with the lead's values.

    Tried in order, the first whose `if` holds and whose placeholders all have values (and cite no count of zero)
    wins: the group's variants; then the template of the group's strongest feature (the source mapping's `reason`,
    else catalog `features:`); then the group's generic sentences (no condition, no placeholder), so a source's own
    words beat them. `derived=True` says `values` already went through `derived_values` (done once per lead).
    """
    return render_cited(group, direction, values, catalog, top_feature=top_feature, spec_templates=spec_templates,
                        derived=derived)[0]


def render_cited(group: str, direction: str, values: Mapping[str, Any], catalog: Mapping[str, Any],
                 *, top_feature: str | None = None, spec_templates: Mapping[str, Mapping[str, str]] | None = None,
                 derived: bool = False) -> tuple[str, tuple[str, ...]]:
    """`render`, with the event kinds the sentence cites (see `cited_events`)."""
    vals = values if derived else derived_values(values)
    variants = _variants(catalog.get("groups", {}).get(group, {}).get(direction))
    # Generic sentences (no condition, no placeholder) are the group's last resort, tried after the feature's own.
    generic = [v for v in variants if not v.get("if") and not _PLACEHOLDER.search(v["text"])]
    found = first_variant_cited([v for v in variants if v not in generic], vals, evidence=True)
    if found is None and top_feature is not None:
        # The source's own words for its column beat the group's generic sentence ("Engages with our emails and
        # events" is wrong for a source whose engagement column is a previous campaign's outcome).
        templates = dict(catalog.get("features", {}).get(top_feature, {}))
        templates.update((spec_templates or {}).get(top_feature, {}))
        found = first_variant_cited(templates.get(direction), {**vals, "value": vals.get(top_feature)},
                                    evidence=True)
        if found is not None:
            found = found[0], [top_feature if n == "value" else n for n in found[1]]
    if found is not None:
        return found[0], cited_events(found[1], vals, catalog)
    if generic:
        return str(generic[0]["text"]), ()
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
    """Reasons for (`why_now`: each adds at least `min_points`, strongest first; possibly none) and the strongest
    reason against (`strongest_against`: None when nothing pulls the score down by `min_points`).

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
        text, events = render_cited(g, direction, vals, catalog, top_feature=best_feature[g],
                                    spec_templates=templates, derived=True)
        return Reason(g, group_label(g, catalog), text, round(float(points_row[i]), 1),
                      round(float(group_logodds[i]), 4), events)

    chosen = why_now(points_row, top=top, most=most, min_points=min_points, extra_points=extra_points)
    reasons = [make(i, "for") for i in chosen]
    worst = strongest_against(points_row, chosen, min_points=min_points)
    return reasons, (make(worst, "against") if worst is not None else None)


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
