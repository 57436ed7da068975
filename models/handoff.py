"""Handoff notes: what a rep reads for each recommended lead (why, who, how urgent, what happened)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.bundle import SQL, Bundle
from models.reasons import (
    activity_summary,
    derived_values,
    first_variant,
    group_contributions,
    reasons_for_lead,
    source_catalog,
    spec_templates,
    strongest_features,
    to_points,
)
from models.treeshap import TreeShap


def first_filled(variants: Any, values: Mapping[str, Any], *, derived: bool = False) -> str:
    """The first template that fills (see `first_variant`), or "" when none does."""
    return first_variant(variants, values if derived else derived_values(values)) or ""


def explain_rows(bundle: Bundle, X: np.ndarray, *, explainer: TreeShap | None = None) -> dict[str, np.ndarray]:
    """Contributions, group contributions and score points for rows of X (log-odds add up to the raw margin)."""
    explainer = explainer or TreeShap.from_booster(bundle.booster)
    contrib = explainer.contributions(X)
    margin = contrib.sum(axis=1)
    base_margin = float(explainer.expected_value)
    p = bundle.calibrator.predict(margin)
    score = 100.0 * p
    base_score = float(100.0 * bundle.calibrator.predict(np.array([base_margin]))[0])
    eps = 1e-3
    slope = 100.0 * (bundle.calibrator.predict(margin + eps) - bundle.calibrator.predict(margin - eps)) / (2 * eps)
    groups, gc = group_contributions(contrib, bundle.spec)
    points = to_points(gc, score, base_score, margin, base_margin, slope)
    return {"contrib": contrib, "margin": margin, "probability": p, "groups": np.array(groups, dtype=object),
            "group_contrib": gc, "points": points, "base_score": np.array([base_score])}


def build_notes(
    bundle: Bundle,
    rows: Sequence[Mapping[str, Any]],
    X: np.ndarray,
    catalog: Mapping[str, Any],
    *,
    top: int = 3,
    who: Sequence[Mapping[str, Any]] | None = None,
    contact: Sequence[Mapping[str, Any]] | None = None,
    explainer: TreeShap | None = None,
) -> list[dict[str, Any]]:
    """One handoff note per row. `rows` holds each lead's feature values (categoricals as text) and lead_id;
    `who` its firmographic text values; `contact` only the contact fields the source allows in notes."""
    if len(rows) == 0:
        return []
    catalog = source_catalog(catalog, bundle.spec)
    phrases = catalog.get("high_intent_phrase")
    ex = explain_rows(bundle, X, explainer=explainer)
    p = ex["probability"]
    scores = bundle.score(p)
    pct = bundle.percentile(p)
    groups = list(ex["groups"])
    decisions = bundle.decide(p)
    templates = spec_templates(bundle.spec)
    best = strongest_features(ex["contrib"], bundle.spec, groups)
    notes = []
    for i, row in enumerate(rows):
        values = derived_values({**(who[i] if who else {}), **row}, phrases)
        reasons, against = reasons_for_lead(values, ex["contrib"][i], ex["points"][i], groups, bundle.spec, catalog,
                                            top=top, templates=templates, group_logodds=ex["group_contrib"][i],
                                            best=best[i], derived=True)
        top_share = max(1, int(round(100 - float(pct[i]))))
        note = {
            "lead_id": row["lead_id"],
            "decision": str(decisions[i]),
            "score": int(scores[i]),
            "probability": round(float(p[i]), 4),
            "percentile": round(float(pct[i]), 1),
            "headline": (f"Score {int(scores[i])} (top {top_share}% of leads): {reasons[0].text}"
                         if reasons[0].points >= 1.0 else
                         f"Score {int(scores[i])} (top {top_share}% of leads): close to the average lead, "
                         "no single factor adds a whole point"),
            "reasons": [r.to_dict() for r in reasons],
            "against": against.to_dict() if against else None,
            "who": first_filled([*bundle.spec.get("who", []), *(catalog.get("who") or [])], values, derived=True),
            "urgency": {
                "days_since_high_intent": _maybe_int(values.get("days_since_high_intent")),
                "buying_timeline": values.get("buying_timeline"),
                "text": first_filled(catalog.get("urgency"), values, derived=True),
            },
            "what_happened": (first_filled(bundle.spec["what_happened"], values, derived=True)
                              if bundle.spec.get("what_happened") else activity_summary(values, catalog)),
            "contact": dict(contact[i]) if contact else {},
        }
        notes.append(note)
    return notes


def _maybe_int(v: Any) -> int | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return int(round(float(v)))


def _points(points: float) -> str:
    """Signed whole points; -0.4 reads "+0", never "+-0"."""
    v = int(round(points))
    return f"+{v}" if v >= 0 else str(v)


def note_markdown(note: Mapping[str, Any]) -> str:
    """A note as a rep reads it."""
    lines = [f"### Lead {note['lead_id']}: score {note['score']} ({note['decision']})", "", f"**Who:** {note['who']}"]
    if note.get("contact"):
        lines.append("**Contact:** " + ", ".join(str(v) for v in note["contact"].values() if v is not None))
    lines += ["", "**Why now:**"]
    lines += [f"- {r['text']} ({_points(r['points'])} pts)" for r in note["reasons"]]
    if note.get("against"):
        lines.append(f"- Against: {note['against']['text']} ({_points(note['against']['points'])} pts)")
    lines += ["", f"**Urgency:** {note['urgency']['text']}", f"**What happened:** {note['what_happened']}", ""]
    return "\n".join(lines)


def note_row(note: Mapping[str, Any], *, top: int = 3) -> dict[str, Any]:
    """A flat row for CRM import."""
    row: dict[str, Any] = {
        k: note[k] for k in ("lead_id", "decision", "score", "probability", "percentile", "headline")
    }
    for k in range(top):
        r = note["reasons"][k] if k < len(note["reasons"]) else None
        row[f"reason_{k + 1}"] = r["text"] if r else None
        row[f"reason_{k + 1}_points"] = r["points"] if r else None
    row["reason_against"] = note["against"]["text"] if note.get("against") else None
    row["who"] = note["who"]
    row["urgency"] = note["urgency"]["text"]
    row["what_happened"] = note["what_happened"]
    return row


__all__ = ["SQL", "build_notes", "explain_rows", "note_markdown", "note_row"]
