"""The legacy point score: a fair rule with the usual shape (fit + behaviour + engagement - negatives, 0-100)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from features import synthetic as syn
from features.build import LABEL, SCOPE, label_leads
from features.legacy import LEGACY_WINDOW_DAYS, T0, legacy_score, recent_activity
from features.schema import EVENT_TYPE, LEAD_ID, LEGACY_SCORE, OCCURRED_AT, TS

UTC = timezone.utc
SNAPSHOT = datetime(2026, 4, 1, tzinfo=UTC)
HORIZON = 60

GOOD_FIT = {"industry": "software", "employee_band": "201-500", "region": "North America",
            "job_title": "VP of Engineering", "email_domain_kind": "corporate"}  # fmt: skip


@pytest.fixture(scope="module")
def export() -> syn.Chunk:
    parts = list(syn.generate_chunks(5_000, seed=5, start="2025-01-01", months=15, observation_days=14,
                                     horizon_days=HORIZON))  # fmt: skip
    return syn.Chunk(*(pl.concat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(syn.Chunk)))


@pytest.fixture(scope="module")
def in_scope(export: syn.Chunk) -> pl.DataFrame:
    scoped = label_leads(export.truth.lazy().select(LEAD_ID, "t0"), export.outcomes.lazy(), horizon_days=HORIZON,
                         snapshot_at=SNAPSHOT, has_outcome_times=True).collect()  # fmt: skip
    return scoped.filter(pl.col(SCOPE) == "in_scope").join(export.leads.select(LEAD_ID, LEGACY_SCORE), on=LEAD_ID)


def _lead(**overrides: str | None) -> pl.DataFrame:
    return pl.DataFrame([{LEAD_ID: "a", **GOOD_FIT, **overrides}], schema_overrides={"region": pl.String})


def _score(leads: pl.DataFrame, events: list[tuple[str, datetime]], t0: datetime) -> int:
    ev = pl.DataFrame({LEAD_ID: ["a"] * len(events), OCCURRED_AT: [at for _, at in events],
                       EVENT_TYPE: [k for k, _ in events]}, schema_overrides={OCCURRED_AT: TS, EVENT_TYPE: pl.String,
                                                                               LEAD_ID: pl.String})  # fmt: skip
    decisions = pl.LazyFrame({LEAD_ID: ["a"], T0: [t0]}, schema_overrides={T0: TS})
    activity = recent_activity(ev.lazy(), decisions).collect()
    return int(legacy_score(leads, activity)[LEGACY_SCORE][0])


T0_TIME = datetime(2025, 6, 1, tzinfo=UTC)


# ---------------------------------------------------------------- on the synthetic export


def test_legacy_score_is_an_integer_between_0_and_100(export: syn.Chunk) -> None:
    scores = export.leads[LEGACY_SCORE]
    assert scores.dtype == pl.Int64 and scores.null_count() == 0
    assert scores.is_between(0, 100).all()
    assert scores.min() == 0 and scores.max() == 100


def test_legacy_auc_against_the_in_window_label_is_decent_but_not_perfect(in_scope: pl.DataFrame) -> None:
    auc = roc_auc_score(in_scope[LABEL], in_scope[LEGACY_SCORE])
    print(f"legacy AUC vs in-window label: {auc:.3f} on {in_scope.height} in-scope leads")
    assert 0.65 <= auc <= 0.85, auc


def test_a_minority_of_leads_passes_70_and_fewer_pass_80(export: syn.Chunk) -> None:
    scores = export.leads[LEGACY_SCORE]
    at70, at80 = (scores >= 70).mean(), (scores >= 80).mean()
    print(f"legacy >= 70: {at70:.3f}, >= 80: {at80:.3f}")
    assert 0.10 <= at70 <= 0.25, at70
    assert 0.0 < at80 < at70


def test_leads_past_70_convert_more_often_than_the_rest(in_scope: pl.DataFrame) -> None:
    high = in_scope.filter(pl.col(LEGACY_SCORE) >= 70)[LABEL].mean()
    low = in_scope.filter(pl.col(LEGACY_SCORE) < 70)[LABEL].mean()
    assert high > 2 * low, (high, low)


def test_written_score_is_the_rule_applied_to_events_before_t0(export: syn.Chunk) -> None:
    decisions = export.truth.lazy().select(LEAD_ID, pl.col("t0").alias(T0))
    activity = recent_activity(export.events.lazy(), decisions).collect()
    recomputed = legacy_score(export.leads, activity)
    assert recomputed[LEGACY_SCORE].equals(export.leads[LEGACY_SCORE])


# ---------------------------------------------------------------- the rules, on tiny leads


def test_fit_alone_gives_points_and_poor_fit_fewer() -> None:
    good = _score(_lead(), [], T0_TIME)
    poor = _score(_lead(industry="government", employee_band="1-10", region="LATAM", job_title="Data Analyst"), [],
                  T0_TIME)  # fmt: skip
    assert good > poor >= 0


def test_demo_request_and_pricing_visits_raise_the_score() -> None:
    day = timedelta(days=1)
    base = _score(_lead(), [], T0_TIME)
    pricing = _score(_lead(), [("page_pricing", T0_TIME - day), ("page_pricing", T0_TIME - 2 * day)], T0_TIME)
    demo = _score(_lead(), [("demo_request", T0_TIME - day)], T0_TIME)
    assert base < pricing < demo


def test_activity_older_than_the_window_or_at_t0_earns_nothing() -> None:
    base = _score(_lead(), [], T0_TIME)
    old = T0_TIME - timedelta(days=LEGACY_WINDOW_DAYS, seconds=1)
    assert _score(_lead(), [("demo_request", old), ("demo_request", T0_TIME)], T0_TIME) == base
    assert _score(_lead(), [("demo_request", T0_TIME + timedelta(days=1))], T0_TIME) == base


@pytest.mark.parametrize(
    "negative",
    [{"email_domain_kind": "free-mail"}, {"email_domain_kind": "competitor"}, {"job_title": "Marketing Intern"},
     {"email_domain_kind": "student"}],
)  # fmt: skip
def test_negative_signals_lower_the_score(negative: dict[str, str]) -> None:
    events = [("page_pricing", T0_TIME - timedelta(days=1))]
    assert _score(_lead(**negative), events, T0_TIME) < _score(_lead(), events, T0_TIME)


def test_careers_page_visits_lower_the_score() -> None:
    day = timedelta(days=1)
    product = [("page_product", T0_TIME - day)]
    careers = [*product, *[("page_careers", T0_TIME - k * day) for k in range(1, 4)]]
    assert _score(_lead(), careers, T0_TIME) < _score(_lead(), product, T0_TIME)


def test_score_is_clamped_to_0_and_100() -> None:
    hour = timedelta(hours=1)
    kinds = ["demo_request", "meeting", "trial_start", "email_reply"] * 3
    busy = [(k, T0_TIME - i * hour) for i, k in enumerate(kinds)]
    assert _score(_lead(), busy, T0_TIME) == 100
    hopeless = _lead(industry=None, employee_band=None, region=None, job_title="Student",
                     email_domain_kind="competitor")
    assert _score(hopeless, [], T0_TIME) == 0


def test_a_lead_without_events_or_fields_scores_zero_not_null() -> None:
    empty = _lead(industry=None, employee_band=None, region=None, job_title=None, email_domain_kind=None)
    assert _score(empty, [], T0_TIME) == 0
