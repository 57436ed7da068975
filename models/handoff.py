"""Handoff notes: what a rep reads for each recommended lead (why, who, how urgent, what happened).

The note follows the rules in models/reasons.py: reasons for add at least a point each (possibly none, then the
headline says so), no reason cites a count of zero, and urgency covers every event the reasons cite.

`build_notes` renders a whole chunk at once with the columnar renderer (models/notes.py) and returns a notes frame;
`build_notes_reference` states the same rules one lead at a time and returns dicts. The reference is what the
columnar renderer is tested against, byte for byte (tests/test_notes.py); production code does not call it.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from models.bundle import SQL, Bundle
from models.notes import NO_REASON, Explained, NoteTemplates, note_columns_all, render_notes
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
    urgency_values,
)


def first_filled(variants: Any, values: Mapping[str, Any], *, derived: bool = False) -> str:
    """The first template that fills (see `first_variant`), or "" when none does."""
    return first_variant(variants, values if derived else derived_values(values)) or ""


def explain_rows(bundle: Bundle, X: np.ndarray) -> dict[str, np.ndarray]:
    """Contributions, group contributions and score points for rows of X (log-odds add up to the raw margin), exact
    for whichever model the bundle scores with (TreeSHAP, linear SHAP, or their blend)."""
    contrib = bundle.scorer.contributions(X)
    margin = contrib.sum(axis=1)
    base_margin = float(bundle.scorer.expected_value)
    p = bundle.calibrator.predict(margin)
    score = 100.0 * p
    base_score = float(100.0 * bundle.calibrator.predict(np.array([base_margin]))[0])
    eps = 1e-3
    slope = 100.0 * (bundle.calibrator.predict(margin + eps) - bundle.calibrator.predict(margin - eps)) / (2 * eps)
    groups, gc = group_contributions(contrib, bundle.spec)
    points = to_points(gc, score, base_score, margin, base_margin, slope)
    return {"contrib": contrib, "margin": margin, "probability": p, "groups": np.array(groups, dtype=object),
            "group_contrib": gc, "points": points, "base_score": np.array([base_score])}


def note_values(features: pl.DataFrame, who: pl.DataFrame | None = None) -> pl.DataFrame:
    """What a lead's templates may name: its feature row (lead_id included) and, where the features lack them, its
    firmographic text values (`who`, row for row); a feature wins over a column of the same name."""
    if who is None:
        return features
    return features.hstack(who.select([c for c in who.columns if c not in features.columns]))


def build_notes(
    bundle: Bundle,
    values: pl.DataFrame,
    X: np.ndarray,
    templates: NoteTemplates,
    *,
    top: int = 3,
    contact: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One handoff note per row of `values` (see `note_values`), as a notes frame (`models.notes.render_notes`):
    the flat CRM columns, every reason, and the note as JSON. `X` holds the same rows' model matrix; `contact` only
    the contact fields the source allows in notes, row for row; `templates` the bundle's compiled templates."""
    return render_notes(values, explained(bundle, X), templates, top=top, contact=contact)


def explained(bundle: Bundle, X: np.ndarray) -> Explained:
    """What the bundle says about each row of X (`explain_rows`, score, percentile, decision), as both renderers
    take it."""
    if X.shape[0] == 0:
        empty = np.zeros(0)
        return Explained(empty, empty, empty, np.array([], dtype=str), np.zeros((0, X.shape[1] + 1)), [],
                         np.zeros((0, 0)), np.zeros((0, 0)))
    ex = explain_rows(bundle, X)
    p = ex["probability"]
    return Explained(p, bundle.score(p), bundle.percentile(p), bundle.decide(p), ex["contrib"], list(ex["groups"]),
                     ex["group_contrib"], ex["points"])


def build_notes_reference(
    bundle: Bundle,
    rows: Sequence[Mapping[str, Any]],
    X: np.ndarray,
    catalog: Mapping[str, Any],
    *,
    top: int = 3,
    who: Sequence[Mapping[str, Any]] | None = None,
    contact: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The row-by-row renderer, kept as the reference `build_notes` is tested against: one handoff note (a dict)
    per row. `rows` holds each lead's feature values (categoricals as text) and lead_id; `who` its firmographic
    text values; `contact` only the contact fields the source allows in notes."""
    if len(rows) == 0:
        return []
    return reference_notes(rows, explained(bundle, X), bundle.spec, catalog, top=top, who=who, contact=contact)


def reference_notes(
    rows: Sequence[Mapping[str, Any]],
    ex: Explained,
    spec: Mapping[str, Any],
    catalog: Mapping[str, Any],
    *,
    top: int = 3,
    who: Sequence[Mapping[str, Any]] | None = None,
    contact: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """`build_notes_reference` from what the model says about each row (the same input `models.notes.render_notes`
    takes, so a test can hold the two renderers to the same bytes on any explanation)."""
    catalog = source_catalog(catalog, spec)
    phrases = catalog.get("high_intent_phrase")
    p, scores, pct, decisions = ex.probability, ex.score, ex.percentile, ex.decision
    groups = list(ex.groups)
    templates = spec_templates(spec)
    best = strongest_features(ex.contrib, spec, groups)
    notes = []
    for i, row in enumerate(rows):
        values = derived_values({**(who[i] if who else {}), **row}, phrases)
        reasons, against = reasons_for_lead(values, ex.contrib[i], ex.points[i], groups, spec, catalog,
                                            top=top, templates=templates, group_logodds=ex.group_contrib[i],
                                            best=best[i], derived=True)
        top_share = max(1, int(round(100 - float(pct[i]))))
        cited = [k for r in [*reasons, *([against] if against else [])] for k in r.events]
        signal = urgency_values(values, cited, catalog)
        note = {
            "lead_id": row["lead_id"],
            "decision": str(decisions[i]),
            "score": int(scores[i]),
            "probability": round(float(p[i]), 4),
            "percentile": round(float(pct[i]), 1),
            "headline": f"Score {int(scores[i])} (top {top_share}% of leads): "
                        f"{reasons[0].text if reasons else NO_REASON}",
            "reasons": [r.to_dict() for r in reasons],
            "against": against.to_dict() if against else None,
            "who": first_filled([*spec.get("who", []), *(catalog.get("who") or [])], values, derived=True),
            "urgency": {
                "days_since_high_intent": _maybe_int(values.get("days_since_high_intent")),
                "last_signal": signal.get("last_signal"),
                "days_since_last_signal": _maybe_int(signal.get("last_signal_days")),
                "buying_timeline": values.get("buying_timeline"),
                "text": first_filled(catalog.get("urgency"), {**values, **signal}, derived=True),
            },
            "what_happened": (first_filled(spec["what_happened"], values, derived=True)
                              if spec.get("what_happened") else activity_summary(values, catalog)),
            "contact": dict(contact[i]) if contact else {},
        }
        notes.append(note)
    return notes


def _maybe_int(v: Any) -> int | None:
    if v is None or (isinstance(v, float | np.floating) and not np.isfinite(v)):
        return None
    return int(round(float(v)))


#: Characters that start Markdown syntax (emphasis, code, links, images, tables, strike-through, escapes).
_MARKDOWN = re.compile(r"([\\`*_\[\]|~!#])")


def md_text(value: Any) -> str:
    """Any value as inert Markdown text: HTML escaped (no <script>, no <img onerror>), Markdown syntax backslash-
    escaped (no links, headings or emphasis), and on one line (a newline could start a heading or a list)."""
    text = html.escape(str(value), quote=False)
    text = " ".join(text.split("\n")).replace("\r", " ")
    return _MARKDOWN.sub(r"\\\1", text)


def _points(points: float) -> str:
    """Signed whole points; -0.4 reads "+0", never "+-0"."""
    v = int(round(points))
    return f"+{v}" if v >= 0 else str(v)


def note_markdown(note: Mapping[str, Any]) -> str:
    """A note as a rep reads it. Every value from the data goes through `md_text`: a job title or a name can hold
    Markdown or HTML, and notes.md is opened in viewers that render both."""
    lines = [f"### Lead {md_text(note['lead_id'])}: score {note['score']} ({note['decision']})", "",
             f"**Who:** {md_text(note['who'])}"]
    if note.get("contact"):
        lines.append("**Contact:** " + ", ".join(md_text(v) for v in note["contact"].values() if v is not None))
    lines += ["", "**Why now:**"]
    lines += [f"- {md_text(r['text'])} ({_points(r['points'])} pts)" for r in note["reasons"]]
    if not note["reasons"]:
        lines.append(f"- {NO_REASON[0].upper()}{NO_REASON[1:]}")
    if note.get("against"):
        lines.append(f"- Against: {md_text(note['against']['text'])} ({_points(note['against']['points'])} pts)")
    lines += ["", f"**Urgency:** {md_text(note['urgency']['text'])}",
              f"**What happened:** {md_text(note['what_happened'])}", ""]
    return "\n".join(lines)


def note_columns(top: int = 3) -> list[str]:
    """The columns of `note_row`, in order (the header of an empty notes.csv)."""
    cols = ["lead_id", "decision", "score", "probability", "percentile", "headline"]
    cols += [c for k in range(top) for c in (f"reason_{k + 1}", f"reason_{k + 1}_points")]
    return [*cols, "reason_against", "who", "urgency", "what_happened"]


def notes_from_dicts(notes: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """A notes frame (as `build_notes` returns) from notes given as dicts (read back from notes.jsonl, or edited)."""
    if not notes:
        return pl.DataFrame(schema=note_columns_all(0))
    width = max(len(n["reasons"]) for n in notes)
    rows = [{**note_row(n, top=width),
             "reason_against_points": n["against"]["points"] if n.get("against") else None,
             "contact": [str(v) for v in n["contact"].values() if v is not None] if n.get("contact") else None,
             "note": json.dumps(n, sort_keys=True)} for n in notes]
    return pl.DataFrame(rows, infer_schema_length=None)


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


__all__ = ["NO_REASON", "SQL", "build_notes", "build_notes_reference", "explain_rows", "explained", "md_text",
           "note_columns", "note_markdown", "note_row", "note_values", "notes_from_dicts", "reference_notes"]
