"""The columnar note renderer (models/notes.py) writes the bytes of the row-by-row reference (models.handoff).

Both renderers get the same leads and the same explanation of them (contributions, points, probabilities), drawn
at random: values chosen so that every template variant of the catalog and of each source's own templates gets its
turn (sources with declared event types, their own groups, and without any events), with missing and non-finite
values, text that needs JSON, HTML or Markdown escapes, points that tie, round to -0.0 or sit on a rounding tie, and
leads no group moves by a whole point.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from features.build import (
    BREADTH,
    CAREERS_ONLY,
    HIGH_INTENT_RECENCY,
    IS_STUDENT_DOMAIN,
    SENIORITY,
    SENIORITY_LEVELS,
    VELOCITY,
    feature_columns,
    firmographic_columns,
)
from features.mapping import describe, load_mapping
from features.spec import make_spec
from models.handoff import NO_REASON, note_markdown, note_row, note_values, reference_notes
from models.notes import Explained, compile_templates, json_strings, needs_escape, notes_markdown, render_notes, rounded
from models.reasons import CatalogError, group_contributions
from pipelines.explain import load_catalog, write_notes
from tests.conftest import ROOT

LEADS = 3000
WINDOWS = [1, 7, 30, 90]
#: Text values besides the words the templates' conditions test (`condition_words`): missing ones, numbers as text,
#: and text every escape must handle.
WORDS = ["software", "<3 months", "0", "3.5", "nan", 'Ünïcødé "quoted" \\ back', "tab\there\nline",
         "=1+2 <b>[x](http://e.example)</b> *_`#|~!", "日本語 😀", None, None, None]
TEXT_CONDITION = re.compile(r"^\s*(\w+)\s*[!=]=\s*'([^']*)'\s*$")
COUNTS = [0, 0, 0, 0, 1, 1, 2, 3, 7, 12, 150, 1000, 2500]
#: Days, with fractions that round on a tie at one decimal (0.25, 2.75) and values that are missing.
DAYS = [None, None, float("nan"), float("inf"), 0.0, 0.04, 0.25, 0.96, 1.0, 2.75, 3.04, 6.95, 7.0, 7.5, 14.0,
        14.5, 30.0, 89.99, 120.0]
NUMBERS = [None, float("nan"), float("inf"), float("-inf"), 0.0, -0.0, -0.04, 0.05, 1.0, 1.0000000001, 2.25, 9.96,
           9.95, 12.5, 13.5, 250.0, 1e20, 3.14159, 1e-7, -3.5]


def source_of(name: str) -> dict[str, Any]:
    """A source mapping's resolved roles, as ingest writes them to source.json."""
    mapping = load_mapping(yaml.safe_load((ROOT / "sources" / f"{name}.yaml").read_text()), origin=name)
    return describe(mapping, has_outcome_times=True, time_basis={})


def conditions(tree: Any) -> list[str]:
    """Every `if:` condition written anywhere in a catalog or a mapping."""
    if isinstance(tree, dict):
        found = [c for c in ([tree["if"]] if isinstance(tree.get("if"), str) else tree.get("if") or [])]
        return found + [c for v in tree.values() for c in conditions(v)]
    return [c for v in tree for c in conditions(v)] if isinstance(tree, list) else []


def condition_words(source: dict[str, Any]) -> dict[str, list[str]]:
    """The texts the catalog's and the source's conditions compare each column with (`seniority == 'executive'`,
    a source's own `value == 'Yes'` for its column)."""
    words: dict[str, set[str]] = {}
    for name, word in (m.groups() for c in conditions(load_catalog()) if (m := TEXT_CONDITION.match(c))):
        words.setdefault(name, set()).add(word)
    for column, meta in {**source.get("categorical", {}), **source.get("numeric", {})}.items():
        for name, word in (m.groups() for c in conditions(meta) if (m := TEXT_CONDITION.match(c))):
            words.setdefault(column if name == "value" else name, set()).add(word)
    return {k: sorted(v) for k, v in words.items()}


def column_values(name: str, kind: str, rng: np.random.Generator, n: int,
                  words: dict[str, list[str]] | None = None) -> pl.Series:
    """Random values of one column with the type build_features gives it."""
    if kind == "categorical":
        tested = (words or {}).get(name)  # the words a condition tests, often, beside a few others
        vocabulary = np.array([*tested, 'Ünïcødé "quoted"', None, None] if tested else WORDS, dtype=object)
        return pl.Series(name, rng.choice(vocabulary, n).tolist(), dtype=pl.String)
    if name in (IS_STUDENT_DOMAIN, CAREERS_ONLY):
        return pl.Series(name, rng.integers(0, 2, n), dtype=pl.Int8)
    if name.startswith("days_since_") or name == HIGH_INTENT_RECENCY:
        return pl.Series(name, rng.choice(np.array(DAYS, dtype=object), n).tolist(), dtype=pl.Float64)
    if name == VELOCITY or "_value_" in name:
        return pl.Series(name, np.round(rng.gamma(1.0, 2.0, n), int(rng.integers(0, 3))), dtype=pl.Float64)
    if name == BREADTH or name.endswith("d") and name.rsplit("_", 1)[-1][:-1].isdigit():
        return pl.Series(name, rng.choice(COUNTS, n), dtype=pl.Int32)
    return pl.Series(name, rng.choice(np.array(NUMBERS, dtype=object), n).tolist(), dtype=pl.Float64)


def leads_of(source: dict[str, Any], rng: np.random.Generator, n: int = LEADS
             ) -> tuple[dict[str, Any], pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(feature spec, feature rows with lead_id, firmographic text values, note-allowed contact fields)."""
    names = feature_columns(source, WINDOWS)
    categorical = {name for name, _ in firmographic_columns(source)[0]}
    words = condition_words(source)
    frame = pl.DataFrame([pl.Series("lead_id", [f"L{i:05d}" for i in range(n)]),
                          *[column_values(c, "categorical" if c in categorical else "numeric", rng, n, words)
                            for c in names]])
    quiet = pl.Series(rng.random(n) < 0.3)  # leads with no tracked activity at all
    frame = frame.with_columns(
        *[pl.when(quiet).then(0).otherwise(pl.col(c)).alias(c) for c in names if frame[c].dtype == pl.Int32],
        *[pl.when(quiet).then(None).otherwise(pl.col(c)).alias(c) for c in names
          if c.startswith("days_since_") and c != HIGH_INTENT_RECENCY])
    if SENIORITY in frame.columns:  # parsed from a title: one of the levels, or missing
        levels = np.array([*SENIORITY_LEVELS, None], dtype=object)
        frame = frame.with_columns(pl.Series(SENIORITY, rng.choice(levels, n).tolist(), dtype=pl.String))
    spec = make_spec(frame, source, observation_days=14, horizon_days=60, windows=WINDOWS)
    firmo = [c for c in [*source.get("categorical", {}), *source.get("keep", [])]]
    who = pl.DataFrame([column_values(c, "categorical", rng, n, words) for c in firmo])
    contact = pl.DataFrame([column_values(c, "categorical", rng, n) for c in source.get("notes_allowed", [])])
    return spec, frame, who, contact


def explanation(spec: dict[str, Any], rng: np.random.Generator, n: int = LEADS) -> Explained:
    """Random contributions whose points tie, round to -0.0 or on a tie, and for some leads stay under a point."""
    width = len(spec["features"]) + 1
    scale = rng.choice([0.001, 0.05, 0.3, 1.0, 2.0], size=(n, 1))
    contrib = rng.normal(size=(n, width)) * scale
    quarters = rng.random(n) < 0.1  # groups that tie on points
    contrib[quarters] = np.round(contrib[quarters] * 4) / 4
    groups, gc = group_contributions(contrib, spec)
    points = gc * rng.uniform(5, 30, size=(n, 1))
    exact = rng.random(points.shape) < 0.05  # exact binary ties at one decimal, and -0.04 (rounds to -0.0)
    points[exact] = rng.choice([0.25, 2.25, -1.75, 12.75, -0.04, 1.0, 5.0, -1.0], size=int(exact.sum()))
    gc[exact] = rng.choice([0.03125, -0.40625, 1.00005, 0.0], size=int(exact.sum()))
    tied = rng.random(n) < 0.05
    points[tied] = np.round(points[tied])
    p = rng.uniform(0, 1, n)
    special = rng.random(n) < 0.05
    p[special] = rng.choice([0.03125, 0.99995, 1e-5, 0.5, 0.0], size=int(special.sum()))
    pct = rng.uniform(0, 100, n)
    ends = rng.random(n) < 0.05
    pct[ends] = rng.choice([0.0, 100.0, 99.95, 0.25, 50.05], size=int(ends.sum()))
    score = np.clip(np.rint(p * 100), 1, 99).astype(int)
    return Explained(p, score, pct, np.where(rng.random(n) < 0.7, "SQL", "nurture"), contrib, groups, gc, points)


SOURCES = ["synthetic", "hubspot", "salesforce", "x_education", "bank_marketing"]
#: Reasons for per note: `top` strongest, then any further ones worth 5 points, up to max(top, 5).
TOP = {"synthetic": 3, "hubspot": 2, "salesforce": 6, "x_education": 1, "bank_marketing": 4}


@pytest.mark.parametrize("name", SOURCES)
def test_columnar_notes_are_byte_identical_to_the_row_by_row_reference(name: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(SOURCES.index(name))
    source = source_of(name)
    spec, frame, who, contact = leads_of(source, rng)
    ex = explanation(spec, rng)
    catalog = load_catalog()
    top = TOP[name]
    reference = reference_notes(frame.to_dicts(), ex, spec, catalog, top=top, who=who.to_dicts(),
                                contact=contact.to_dicts())
    notes = render_notes(note_values(frame, who), ex, compile_templates(catalog, spec), top=top, contact=contact)
    markdown = notes_markdown(notes)
    for i, ref in enumerate(reference):
        assert notes["note"][i] == json.dumps(ref, sort_keys=True), i
        row = notes.row(i, named=True)
        for key, value in note_row(ref, top=len(ref["reasons"])).items():
            assert row[key] == value and (not isinstance(value, float) or np.signbit(value) == np.signbit(row[key]))
        assert markdown[i] == note_markdown(ref), i
    # The cases the rules single out all occur: no reason worth a point, one, five or more, a reason against.
    counts = {len(r["reasons"]) for r in reference}
    assert {0, 1} <= counts and max(counts) >= 5 and any(r["against"] for r in reference)
    assert any(r["headline"].endswith(NO_REASON) for r in reference)
    # The files explain writes are the same whether the notes come as a frame or as the reference's dicts.
    write_notes(notes, tmp_path / "frame", top=top)
    write_notes(reference, tmp_path / "dicts", top=top)
    for file in ("notes.jsonl", "notes.csv", "notes.md"):
        assert (tmp_path / "frame" / file).read_bytes() == (tmp_path / "dicts" / file).read_bytes(), file


#: A source's own templates no lead can reach, because the catalog's variant for the group needs the same value and
#: is tried first: HubSpot's company-fit sentences "for" need the industry ("{industry} company: a strong fit"),
#: X Education's lead-source sentences the lead source ("Came in through {lead_source}, ...").
UNREACHABLE = {"hubspot": {"source: company_size.reason.for[0]", "source: industry.reason.for[0]"},
               "x_education": {"source: lead_source.reason.for[0]", "source: lead_source.reason.against[0]"}}


def test_the_comparison_reaches_every_template_variant() -> None:
    """Every variant of the catalog is said for some lead of the comparisons above (a variant naming columns only
    the synthetic source has, in its notes; a group's last resort, in a source that lacks those columns), and every
    one of a source's own templates in its own notes."""
    catalog, catalog_said = set(), set()
    for name in SOURCES:
        rng = np.random.default_rng(SOURCES.index(name))
        spec, frame, who, contact = leads_of(source_of(name), rng)
        templates = compile_templates(load_catalog(), spec)
        used: set[int] = set()
        render_notes(note_values(frame, who), explanation(spec, rng), templates, top=TOP[name], contact=contact,
                     used=used)
        said = {templates.templates[t].origin for t in used}
        own = {t.origin for t in templates.templates if t.origin.startswith("source:")}
        assert not own - said - UNREACHABLE.get(name, set()), (name, sorted(own - said))
        assert not UNREACHABLE.get(name, set()) & said
        catalog |= {t.origin for t in templates.templates if t.origin.startswith("catalog:")}
        catalog_said |= said
    assert not catalog - catalog_said, sorted(catalog - catalog_said)


def test_texts_json_escapes_are_found_short_or_long_whole_or_sliced_in_any_chunks() -> None:
    """needs_escape looks at a column's bytes at once before the texts one by one: a quote, a backslash, a control or
    a non-ASCII character is found whether the text is short (inside its view in Arrow's newer string layout) or
    long, in a second chunk, or just outside a slice; and json_strings writes what json.dumps writes (null for a
    missing text)."""
    rng = np.random.default_rng(7)
    alphabet = list("abc XYZ 019-_.,;:!?") + ['"', "\\", "\n", "\t", "\x7f", "é", "ü", "€", "😀"]
    plain = ["".join(row) for row in rng.choice(list("abcdefgh xyz"), size=(200, 3))]
    mixed = ["".join(rng.choice(alphabet, size=int(k))) for k in rng.integers(0, 40, 400)] + [""]
    cases = [pl.Series(plain), pl.Series(mixed), pl.Series(plain + [None, 'a"', None]),
             pl.concat([pl.Series(plain), pl.Series(["é"])], rechunk=False),
             pl.concat([pl.Series(plain), pl.Series(mixed)], rechunk=False),
             pl.Series(["é", *plain])[1:], pl.Series([*plain, 'x"'])[:-1]]
    for s in cases:
        texts = s.to_list()
        expected = [t is not None and json.dumps(t) != f'"{t}"' for t in texts]
        assert needs_escape(s).tolist() == expected
        assert json_strings(s).to_list() == [json.dumps(t) for t in texts]


def test_rounded_numbers_are_pythons_round_and_repr() -> None:
    """Including decimal ties (2.35, 0.00015): their binary values lie just above or below the tie, where
    rint(v * 10**digits) gets about 40% of them wrong."""
    rng = np.random.default_rng(0)
    ties = np.arange(-3000, 3000) + 0.5
    x = np.concatenate([rng.normal(size=2000) * 30, rng.normal(size=500) * 1e6, np.arange(-2000, 2000) / 800,
                        ties / 10, ties / 1e4,
                        [0.03125, -0.40625, 2.25, -0.04, 0.0, -0.0, 1e-5, -5e-5, 1e12, 1e300, np.nan, np.inf, -np.inf]])
    for digits in (1, 4):
        value, text = rounded(x, digits)
        assert text.to_list() == [json.dumps(round(float(v), digits)) for v in x]
        assert [float(v).hex() for v in value] == [round(float(v), digits).hex() for v in x]


def test_values_of_any_type_are_written_as_python_writes_them() -> None:
    """Booleans, dates, decimals, floats compared as text, text compared as a number, null compared with > and a
    raw float in the note's JSON: the rare types go through Python's own str() and json.dumps, per value."""
    from datetime import date
    from decimal import Decimal

    rng = np.random.default_rng(7)
    n = 600
    spec = {"features": [
        {"name": "tier", "kind": "categorical", "group": "company_fit", "reason": {
            "for": [{"if": "value > 2", "text": "Tier {value} account"}, {"if": "value == '1.5'", "text": "Tier 1.5"}],
            "against": [{"if": "value != null", "text": "Tier {value|level}"}]}},
        {"name": "seats", "kind": "numeric", "group": "company_fit", "reason": {
            "for": [{"if": "value == '3.0'", "text": "Three seats, said as text"}, "{value|seat} in use"],
            "against": [{"if": "value > null", "text": "Seats known: {value}"}, "No seats"]}},
        {"name": "active", "kind": "numeric", "group": "engagement", "reason": {
            "for": [{"if": "value == 1", "text": "Active ({value}, {value|flag})"}, "Activity: {value}"],
            "against": "Inactive: {value|time}"}}],
        "who": ["{owner} since {since}", {"if": "active == 'True'", "text": "Active {flag}"},
                {"if": "segment > 1", "text": "Segment {segment}, band {band}{nothing}"}, "{band} / {segment}",
                "{amount|dollar}"],
        "what_happened": ["Spent {amount} ({amount|dollar}) by {since}", "{seats|seat}"]}
    engaged = [{"if": "tier > 1", "text": "Engaged, tier {tier}"}, "Engaged"]
    catalog = {"groups": {"company_fit": {"label": "Fit", "for": ["Fits"], "against": ["Does not fit"]},
                          "engagement": {"label": "Engagement", "for": engaged, "against": ["Not engaged"]}},
               "urgency": [{"if": "last_signal_days == null", "text": "No signal"}, "Unknown"]}
    pick = lambda *vs: rng.choice(np.array(vs, dtype=object), n).tolist()  # noqa: E731
    frame = pl.DataFrame({
        "lead_id": [f"L{i}" for i in range(n)],
        "tier": pl.Series(pick("1", "2.5", "3", "1.5", "abc", "nan", "inf", " 4 ", None), dtype=pl.String),
        "seats": pl.Series(pick(3.0, 1.0, 0.0, 2.5, None, float("nan"), 1e17, 0.1 + 0.2), dtype=pl.Float64),
        "active": pl.Series(pick(True, False, None), dtype=pl.Boolean),
    })
    who = pl.DataFrame({
        "owner": pl.Series(pick("Ana", "Bö", None), dtype=pl.String),
        "since": pl.Series(pick(date(2025, 1, 2), None), dtype=pl.Date),
        "flag": pl.Series(pick(True, False), dtype=pl.Boolean),
        "amount": pl.Series(pick(Decimal("1.50"), Decimal("1"), Decimal("0"), None), dtype=pl.Decimal(10, 2)),
        "buying_timeline": pl.Series(pick(0.5, 1e-05, 3.0, 1e16, None), dtype=pl.Float64),
        "segment": pl.Series(pick("2", "x", None), dtype=pl.Categorical),
        "band": pl.Series(pick("low", "high", None), dtype=pl.Enum(["low", "high"])),
        "nothing": pl.Series([None] * n, dtype=pl.Null),
    })
    contact = pl.DataFrame({"phone": pl.Series(pick(123, None), dtype=pl.Int64),
                            "vip": pl.Series(pick(True, None), dtype=pl.Boolean),
                            "weight": pl.Series(pick(0.1, 2.0, None), dtype=pl.Float64)})
    ex = explanation(spec, rng, n)
    reference = reference_notes(frame.to_dicts(), ex, spec, catalog, who=who.to_dicts(), contact=contact.to_dicts())
    notes = render_notes(note_values(frame, who), ex, compile_templates(catalog, spec), contact=contact)
    assert notes["note"].to_list() == [json.dumps(r, sort_keys=True) for r in reference]
    assert notes_markdown(notes).to_list() == [note_markdown(r) for r in reference]

    # A group no template can phrase for a lead is an error in both, naming the group and the feature.
    del catalog["groups"]["engagement"]["for"][1]
    with pytest.raises(CatalogError) as row_by_row:
        reference_notes(frame.to_dicts(), ex, spec, catalog, who=who.to_dicts())
    with pytest.raises(CatalogError) as columnar:
        render_notes(note_values(frame, who), ex, compile_templates(catalog, spec))
    assert str(columnar.value) == str(row_by_row.value)


def test_explain_and_score_write_what_the_reference_renderer_writes(pipeline_repo: Path, tmp_path: Path) -> None:
    """On a real bundle after `dvc repro`: the explain stage's notes.jsonl, notes.csv and notes.md, and every note
    column of the score stage's output, are byte for byte what the row-by-row renderer gives."""
    from features.build import SPLIT
    from features.spec import to_matrix
    from models.bundle import SQL
    from models.handoff import build_notes_reference
    from pipelines.bundle import load_bundle
    from pipelines.explain import who_and_contact
    from pipelines.io import write_frame
    from pipelines.score import OUTPUT_SCHEMA, _events_lazy, load_batch, source_of

    data = pipeline_repo / "data"
    bundle = load_bundle(data / "artifacts")
    catalog = load_catalog()
    test = pl.read_parquet(data / "features" / "features.parquet").filter(pl.col(SPLIT) == "test")
    X = to_matrix(test, bundle.spec)
    keep = bundle.decide(bundle.probability(X)) == SQL
    chosen = test.filter(pl.Series(keep))
    who, contact = who_and_contact(chosen["lead_id"].to_list(), data / "interim")
    reference = sorted(build_notes_reference(bundle, chosen.to_dicts(), X[keep], catalog, who=who.to_dicts(),
                                             contact=contact.to_dicts()),
                       key=lambda n: (-n["probability"], n["lead_id"]))
    assert len(reference) > 50
    handoff = data / "handoff"
    assert (handoff / "notes.jsonl").read_text() == "".join(json.dumps(n, sort_keys=True) + "\n" for n in reference)
    header = f"# Handoff notes\n\n{len(reference)} leads recommended to sales, highest score first.\n\n"
    assert (handoff / "notes.md").read_text() == header + "\n".join(note_markdown(n) for n in reference)
    write_frame(pl.DataFrame([note_row(n) for n in reference], infer_schema_length=None), tmp_path / "notes.csv")
    assert (handoff / "notes.csv").read_bytes() == (tmp_path / "notes.csv").read_bytes()

    # The score stage: the sample batch, read and checked as `leadlift score` does, SQLs noted row by row.
    from features.build import build_features

    scored = pl.read_parquet(data / "scores" / "scores.parquet")
    loaded = load_batch(data / "new" / "leads.parquet", data / "new" / "events.parquet", source_of(bundle), None)
    (clean,) = loaded.parts  # a small batch is read and checked whole
    leads, events = clean.frames()
    source = source_of(bundle)
    feats = build_features(leads.lazy(), _events_lazy(events), source,
                           observation_days=int(bundle.spec["observation_days"]), windows=bundle.spec["windows"],
                           as_of=loaded.as_of).collect()
    feats = leads.select("lead_id").join(feats, on="lead_id", how="left", maintain_order="left")
    X = to_matrix(feats, bundle.spec)
    sql = np.flatnonzero(bundle.decide(bundle.probability(X)) == SQL)
    firmo = [c for c in [*source.get("categorical", {}), *source.get("keep", [])] if c in leads.columns]
    allowed = [c for c in source.get("notes_allowed", []) if c in leads.columns]
    picked = leads[sql]
    noted = build_notes_reference(bundle, feats[sql].to_dicts(), X[sql], catalog, who=picked.select(firmo).to_dicts(),
                                  contact=picked.select(allowed).to_dicts())
    assert scored.height == feats.height and len(noted) == int((scored["decision"] == SQL).sum()) > 0
    assert scored["note"].gather(sql).to_list() == [json.dumps(n, sort_keys=True) for n in noted]
    flat = [note_row(n) for n in noted]
    for column in [c for c in OUTPUT_SCHEMA if c in flat[0] and c not in ("probability", "percentile")]:
        assert scored[column].gather(sql).to_list() == [f[column] for f in flat], column
