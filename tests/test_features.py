"""Point-in-time features on a three-lead example worked out by hand, the spec, to_matrix, labels and the split."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import polars as pl
import pytest

from features.build import (
    BREADTH,
    CAREERS_ONLY,
    HIGH_INTENT_RECENCY,
    IS_STUDENT_DOMAIN,
    SENIORITY,
    VELOCITY,
    build_features,
    count_name,
    label_leads,
    parse_seniority,
    recency_name,
    time_split,
)
from features.schema import EVENT_TYPES, GROUPS, HIGH_INTENT_EVENTS, TS
from features.spec import categorical_indices, check_compatible, feature_names, make_spec, to_matrix
from pipelines.featurize import featurize

UTC = timezone.utc
OBS = 14
WINDOWS = [1, 7, 30, 90]
T0_A = datetime(2025, 3, 15, tzinfo=UTC)  # lead a: created 2025-03-01 + 14 days
T0_B = datetime(2025, 3, 16, tzinfo=UTC)
T0_C = datetime(2025, 3, 17, tzinfo=UTC)
SOURCE: dict[str, Any] = {
    "name": "hand",
    "categorical": {
        "industry": {"group": "company_fit", "description": "Industry of the company"},
        "job_title": {"group": "seniority", "description": "Free-text job title", "parse": "seniority"},
        "email_domain_kind": {"group": "email_domain", "description": "Kind of email domain"},
    },
    "numeric": {"employees": {"group": "company_fit", "description": "Employees at the company"}},
    "pii": ["email"],
    "has_events": True,
    "has_outcome_times": True,
}


def three_leads() -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "lead_id": ["a", "b", "c"],
            "created_at": [T0_A - timedelta(days=OBS), T0_B - timedelta(days=OBS), T0_C - timedelta(days=OBS)],
            "industry": ["software", "education", None],
            "job_title": ["VP of Engineering", "Marketing Intern", None],
            "email_domain_kind": ["corporate", "student", "free-mail"],
            "employees": [250.0, None, 12.0],
            "email": ["x@a.com", "y@b.edu", "z@c.com"],
            "legacy_score": [80, 20, 50],
        },
        schema_overrides={"created_at": TS},
    )


def three_leads_events() -> pl.LazyFrame:
    rows = [
        # lead a: pricing at 0.5, 3, exactly 7 and 10 days before t0; opens at 20 and 100 days; an unknown kind.
        ("a", T0_A - timedelta(hours=12), "page_pricing"),
        ("a", T0_A - timedelta(days=3), "page_pricing"),
        ("a", T0_A - timedelta(days=7), "page_pricing"),
        ("a", T0_A - timedelta(days=10), "page_pricing"),
        ("a", T0_A - timedelta(days=20), "email_open"),
        ("a", T0_A - timedelta(days=100), "email_open"),
        ("a", T0_A - timedelta(days=2), "other"),
        # at and after t0: must not count
        ("a", T0_A, "demo_request"),
        ("a", T0_A + timedelta(days=1), "trial_start"),
        # lead b: careers views and an email open only -> careers-only; a pricing view after t0 must not undo it.
        ("b", T0_B - timedelta(days=5), "page_careers"),
        ("b", T0_B - timedelta(days=40), "page_careers"),
        ("b", T0_B - timedelta(days=1), "email_open"),
        ("b", T0_B + timedelta(hours=2), "page_pricing"),
        # a lead nobody knows
        ("zz", T0_A - timedelta(days=1), "page_pricing"),
    ]
    return pl.LazyFrame(
        {"lead_id": [r[0] for r in rows], "occurred_at": [r[1] for r in rows], "event_type": [r[2] for r in rows]},
        schema_overrides={"occurred_at": TS},
    )


@pytest.fixture(scope="module")
def feats() -> pl.DataFrame:
    out = build_features(three_leads(), three_leads_events(), SOURCE, observation_days=OBS, windows=WINDOWS).collect()
    return out.sort("lead_id")


def row(df: pl.DataFrame, lead: str) -> dict[str, Any]:
    return df.filter(pl.col("lead_id") == lead).row(0, named=True)


def test_t0_is_creation_plus_observation_window(feats: pl.DataFrame) -> None:
    assert feats["t0"].to_list() == [T0_A, T0_B, T0_C]
    assert feats.columns[:2] == ["lead_id", "t0"]


def test_window_counts_include_the_boundary_and_exclude_t0_and_later(feats: pl.DataFrame) -> None:
    a = row(feats, "a")
    assert [a[count_name("page_pricing", w)] for w in WINDOWS] == [1, 3, 4, 4]
    assert [a[count_name("email_open", w)] for w in WINDOWS] == [0, 0, 1, 1]  # the 100-day-old open is outside 90
    assert a[count_name("other", 7)] == 1
    assert a[count_name("demo_request", 90)] == 0 and a[count_name("trial_start", 90)] == 0


def test_days_since_last_event_of_each_kind(feats: pl.DataFrame) -> None:
    a, b = row(feats, "a"), row(feats, "b")
    assert a[recency_name("page_pricing")] == pytest.approx(0.5)
    assert a[recency_name("email_open")] == pytest.approx(20.0)  # the 100-day-old one is older
    assert a[recency_name("demo_request")] is None  # only at t0: not before it
    assert b[recency_name("page_careers")] == pytest.approx(5.0)
    assert b[recency_name("page_pricing")] is None  # only after t0


def test_days_since_high_intent_action(feats: pl.DataFrame) -> None:
    assert row(feats, "a")[HIGH_INTENT_RECENCY] == pytest.approx(0.5)
    assert row(feats, "b")[HIGH_INTENT_RECENCY] is None  # careers and an open are not high intent


def test_velocity_is_a_smoothed_rate_ratio(feats: pl.DataFrame) -> None:
    # a: last 7 days = 3 pricing + 1 other = 4; days 8-30 = pricing at 10 + open at 20 = 2.
    assert row(feats, "a")[VELOCITY] == pytest.approx((4 + 1) / (2 * 7 / 23 + 1))
    # b: careers at 5 + open at 1 = 2 recent, 0 before -> 3.
    assert row(feats, "b")[VELOCITY] == pytest.approx(3.0)
    assert row(feats, "c")[VELOCITY] == pytest.approx(1.0)  # no activity is steady, not accelerating


def test_breadth_counts_distinct_kinds_in_90_days(feats: pl.DataFrame) -> None:
    assert [row(feats, x)[BREADTH] for x in "abc"] == [3, 2, 0]


def test_careers_only_ignores_email_opens_but_not_product_pages(feats: pl.DataFrame) -> None:
    assert [row(feats, x)[CAREERS_ONLY] for x in "abc"] == [0, 1, 0]


def test_lead_without_events_gets_zero_counts_and_null_recency(feats: pl.DataFrame) -> None:
    c = row(feats, "c")
    counts = [count_name(k, w) for k in (*EVENT_TYPES, "other") for w in WINDOWS]
    assert all(c[name] == 0 for name in counts)
    assert all(c[recency_name(k)] is None for k in (*EVENT_TYPES, "other"))
    assert c[HIGH_INTENT_RECENCY] is None


def random_valued_batch(seed: int, leads: int = 400, events: int = 12_000) -> tuple[pl.LazyFrame, pl.LazyFrame,
                                                                                      dict[str, Any]]:
    """Leads created over 200 days and events over 400 days (some on exact window edges, some after t0, some for an
    unknown lead, some without a value), two declared kinds that carry a value, one of them high intent."""
    rng = np.random.default_rng(seed)
    ids = [f"L{i}" for i in range(leads)]
    start = datetime(2024, 9, 1, tzinfo=UTC)
    created = [start + timedelta(days=100, hours=int(h)) for h in rng.integers(0, 24 * 200, leads)]
    lead_of = rng.integers(0, leads + 1, events)  # leads + 1: a lead nobody knows
    at = [start + timedelta(seconds=int(x)) for x in rng.integers(0, 86400 * 400, events)]
    edge = rng.random(events) < 0.05  # exactly 1, 7, 30 or 90 days before t0
    at = [created[j] + timedelta(days=OBS - int(rng.choice([1, 7, 30, 90]))) if e and j < leads else a
          for a, e, j in zip(at, edge, lead_of.tolist(), strict=True)]
    kinds = ["page_pricing", "call_connected", "campaign_member", "email_open", "page_careers", "webinar", "weird"]
    values = np.where(rng.random(events) < 0.2, np.nan, rng.normal(100, 50, events))
    source: dict[str, Any] = {"name": "random", "has_events": True, "categorical": {}, "numeric": {}, "event_types": {
        "call_connected": {"group": "calls", "description": "Calls", "high_intent": True,
                           "value": {"description": "Seconds", "unit": "seconds"}},
        "campaign_member": {"group": "campaigns", "description": "Campaigns",
                            "value": {"description": "Spend", "unit": "EUR"}}}}
    return (pl.LazyFrame({"lead_id": ids, "created_at": created}, schema_overrides={"created_at": TS}),
            pl.LazyFrame({"lead_id": [ids[j] if j < leads else "ghost" for j in lead_of.tolist()], "occurred_at": at,
                          "event_type": rng.choice(kinds, events).tolist(), "value": values},
                         schema_overrides={"occurred_at": TS}),
            source)


def test_event_features_equal_a_recount_of_each_leads_events_before_t0() -> None:
    """The vectorised features against their definition, lead by lead: counts, values, recency, velocity, breadth."""
    leads, events, source = random_valued_batch(seed=3)
    windows = [1, 7, 14, 30, 90]
    out = build_features(leads, events, source, observation_days=OBS, windows=windows).collect()
    ev = events.collect()
    day = 86400.0
    for lead in out.sample(60, seed=1).iter_rows(named=True):
        t0 = lead["t0"]
        mine = [(str(k), (t0 - at).total_seconds() / day, v) for k, at, v in ev.filter(
            (pl.col("lead_id") == lead["lead_id"]) & (pl.col("occurred_at") < t0)).select(
            pl.col("event_type").replace_strict(["weird"], ["other"], default=pl.col("event_type")), "occurred_at",
            "value").iter_rows()]
        for kind in ("page_pricing", "call_connected", "campaign_member", "other"):
            ages = [a for k, a, _ in mine if k == kind]
            for w in windows:
                assert lead[count_name(kind, w)] == sum(a <= w for a in ages), (kind, w)
            assert lead[recency_name(kind)] == (pytest.approx(min(ages), rel=1e-12) if ages else None)
        for kind in ("call_connected", "campaign_member"):
            for w in windows:
                total = sum(v for k, a, v in mine if k == kind and a <= w and not np.isnan(v))
                assert lead[f"{kind}_value_{w}d"] == pytest.approx(total, rel=1e-12, abs=1e-9)
        recent = sum(a <= 7 for _, a, _ in mine)
        prior = sum(7 < a <= 30 for _, a, _ in mine)
        assert lead[VELOCITY] == pytest.approx((recent + 1.0) / (prior * 7 / 23 + 1.0), rel=1e-12)
        assert lead[BREADTH] == len({k for k, a, _ in mine if a <= 90})
        high = [a for k, a, _ in mine if k in (*HIGH_INTENT_EVENTS, "call_connected")]  # declared high intent
        assert lead[HIGH_INTENT_RECENCY] == (pytest.approx(min(high), rel=1e-12) if high else None)


def test_features_come_one_row_per_lead_in_the_leads_order() -> None:
    """Scoring takes the features in the order of its leads without a join (`pipelines.score.lead_features`): shuffled
    leads, some without events, come back in their own order, one row each."""
    leads, events, source = random_valued_batch(seed=7, leads=3000, events=20_000)
    shuffled = leads.collect().sample(fraction=1.0, shuffle=True, seed=2)
    out = build_features(shuffled.lazy(), events, source, observation_days=OBS, windows=[7, 30]).collect()
    assert out["lead_id"].to_list() == shuffled["lead_id"].to_list()


def test_summed_event_values_are_the_same_bits_run_after_run() -> None:
    """A float sum depends on the order it adds in; the parallel group-by must not decide it."""
    leads, events, source = random_valued_batch(seed=5, leads=50, events=60_000)
    runs = [build_features(leads, events, source, observation_days=OBS, windows=[7, 30, 365]).collect()
            for _ in range(4)]
    assert all(run.equals(runs[0]) for run in runs[1:])


def test_firmographics_seniority_and_student_flag(feats: pl.DataFrame) -> None:
    assert feats[SENIORITY].to_list() == ["vp", "student", None]
    assert feats[IS_STUDENT_DOMAIN].to_list() == [0, 1, 0]
    assert feats["industry"].to_list() == ["software", "education", None]
    assert feats["employees"].dtype == pl.Float64


def test_pii_legacy_score_and_raw_title_never_become_features(feats: pl.DataFrame) -> None:
    assert not {"email", "legacy_score", "job_title", "created_at"} & set(feats.columns)


def test_declaring_pii_as_a_feature_is_refused() -> None:
    source = {**SOURCE, "categorical": {**SOURCE["categorical"], "email": {"group": "email_domain"}}}
    with pytest.raises(ValueError, match="email"):
        build_features(three_leads(), three_leads_events(), source, observation_days=OBS, windows=WINDOWS)


@pytest.mark.parametrize(
    ("title", "level"),
    [
        ("Chief Executive Officer", "executive"),
        ("Co-Founder", "executive"),
        ("Owner", "executive"),
        ("President", "executive"),
        ("Vice President of Sales", "vp"),
        ("Vice-President, Marketing", "vp"),
        ("SVP Operations", "vp"),
        ("Head of Data", "vp"),
        ("Managing Director", "director"),
        ("director, it", "director"),
        ("Product Manager", "manager"),
        ("Team Lead", "manager"),
        ("Shift Supervisor", "manager"),
        ("PhD Student", "student"),
        ("Summer Intern", "student"),
        ("Internal Auditor", "individual_contributor"),
        ("Software Engineer", "individual_contributor"),
        ("", "individual_contributor"),
        (None, None),
    ],
)
def test_seniority_is_parsed_from_the_title(title: str | None, level: str | None) -> None:
    got = pl.DataFrame({"t": [title]}, schema={"t": pl.String}).select(parse_seniority(pl.col("t"))).item()
    assert got == level


def test_every_generator_title_parses_to_its_level() -> None:
    synthetic = pytest.importorskip("features.synthetic")
    titles = [(t, level) for level, ts in synthetic.TITLES.items() for t in ts]
    got = pl.DataFrame({"t": [t for t, _ in titles]}).select(parse_seniority(pl.col("t"))).to_series().to_list()
    wrong = [(t, want, g) for (t, want), g in zip(titles, got, strict=True) if g != want]
    assert not wrong


def test_scoring_with_as_of_equal_to_t0_gives_the_training_features(feats: pl.DataFrame) -> None:
    for lead, t0 in (("a", T0_A), ("b", T0_B), ("c", T0_C)):
        scored = build_features(three_leads().filter(pl.col("lead_id") == lead), three_leads_events(), SOURCE,
                                observation_days=OBS, windows=WINDOWS, as_of=t0).collect()
        assert scored.row(0, named=True) == row(feats, lead)


def test_as_of_gives_every_lead_the_same_t0() -> None:
    as_of = datetime(2025, 4, 1)  # naive: read as UTC
    out = build_features(three_leads(), three_leads_events(), SOURCE, observation_days=OBS, windows=WINDOWS,
                         as_of=as_of).collect()
    assert out["t0"].unique().to_list() == [datetime(2025, 4, 1, tzinfo=UTC)]
    assert row(out, "b")[count_name("page_pricing", 30)] == 1  # the view after b's training t0 is before as_of


def test_source_without_events_has_firmographics_only() -> None:
    source = {**SOURCE, "has_events": False}
    out = build_features(three_leads(), three_leads_events().head(0), source, observation_days=OBS,
                         windows=WINDOWS).collect()
    assert out.columns == ["lead_id", "t0", "industry", SENIORITY, "email_domain_kind", "employees", IS_STUDENT_DOMAIN]


# ---------------------------------------------------------------- spec and matrix


def test_spec_covers_every_feature_column_with_group_description_and_unit(feats: pl.DataFrame) -> None:
    spec = make_spec(feats, SOURCE, observation_days=OBS, horizon_days=60, windows=WINDOWS)
    assert feature_names(spec) == feats.columns[2:]
    for f in spec["features"]:
        assert f["group"] in GROUPS, f
        assert f["kind"] in ("numeric", "categorical")
        assert f["description"] and f["unit"]
    by_name = {f["name"]: f for f in spec["features"]}
    assert by_name["page_pricing_7d"]["description"] == "Pricing-page views in the 7 days before the decision time"
    assert by_name["page_pricing_7d"]["group"] == "pricing_interest"
    assert by_name[SENIORITY]["group"] == "seniority" and by_name[SENIORITY]["source_column"] == "job_title"
    assert by_name[HIGH_INTENT_RECENCY]["group"] == by_name[VELOCITY]["group"] == "recency"
    assert by_name[recency_name("demo_request")]["group"] == "demo_trial"
    assert by_name[recency_name("page_careers")]["group"] == "job_seeker"
    assert by_name[BREADTH]["group"] == "engagement" and by_name[CAREERS_ONLY]["group"] == "job_seeker"
    assert by_name[IS_STUDENT_DOMAIN]["group"] == "email_domain"
    assert spec["windows"] == WINDOWS and spec["event_types"][-1] == "other" and spec["has_events"]


def test_categories_come_from_train_rows_with_other_last(feats: pl.DataFrame) -> None:
    spec = make_spec(feats, SOURCE, observation_days=OBS, horizon_days=60, windows=WINDOWS,
                     train_mask=pl.Series([True, True, False]))
    by_name = {f["name"]: f for f in spec["features"]}
    assert by_name["industry"]["categories"] == ["education", "software", "other"]
    assert by_name[SENIORITY]["categories"] == ["student", "vp", "other"]


def test_to_matrix_maps_unseen_category_to_other_and_null_to_nan(feats: pl.DataFrame) -> None:
    spec = make_spec(feats, SOURCE, observation_days=OBS, horizon_days=60, windows=WINDOWS)
    scoring = feats.with_columns(pl.Series("industry", ["software", "mining", None]))
    x = to_matrix(scoring, spec)
    j = feature_names(spec).index("industry")
    cats = spec["features"][j]["categories"]
    assert x.dtype == np.float64 and x.shape == (3, len(spec["features"]))
    assert x[0, j] == cats.index("software")
    assert x[1, j] == cats.index("other")
    assert np.isnan(x[2, j])
    assert j in categorical_indices(spec)
    k = feature_names(spec).index("employees")
    assert np.isnan(x[1, k]) and x[0, k] == 250.0


def test_check_compatible_names_missing_and_extra_columns(feats: pl.DataFrame) -> None:
    spec = make_spec(feats, SOURCE, observation_days=OBS, horizon_days=60, windows=WINDOWS)
    check_compatible(spec, [*feats.columns, "split", "label", "legacy_score"])
    with pytest.raises(ValueError, match=r"missing \['industry'\]; extra \['page_pricing_14d'\]"):
        check_compatible(spec, [c for c in feats.columns if c != "industry"] + ["page_pricing_14d"])


# ---------------------------------------------------------------- labels, scope and split


def outcome_frame(rows: list[tuple[str, bool, datetime | None]]) -> pl.LazyFrame:
    return pl.LazyFrame(
        {"lead_id": [r[0] for r in rows], "converted": [r[1] for r in rows], "converted_at": [r[2] for r in rows]},
        schema={"lead_id": pl.String, "converted": pl.Boolean, "converted_at": TS},
    )


def test_label_scope_and_censoring() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    feats = pl.LazyFrame({"lead_id": list("abcdefg"), "t0": [t0] * 6 + [t0 + timedelta(days=30)]},
                         schema_overrides={"t0": TS})
    outs = outcome_frame([
        ("a", True, t0 - timedelta(hours=1)),   # before t0
        ("b", True, t0),                        # at t0: inside the window
        ("c", True, t0 + timedelta(days=59)),   # inside
        ("d", True, t0 + timedelta(days=60)),   # at t0 + H: outside -> 0
        ("e", False, None),                     # never
        ("g", True, t0 + timedelta(days=31)),   # converted, but g's window runs past the snapshot
    ])  # f has no outcome row: not converted
    snapshot = t0 + timedelta(days=70)
    out = label_leads(feats, outs, horizon_days=60, snapshot_at=snapshot, has_outcome_times=True).collect()
    assert out["scope"].to_list() == ["converted_before_t0"] + ["in_scope"] * 5 + ["censored"]
    assert out["label"].to_list() == [None, 1, 1, 0, 0, 0, None]


def test_without_outcome_times_every_lead_is_in_scope_and_label_is_converted() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    feats = pl.LazyFrame({"lead_id": ["a", "b", "c"], "t0": [t0] * 3}, schema_overrides={"t0": TS})
    outs = outcome_frame([("a", True, None), ("b", False, None), ("c", True, None)])
    out = label_leads(feats, outs, horizon_days=60, snapshot_at=t0, has_outcome_times=False).collect()
    assert out["scope"].to_list() == ["in_scope"] * 3
    assert out["label"].to_list() == [1, 0, 1]


def test_split_is_time_ordered_and_ties_break_by_lead_id() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    df = pl.DataFrame({
        "lead_id": [f"l{i:02d}" for i in range(10)][::-1],
        "t0": [t0 + timedelta(days=i // 2) for i in range(10)],
        "scope": ["in_scope"] * 9 + ["censored"],
    })
    out = time_split(df, train=0.6, valid=0.2, test=0.2)
    inside = out.filter(pl.col("scope") == "in_scope")
    assert inside["split"].to_list() == ["train"] * 5 + ["valid"] * 2 + ["test"] * 2
    assert out.filter(pl.col("scope") == "censored")["split"].to_list() == [None]
    assert inside["t0"].is_sorted()
    assert time_split(df.reverse(), train=0.6, valid=0.2, test=0.2).equals(out)  # input order does not matter


def _many_leads(n: int) -> tuple[pl.LazyFrame, pl.LazyFrame, pl.LazyFrame]:
    rng = np.random.default_rng(0)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    created = [start + timedelta(days=int(d)) for d in rng.integers(0, 200, size=n)]
    leads = pl.LazyFrame({
        "lead_id": [f"L{i:04d}" for i in range(n)], "created_at": created,
        "industry": rng.choice(["software", "retail", "health"], size=n).tolist(),
        "job_title": rng.choice(["CEO", "Analyst", "Student"], size=n).tolist(),
        "email_domain_kind": rng.choice(["corporate", "student"], size=n).tolist(),
        "employees": rng.integers(1, 1000, size=n).astype(float).tolist(),
        "legacy_score": rng.integers(0, 101, size=n).tolist(),
    }, schema_overrides={"created_at": TS})
    ev_lead = rng.integers(0, n, size=n * 5)
    events = pl.LazyFrame(
        {
            "lead_id": [f"L{i:04d}" for i in ev_lead],
            "occurred_at": [
                created[i] + timedelta(hours=int(h))
                for i, h in zip(ev_lead, rng.integers(-200, 800, n * 5), strict=True)
            ],
            "event_type": rng.choice(["page_pricing", "email_open", "page_careers", "webinar"], size=n * 5).tolist(),
        },
        schema_overrides={"occurred_at": TS},
    )
    conv = rng.random(n) < 0.3
    outcomes = pl.LazyFrame({
        "lead_id": [f"L{i:04d}" for i in range(n)], "converted": conv.tolist(),
        "converted_at": [c + timedelta(days=int(d)) if k else None
                         for c, d, k in zip(created, rng.integers(0, 90, size=n), conv, strict=True)],
    }, schema_overrides={"converted_at": TS})
    return leads, events, outcomes


def test_featurize_counts_add_up_and_only_in_scope_leads_get_a_split() -> None:
    leads, events, outcomes = _many_leads(300)
    source = {**SOURCE, "legacy_score": True, "snapshot_at": "2025-08-01T00:00:00+00:00", "after_outcome": []}
    params = {"base": {"observation_days": OBS, "horizon_days": 60}, "windows": WINDOWS,
              "split": {"train": 0.6, "valid": 0.2, "test": 0.2}, "leak_auc_max": 0.95, "leak_allow": [],
              "max_lost_conversion_share": 1.0, "min_train_positives": 10}
    frame, spec, report = featurize(leads, events, outcomes, source, params)
    assert report["leads"] == frame.height == 300
    assert report["in_scope"] + report["converted_before_t0"] + report["censored"] == 300
    assert min(report["in_scope"], report["converted_before_t0"], report["censored"]) > 0
    assert sum(s["leads"] for s in report["splits"].values()) == report["in_scope"]
    assert frame.filter(pl.col("scope") != "in_scope")["split"].null_count() == 300 - report["in_scope"]
    assert frame.filter(pl.col("scope") == "in_scope")["label"].null_count() == 0
    s = report["splits"]
    assert s["train"]["t0_max"] <= s["valid"]["t0_min"] and s["valid"]["t0_max"] <= s["test"]["t0_min"]
    assert frame.columns[:6] == ["lead_id", "t0", "split", "scope", "label", "legacy_score"]
    assert frame.columns[6:] == feature_names(spec)
    assert report["leak_guard"]["findings"] == []
