"""The synthetic CRM export: the figures DOMAIN.md asks for, point-in-time truth, determinism and the stage."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from features import synthetic as syn
from features.build import LABEL, SCOPE, build_features, label_leads, parse_seniority
from features.schema import (
    CONVERTED,
    CONVERTED_AT,
    CREATED_AT,
    EVENT_TYPE,
    EVENT_TYPES,
    GROUPS,
    LEAD_ID,
    OCCURRED_AT,
    TS,
)
from pipelines import generate

START, MONTHS, OBS, HORIZON = "2025-01-01", 15, 14, 60
SNAPSHOT = datetime(2026, 4, 1, tzinfo=timezone.utc)
N_LEADS = 5_000
SEED = 11


def _chunks(n: int = N_LEADS, seed: int = SEED, **kw: int) -> syn.Chunk:
    parts = list(syn.generate_chunks(n, seed=seed, start=START, months=MONTHS, observation_days=OBS,
                                     horizon_days=HORIZON, **kw))  # fmt: skip
    return syn.Chunk(*(pl.concat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(syn.Chunk)))


def _run(out: Path, *, seed: int = SEED, leads: int = N_LEADS) -> dict:
    return generate.run(out, leads=leads, seed=seed, start=START, months=MONTHS, observation_days=OBS,
                        horizon_days=HORIZON)  # fmt: skip


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    """The export as written by the stage, read back."""
    out = tmp_path_factory.mktemp("raw")
    _run(out)
    return {t: pl.read_parquet(out / f"{t}.parquet") for t in generate.TABLES}


@pytest.fixture(scope="module")
def chunk() -> syn.Chunk:
    return _chunks()


@pytest.fixture(scope="module")
def labelled(export: dict[str, pl.DataFrame], chunk: syn.Chunk) -> pl.DataFrame:
    """Every lead with its scope and in-window label (as featurize defines them), truth and latent segment."""
    decisions = export["truth"].lazy().select(LEAD_ID, "t0")
    scoped = label_leads(decisions, export["outcomes"].lazy(), horizon_days=HORIZON, snapshot_at=SNAPSHOT,
                         has_outcome_times=True).collect()  # fmt: skip
    return (
        scoped.join(export["truth"].select(LEAD_ID, syn.P_TRUE), on=LEAD_ID)
        .join(export["leads"], on=LEAD_ID)
        .join(export["outcomes"], on=LEAD_ID)
        .join(chunk.latent, on=LEAD_ID)
    )


# ---------------------------------------------------------------- the figures


def test_overall_converted_share_is_in_the_b2b_band(export: dict[str, pl.DataFrame]) -> None:
    share = export["outcomes"][CONVERTED].mean()
    assert 0.13 <= share <= 0.25, share


def test_in_scope_label_rate_is_about_one_in_six(labelled: pl.DataFrame) -> None:
    rate = labelled.filter(pl.col(SCOPE) == "in_scope")[LABEL].mean()
    assert 0.14 <= rate <= 0.22, rate


def test_a_few_fast_inbound_leads_convert_before_t0(labelled: pl.DataFrame) -> None:
    share = (labelled[SCOPE] == "converted_before_t0").mean()
    assert 0.005 <= share <= 0.04, share


def test_short_buying_timeline_converts_about_three_times_faster(labelled: pl.DataFrame) -> None:
    days = (pl.col(CONVERTED_AT) - pl.col("t0")).dt.total_seconds() / 86_400
    won = labelled.filter(pl.col(LABEL) == 1).with_columns(days.alias("days"))
    fast = won.filter(pl.col("buying_timeline") == "<3 months")["days"].median()
    other = won.filter(pl.col("buying_timeline").ne_missing("<3 months"))["days"].median()
    assert fast < 0.5 * other, (fast, other)


@pytest.mark.parametrize("segment", ["job_seeker", "student"])
def test_job_seekers_and_students_almost_never_convert(labelled: pl.DataFrame, segment: str) -> None:
    rows = labelled.filter(pl.col("segment") == segment)
    assert rows.height > 100
    assert rows[CONVERTED].mean() < 0.03


def test_job_seekers_live_on_the_careers_page(chunk: syn.Chunk) -> None:
    careers = (pl.col(EVENT_TYPE) == "page_careers").mean().alias("careers_share")
    per_segment = chunk.events.join(chunk.latent, on=LEAD_ID).group_by("segment").agg(careers)
    shares = dict(per_segment.iter_rows())
    assert shares["job_seeker"] > 0.3 > shares["prospect"], shares


def test_oracle_ranks_in_scope_leads_well(labelled: pl.DataFrame) -> None:
    scoped = labelled.filter(pl.col(SCOPE) == "in_scope")
    auc = roc_auc_score(scoped[LABEL], scoped[syn.P_TRUE])
    assert 0.8 <= auc <= 0.97, auc


def test_about_fifty_events_per_lead(export: dict[str, pl.DataFrame]) -> None:
    per_lead = export["events"].height / export["leads"].height
    assert 35 <= per_lead <= 65, per_lead


def test_weekends_bring_about_a_third_of_a_weekday(export: dict[str, pl.DataFrame]) -> None:
    days = export["leads"].group_by(pl.col(CREATED_AT).dt.date().alias("day")).len()
    weekend = pl.col("day").dt.weekday() >= 6
    ratio = days.filter(weekend)["len"].mean() / days.filter(~weekend)["len"].mean()
    assert 0.25 <= ratio <= 0.45, ratio


def test_firmographics_have_a_few_percent_missing(export: dict[str, pl.DataFrame]) -> None:
    for col in ("industry", "employee_band", "region", "job_title"):
        share = export["leads"][col].null_count() / export["leads"].height
        assert 0.005 <= share <= 0.10, (col, share)


def test_every_driver_matters_for_some_leads(export: dict[str, pl.DataFrame]) -> None:
    truth = export["truth"]
    for group in GROUPS:
        moved = (truth[group] - truth[group].median()).abs() > 0.2
        assert moved.mean() > 0.01, group


def test_intercept_drifts_over_the_period(export: dict[str, pl.DataFrame]) -> None:
    truth = export["truth"].sort("t0")
    assert truth["intercept"][-1] - truth["intercept"][0] == pytest.approx(2 * syn.DRIFT, abs=0.05)


# ---------------------------------------------------------------- the contract and time


def test_tables_follow_the_canonical_schema(export: dict[str, pl.DataFrame]) -> None:
    assert export["leads"].schema[CREATED_AT] == TS
    assert export["events"].schema == pl.Schema({LEAD_ID: pl.String, OCCURRED_AT: TS, EVENT_TYPE: pl.String})
    assert export["outcomes"].schema == pl.Schema({LEAD_ID: pl.String, CONVERTED: pl.Boolean, CONVERTED_AT: TS})
    assert export["truth"].columns == [LEAD_ID, "t0", "p_true", *GROUPS, "intercept"]
    assert set(export["events"][EVENT_TYPE].unique()) <= set(EVENT_TYPES)
    assert export["leads"]["legacy_score"].is_between(0, 100).all()


def test_ids_follow_creation_order_and_events_are_sorted_by_lead_and_time(export: dict[str, pl.DataFrame]) -> None:
    leads = export["leads"]
    assert leads[LEAD_ID][0] == "L0000001"
    assert leads[LEAD_ID].is_unique().all()
    assert leads[LEAD_ID].is_sorted() and leads[CREATED_AT].is_sorted()
    events = export["events"]
    assert events[LEAD_ID].is_sorted()
    assert events.group_by(LEAD_ID).agg(pl.col(OCCURRED_AT).is_sorted())[OCCURRED_AT].all()


def test_no_event_more_than_45_days_before_creation_or_after_the_snapshot(export: dict[str, pl.DataFrame]) -> None:
    ev = export["events"].join(export["leads"].select(LEAD_ID, CREATED_AT), on=LEAD_ID)
    assert ev.filter(pl.col(OCCURRED_AT) < pl.col(CREATED_AT) - timedelta(days=syn.PRE_SIGNUP_DAYS)).height == 0
    assert ev[OCCURRED_AT].max() < SNAPSHOT
    assert ev.filter(pl.col(OCCURRED_AT) < pl.col(CREATED_AT)).height > 0  # anonymous visits exist


def test_events_before_sign_up_are_page_views_only(export: dict[str, pl.DataFrame]) -> None:
    ev = export["events"].join(export["leads"].select(LEAD_ID, CREATED_AT), on=LEAD_ID)
    kinds = set(ev.filter(pl.col(OCCURRED_AT) < pl.col(CREATED_AT))[EVENT_TYPE].unique())
    assert kinds and all(k.startswith("page_") for k in kinds), kinds


def test_converted_means_a_conversion_time_before_the_snapshot(export: dict[str, pl.DataFrame]) -> None:
    out = export["outcomes"]
    assert (out[CONVERTED] == out[CONVERTED_AT].is_not_null()).all()
    assert out[CONVERTED_AT].max() <= SNAPSHOT


def test_p_true_is_the_sigmoid_of_intercept_plus_drivers(export: dict[str, pl.DataFrame]) -> None:
    truth = export["truth"]
    log_odds = truth["intercept"].to_numpy() + truth.select(list(GROUPS)).to_numpy().sum(axis=1)
    np.testing.assert_allclose(truth["p_true"].to_numpy(), 1 / (1 + np.exp(-log_odds)), rtol=1e-12)


def test_truth_is_what_the_feature_stage_sees_before_t0(export: dict[str, pl.DataFrame]) -> None:
    """Recompute every driver with build_features from the written files: equal, so only pre-t0 data went in."""
    source = yaml.safe_load(Path("sources/synthetic.yaml").read_text())["leads"]
    features = build_features(export["leads"].lazy(), export["events"].lazy(), {**source, "has_events": True},
                              observation_days=OBS, windows=[1, 7, 30, 90]).collect()  # fmt: skip
    recomputed = syn.driver_terms(features).select(list(GROUPS)).to_numpy()
    np.testing.assert_allclose(recomputed, export["truth"].select(list(GROUPS)).to_numpy(), atol=1e-12)


def test_pricing_interest_uses_only_pricing_views_before_t0(export: dict[str, pl.DataFrame]) -> None:
    """Hand-count the pricing views of a few leads in the 7 and 8-30 days before t0; later views never count."""
    truth = export["truth"].filter(pl.col("pricing_interest") > 0).head(5)
    for lead, t0, term in truth.select(LEAD_ID, "t0", "pricing_interest").iter_rows():
        views = export["events"].filter((pl.col(LEAD_ID) == lead) & (pl.col(EVENT_TYPE) == "page_pricing"))
        age = [(t0 - at).total_seconds() / 86_400 for at in views[OCCURRED_AT] if at < t0]
        last7 = sum(a <= 7 for a in age)
        prior = sum(7 < a <= 30 for a in age)
        title = export["leads"].filter(pl.col(LEAD_ID) == lead).select(parse_seniority(pl.col("job_title"))).item()
        factor = (
            syn.PRICING_BY_SENIORITY.get(title, syn.PRICING_BY_SENIORITY_NULL)
            if title
            else syn.PRICING_BY_SENIORITY_NULL
        )
        expected = (syn.PRICING_7D * np.log1p(last7) + syn.PRICING_8_30D * np.log1p(prior)) * factor
        assert term == pytest.approx(expected, abs=1e-12), lead


def test_buyers_get_busier_just_before_they_convert(labelled: pl.DataFrame, export: dict[str, pl.DataFrame]) -> None:
    won = labelled.filter(pl.col(LABEL) == 1).select(LEAD_ID, CONVERTED_AT, "t0")
    ev = export["events"].join(won, on=LEAD_ID).filter(pl.col(EVENT_TYPE).is_in(["meeting", "page_pricing"]))
    ev = ev.filter(pl.col(OCCURRED_AT) >= pl.col("t0"))
    before = ev.filter(pl.col(OCCURRED_AT).is_between(pl.col(CONVERTED_AT) - timedelta(days=7), pl.col(CONVERTED_AT)))
    after = ev.filter(pl.col(OCCURRED_AT).is_between(pl.col(CONVERTED_AT), pl.col(CONVERTED_AT) + timedelta(days=7)))
    assert before.height > 3 * after.height


def test_every_title_parses_to_its_seniority_level() -> None:
    for level, titles in syn.TITLES.items():
        parsed = pl.DataFrame({"t": list(titles)}).select(parse_seniority(pl.col("t")).alias("s"))["s"]
        assert parsed.to_list() == [level] * len(titles), level


# ---------------------------------------------------------------- determinism and the stage


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    _run(tmp_path / "a", leads=2_000)
    _run(tmp_path / "b", leads=2_000)
    for name in [*(f"{t}.parquet" for t in generate.TABLES), "manifest.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_different_seed_gives_different_data(chunk: syn.Chunk) -> None:
    other = _chunks(seed=SEED + 1)
    assert not other.leads.equals(chunk.leads)
    assert not other.events.head(1000).equals(chunk.events.head(1000))


def test_data_does_not_depend_on_the_chunk_size() -> None:
    n = 2 * syn.LEADS_PER_BLOCK + 500
    small, large = _chunks(n, chunk_size=syn.LEADS_PER_BLOCK), _chunks(n, chunk_size=10 * syn.LEADS_PER_BLOCK)
    for field in dataclasses.fields(syn.Chunk):
        assert getattr(small, field.name).equals(getattr(large, field.name)), field.name


def test_negative_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="seed must be >= 0"):
        _chunks(seed=-1)


def test_zero_leads_writes_empty_tables(tmp_path: Path) -> None:
    summary = _run(tmp_path, leads=0)
    assert summary["leads"] == summary["events"] == 0
    assert pl.read_parquet(tmp_path / "events.parquet").height == 0


def test_new_batch_is_recent_leads_with_events_up_to_as_of() -> None:
    as_of = SNAPSHOT
    batch = syn.generate_new_batch(300, seed=SEED, as_of=as_of, observation_days=OBS, horizon_days=HORIZON)
    assert batch.leads.height == 300 and batch.leads[LEAD_ID][0] == "N0000001"
    assert batch.leads[CREATED_AT].min() >= as_of - timedelta(days=14)
    assert batch.leads[CREATED_AT].max() < as_of
    assert batch.events[OCCURRED_AT].max() < as_of
    assert batch.leads["legacy_score"].is_between(0, 100).all()


def test_stage_writes_the_export_and_the_new_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["generate"] |= {"leads": 1_500, "new_leads": 200}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    generate.main(["--out", str(tmp_path / "raw"), "--new-out", str(tmp_path / "new"),
                   "--params", str(tmp_path / "params.yaml")])  # fmt: skip
    assert "1,500 leads" in capsys.readouterr().out
    manifest = yaml.safe_load((tmp_path / "raw" / "manifest.json").read_text())
    assert manifest["snapshot_at"] == SNAPSHOT.isoformat() and manifest["leads"] == 1_500
    assert pl.read_parquet(tmp_path / "new" / "leads.parquet").height == 200
    new_manifest = yaml.safe_load((tmp_path / "new" / "manifest.json").read_text())
    assert new_manifest["as_of"] == SNAPSHOT.isoformat()


def test_generate_stage_refuses_a_missing_source_mapping_with_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.generate import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        'base: {seed: 1, source: sources/mine.yaml, observation_days: 14, horizon_days: 60}\n'
        'generate: {leads: 10, start: "2025-01-01", months: 1, new_leads: 5}\n')
    with pytest.raises(SystemExit) as stop:
        main(["--out", "raw", "--new-out", "new", "--params", "params.yaml"])
    assert stop.value.code == 2 and "sources/mine.yaml: base.source names no source mapping" in capsys.readouterr().err
