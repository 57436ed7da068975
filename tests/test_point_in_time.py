"""The property that makes the model honest: nothing at or after t0, and no outcome, changes any feature."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.schema import EVENT_TYPES, TS
from pipelines.featurize import featurize

UTC = timezone.utc
START = datetime(2025, 1, 1, tzinfo=UTC)
OBS = 7
WINDOWS = [1, 7, 30]
KINDS = [*EVENT_TYPES, "chat_started"]
SOURCE: dict[str, Any] = {
    "name": "prop",
    "categorical": {"job_title": {"group": "seniority", "description": "Job title", "parse": "seniority"}},
    "numeric": {},
    "pii": [],
    "has_events": True,
    "has_outcome_times": True,
    "snapshot_at": "2025-06-01T00:00:00+00:00",
    "after_outcome": [],
}
PARAMS: dict[str, Any] = {"base": {"observation_days": OBS, "horizon_days": 30}, "windows": WINDOWS,
                          "split": {"train": 0.5, "valid": 0.25, "test": 0.25}, "leak_auc_max": 1.0, "leak_allow": [],
                          # a handful of leads: the target-timing and class-count stops are not what this tests
                          "max_lost_conversion_share": 1.0, "min_train_positives": 0, "min_valid_positives": 0}

created_hours = st.lists(st.integers(0, 24 * 60), min_size=1, max_size=5)
#: (lead index, hours relative to t0, kind); negative hours are before t0.
past = st.tuples(st.integers(0, 4), st.integers(-24 * 120, -1), st.sampled_from(KINDS))
future = st.tuples(st.integers(0, 4), st.integers(0, 24 * 60), st.sampled_from(KINDS))


def leads_frame(hours: list[int]) -> pl.LazyFrame:
    return pl.LazyFrame(
        {"lead_id": [f"l{i}" for i in range(len(hours))],
         "created_at": [START + timedelta(hours=h) for h in hours],
         "job_title": ["VP Sales", "Student", None, "CTO", "Analyst"][: len(hours)]},
        schema_overrides={"created_at": TS},
    )


def events_frame(hours: list[int], rows: list[tuple[int, int, str]]) -> pl.LazyFrame:
    """Events placed relative to each lead's t0 (created_at + OBS days); lead indexes wrap to existing leads."""
    t0s = [START + timedelta(hours=h, days=OBS) for h in hours]
    return pl.LazyFrame(
        {"lead_id": [f"l{i % len(hours)}" for i, _, _ in rows],
         "occurred_at": [t0s[i % len(hours)] + timedelta(hours=dh) for i, dh, _ in rows],
         "event_type": [k for _, _, k in rows]},
        schema={"lead_id": pl.String, "occurred_at": TS, "event_type": pl.String},
    )


def outcomes_frame(hours: list[int], converted_hours: list[int | None]) -> pl.LazyFrame:
    n = len(hours)
    conv = (converted_hours + [None] * n)[:n]
    return pl.LazyFrame(
        {"lead_id": [f"l{i}" for i in range(n)], "converted": [c is not None for c in conv],
         "converted_at": [START + timedelta(hours=c) if c is not None else None for c in conv]},
        schema={"lead_id": pl.String, "converted": pl.Boolean, "converted_at": TS},
    )


def features(hours: list[int], rows: list[tuple[int, int, str]]) -> pl.DataFrame:
    return build_features(leads_frame(hours), events_frame(hours, rows), SOURCE, observation_days=OBS,
                          windows=WINDOWS).collect().sort("lead_id")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hours=created_hours, before=st.lists(past, max_size=25), after=st.lists(future, min_size=1, max_size=25))
def test_events_at_or_after_t0_change_no_feature(hours: list[int], before: list[tuple[int, int, str]],
                                                 after: list[tuple[int, int, str]]) -> None:
    base = features(hours, before)
    with_future = features(hours, before + after)
    assert with_future.equals(base)
    assert base.height == len(hours)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hours=created_hours, before=st.lists(past, max_size=15),
       conv_a=st.lists(st.one_of(st.none(), st.integers(0, 24 * 200)), max_size=5),
       conv_b=st.lists(st.one_of(st.none(), st.integers(0, 24 * 200)), max_size=5))
def test_changing_outcomes_changes_no_feature(hours: list[int], before: list[tuple[int, int, str]],
                                              conv_a: list[int | None], conv_b: list[int | None]) -> None:
    leads, events = leads_frame(hours), events_frame(hours, before)
    frame_a, spec, _ = featurize(leads, events, outcomes_frame(hours, conv_a), SOURCE, PARAMS)
    frame_b, _, _ = featurize(leads, events, outcomes_frame(hours, conv_b), SOURCE, PARAMS)
    cols = ["lead_id", "t0", *[f["name"] for f in spec["features"]]]
    assert frame_a.select(cols).sort("lead_id").equals(frame_b.select(cols).sort("lead_id"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hours=created_hours, before=st.lists(past, max_size=20), after=st.lists(future, max_size=10))
def test_scoring_at_a_leads_t0_reproduces_its_training_features(hours: list[int], before: list[tuple[int, int, str]],
                                                                after: list[tuple[int, int, str]]) -> None:
    train = features(hours, before + after)
    events = events_frame(hours, before + after)
    for lead in train.iter_rows(named=True):
        one = leads_frame(hours).filter(pl.col("lead_id") == lead["lead_id"])
        scored = build_features(one, events, SOURCE, observation_days=OBS, windows=WINDOWS,
                                as_of=lead["t0"]).collect()
        assert scored.row(0, named=True) == lead
