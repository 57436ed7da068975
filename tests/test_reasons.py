"""Reason codes: templates, points and the catalog's coverage of every feature."""

from __future__ import annotations

import re

import numpy as np
import pytest

from models.reasons import (
    CatalogError,
    cited_events,
    fill,
    group_contributions,
    reasons_for_lead,
    render,
    render_cited,
    to_points,
    urgency_values,
    why_now,
)

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


def test_only_groups_that_add_a_whole_point_are_reasons_for() -> None:
    """Rule: no reason under one point under "why now", not even the strongest when it is that weak."""
    values = {"page_pricing_7d": 2, "industry": "software", "visits": 1}
    contrib = np.array([0.8, 0.01, 0.0])
    groups, _ = group_contributions(contrib[None, :], SPEC)
    reasons, against = reasons_for_lead(values, contrib, np.array([0.4, 9.0, -0.3]), groups, SPEC, CATALOG, top=3)
    assert [r.group for r in reasons] == ["pricing_interest"] and against is None
    reasons, against = reasons_for_lead(values, contrib, np.array([-0.2, 0.3, -0.4]), groups, SPEC, CATALOG, top=3)
    assert reasons == [] and against is None
    # A group that lowers the score is never listed as a reason for, however the others rank.
    assert why_now(np.array([-5.0, -1.0, -2.0])) == []
    assert why_now(np.array([3.0, 0.99, 1.0, 6.0, 5.5]), top=2, most=4) == [3, 4]


def test_no_reason_cites_a_count_of_zero() -> None:
    """Rule: "Careers-page visits (0 views in the last 30 days) suggest job hunting" is never written."""
    from pipelines.explain import load_catalog

    catalog = load_catalog()
    none = {"page_careers_30d": 0, "page_careers_90d": 0, "careers_only_90d": 0}
    text = render("job_seeker", "against", none, catalog)
    assert "0 views" not in text and "Careers-page visits" not in text
    some = {"page_careers_30d": 2, "page_careers_90d": 3, "careers_only_90d": 0}
    assert render("job_seeker", "against", some, catalog) == (
        "Careers-page visits (2 views in the last 30 days) suggest job hunting")
    assert fill("Visited {n|time}", {"n": 0}, evidence=True) is None
    assert fill("Visited {n|time}", {"n": 0}) == "Visited 0 times"  # a fact in "what happened", not evidence
    assert fill("Last call {d|day} ago", {"d": 0}, evidence=True) == "Last call 0 days ago"  # time may be zero
    assert fill("{page_pricing_30d} pricing visits", {"page_pricing_30d": 0}, evidence=True) is None


def test_no_catalog_sentence_cites_a_zero_count_whatever_the_lead_did() -> None:
    from features.build import feature_columns
    from pipelines.explain import load_catalog

    catalog = load_catalog()
    source = {"categorical": {"industry": {}, "employee_band": {}, "region": {}, "job_title": {"parse": "seniority"},
                              "lead_source": {}, "email_domain_kind": {}, "buying_timeline": {}}, "has_events": True}
    names = feature_columns(source, [1, 7, 30, 90])
    rng = np.random.default_rng(0)
    zero_count = re.compile(r"(?<![\d.])0 (?!days?\b)[a-z]")
    for _ in range(200):
        values = {n: float(rng.choice([0, 0, 0, 1, 2])) if n.endswith("d") else float(rng.integers(0, 40))
                  for n in names if not n.startswith(("industry", "region", "employee", "lead_source"))}
        values.update({"days_since_high_intent": rng.choice([None, 3.0]), "seniority": "vp",
                       "email_domain_kind": "corporate", "buying_timeline": None})
        for group in catalog["groups"]:
            for direction in ("for", "against"):
                text = render(group, direction, values, catalog)
                assert not zero_count.search(text), (group, direction, text)


def test_urgency_covers_every_event_a_reason_cites() -> None:
    """Rule: a note whose reason says "Met with sales 3 days ago" never says "No buying signal yet"."""
    from models.reasons import first_variant
    from pipelines.explain import load_catalog

    catalog = load_catalog()
    values = {"demo_request_90d": 0, "trial_start_90d": 0, "meeting_90d": 1, "days_since_meeting": 3.0,
              **{f"days_since_{k}": None for k in ("page_pricing", "demo_request", "trial_start", "email_reply")}}
    text, events = render_cited("demo_trial", "for", values, catalog)
    assert text == "Met with sales 3 days ago" and events == ("meeting",)
    signal = urgency_values(values, events)
    assert (signal["last_signal"], signal["last_signal_days"]) == ("meeting", 3.0)
    assert first_variant(catalog["urgency"], {**values, **signal}) == (
        "Latest signal: a meeting with sales 3 days before handoff")
    # An event outside the buying signals counts once a reason cites it: its date is then the latest signal.
    values = {**values, "page_product_30d": 2, "page_docs_30d": 0, "page_blog_30d": 0, "content_download_30d": 0,
              "research_30d": 2, "days_since_page_product": 1.0}
    assert cited_events(["research_30d"], values) == ("page_product",)
    assert urgency_values(values, ("page_product",))["last_signal_days"] == 1.0
    # Nothing cited and no buying signal: said so, for a source that has events.
    quiet = {f"days_since_{k}": None for k in ("page_pricing", "demo_request", "trial_start", "email_reply",
                                                "meeting")}
    assert urgency_values(quiet, ()) == {"last_signal": None, "last_signal_action": None, "last_signal_days": None}
    assert urgency_values({"total_visits": 3}, ()) == {}  # a source without event times: urgency unknown


def test_the_note_never_prints_a_plus_minus_sign_for_points_that_round_to_zero() -> None:
    from models.handoff import note_markdown

    reason = {"group": "g", "label": "G", "text": "A reason", "points": -0.0, "logodds": 0.0}
    note = {"lead_id": "a", "score": 20, "decision": "SQL", "who": "w", "reasons": [reason, {**reason, "points": 3.4}],
            "against": {**reason, "points": -2.6}, "urgency": {"text": "u"}, "what_happened": "h"}
    text = note_markdown(note)
    assert "+-" not in text and "(+0 pts)" in text and "(+3 pts)" in text and "(-3 pts)" in text
