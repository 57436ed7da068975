"""Reason codes: templates, points and the catalog's coverage of every feature."""

from __future__ import annotations

import numpy as np
import pytest

from models.reasons import CatalogError, fill, group_contributions, reasons_for_lead, render, to_points

CATALOG = {
    "groups": {
        "pricing_interest": {
            "label": "Pricing interest",
            "for": [
                {
                    "if": "page_pricing_7d > 0",
                    "text": "Viewed the pricing page {page_pricing_7d|time} in the last 7 days",
                }
            ],
            "against": ["Has not looked at pricing"],
        },
        "company_fit": {"label": "Company fit", "for": "{industry} company", "against": "{industry} company, poor fit"},
    },
    "features": {"visits": {"for": "Visited {value|time}", "against": "Only {value|visit}"}},
}
SPEC = {
    "features": [
        {"name": "page_pricing_7d", "kind": "numeric", "group": "pricing_interest"},
        {"name": "industry", "kind": "categorical", "group": "company_fit"},
        {"name": "visits", "kind": "numeric", "group": "engagement"},
    ]
}


def test_fill_pluralises_and_reports_missing_values() -> None:
    assert fill("Viewed {n|time}", {"n": 1}) == "Viewed 1 time"
    assert fill("Viewed {n|time}", {"n": 4.0}) == "Viewed 4 times"
    assert fill("Read {n|entry|entries}", {"n": 2}) == "Read 2 entries"
    assert fill("Viewed {n|time}", {"n": None}) is None
    assert fill("Viewed {n|time}", {}) is None


def test_render_picks_the_first_variant_whose_condition_holds() -> None:
    text = render("pricing_interest", "for", {"page_pricing_7d": 3}, CATALOG)
    assert text == "Viewed the pricing page 3 times in the last 7 days"


def test_render_falls_back_to_the_top_features_template_not_to_its_name() -> None:
    assert render("engagement", "for", {"visits": 12}, CATALOG, top_feature="visits") == "Visited 12 times"
    with pytest.raises(CatalogError, match="engagement"):
        render("engagement", "for", {"other": 1}, CATALOG, top_feature="other")


def test_points_add_up_to_the_score_above_the_average_lead() -> None:
    rng = np.random.default_rng(0)
    contrib = rng.normal(size=(5, 4))  # 3 features + bias column
    groups, gc = group_contributions(contrib, SPEC)
    assert groups == ["company_fit", "pricing_interest", "engagement"]
    margin = contrib[:, :3].sum(axis=1) + 0.2
    score = 100 / (1 + np.exp(-margin))
    base = 100 / (1 + np.exp(-0.2))
    pts = to_points(gc, score, base, margin, 0.2, np.full(5, 25.0))
    np.testing.assert_allclose(pts.sum(axis=1), score - base, atol=1e-9)


def test_reasons_for_lead_orders_by_points_and_names_the_strongest_against() -> None:
    values = {"page_pricing_7d": 2, "industry": "software", "visits": 1}
    contrib = np.array([0.8, -0.5, 0.1])
    groups, _ = group_contributions(contrib[None, :], SPEC)
    points = np.array([-5.0, 8.0, 1.0])  # company_fit, pricing_interest, engagement
    reasons, against = reasons_for_lead(values, contrib, points, groups, SPEC, CATALOG, top=2)
    assert [r.group for r in reasons] == ["pricing_interest", "engagement"]
    assert reasons[0].text.startswith("Viewed the pricing page 2 times")
    assert against is not None and against.text == "software company, poor fit"


def test_every_group_in_the_catalog_can_always_be_phrased_in_both_directions() -> None:
    """The last variant of each group and direction needs no condition and no value, so a lead with missing data
    still gets a sentence, never a column name or a crash."""
    from pipelines.explain import load_catalog

    catalog = load_catalog()
    for group, entry in catalog["groups"].items():
        for direction in ("for", "against"):
            last = entry[direction][-1]
            last = last if isinstance(last, dict) else {"text": last}
            assert "if" not in last and "{" not in last["text"], (group, direction)
            assert render(group, direction, {}, catalog)


def test_the_catalog_phrases_every_feature_of_the_synthetic_spec() -> None:
    from pathlib import Path

    import yaml

    from features.build import feature_columns
    from features.schema import GROUPS
    from pipelines.explain import load_catalog

    catalog = load_catalog()
    source = yaml.safe_load(Path("sources/synthetic.yaml").read_text())["leads"]
    names = feature_columns({**source, "has_events": True}, [1, 7, 30, 90])
    assert set(catalog["groups"]) == set(GROUPS)
    values = {n: 1 for n in names}
    for group in GROUPS:
        for direction in ("for", "against"):
            text = render(group, direction, values, catalog)
            assert "_" not in text and "{" not in text, (group, direction, text)


def test_a_sources_own_template_beats_the_groups_generic_sentence() -> None:
    """A bank's "previous campaign outcome" must not be phrased as the catalog's "Engages with our emails"."""
    catalog = {
        "groups": {
            "engagement": {
                "for": [
                    {"if": "email_reply_30d > 0", "text": "Replied {email_reply_30d|time}"},
                    "Engages with our emails and events",
                ]
            }
        }
    }
    own = {"poutcome": {"for": [{"if": "value == 'success'", "text": "Said yes to our previous campaign"}]}}
    says = render("engagement", "for", {"poutcome": "success"}, catalog, top_feature="poutcome", spec_templates=own)
    assert says == "Said yes to our previous campaign"
    # A group variant whose condition holds still comes first; the generic sentence is the last resort.
    assert render("engagement", "for", {"email_reply_30d": 2, "poutcome": "success"}, catalog,
                  top_feature="poutcome", spec_templates=own) == "Replied 2 times"
    assert render("engagement", "for", {"poutcome": "failure"}, catalog, top_feature="poutcome",
                  spec_templates=own) == "Engages with our emails and events"


def test_reasons_that_add_less_than_a_point_are_left_out_but_the_strongest_stays() -> None:
    values = {"page_pricing_7d": 2, "industry": "software", "visits": 1}
    contrib = np.array([0.8, 0.01, 0.0])
    groups, _ = group_contributions(contrib[None, :], SPEC)
    reasons, against = reasons_for_lead(values, contrib, np.array([0.4, 9.0, -0.3]), groups, SPEC, CATALOG, top=3)
    assert [r.group for r in reasons] == ["pricing_interest"] and against is None
    reasons, _ = reasons_for_lead(values, contrib, np.array([-0.2, 0.3, -0.4]), groups, SPEC, CATALOG, top=3)
    assert [r.group for r in reasons] == ["pricing_interest"]


def test_the_note_never_prints_a_plus_minus_sign_for_points_that_round_to_zero() -> None:
    from models.handoff import note_markdown

    reason = {"group": "g", "label": "G", "text": "A reason", "points": -0.0, "logodds": 0.0}
    note = {"lead_id": "a", "score": 20, "decision": "SQL", "who": "w", "reasons": [reason, {**reason, "points": 3.4}],
            "against": {**reason, "points": -2.6}, "urgency": {"text": "u"}, "what_happened": "h"}
    text = note_markdown(note)
    assert "+-" not in text and "(+0 pts)" in text and "(+3 pts)" in text and "(-3 pts)" in text
