"""Target timing: where conversions fall against the label's window, the stop above the limit, and advice that works."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.build import CENSORED, CONVERTED_BEFORE_T0, IN_SCOPE, label_leads
from features.errors import BadInput
from features.schema import TS
from features.timing import (
    AFTER,
    BEFORE_T0,
    WITHIN,
    TimingError,
    check_split_conversions,
    check_timing,
    check_train_positives,
    conversions,
    lost_share,
    places,
    suggest,
    timing_report,
)
from features.timing import CENSORED as CENSORED_PLACE

START = datetime(2024, 1, 1, tzinfo=UTC)
SNAPSHOT = START + timedelta(days=500)


def export(seed: int, n: int = 3000, *, fast_share: float = 0.4, mean_days: float = 50.0
           ) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Leads over 400 days; 30% convert, `fast_share` of them within 10 days of creation, the rest much later."""
    rng = np.random.default_rng(seed)
    created = [START + timedelta(days=float(d)) for d in np.sort(rng.uniform(0, 400, n))]
    lag = np.where(rng.random(n) < fast_share, rng.uniform(0, 10, n), 10 + rng.exponential(mean_days, n))
    converts = rng.random(n) < 0.3
    at = [c + timedelta(days=float(g)) if k else None for c, g, k in zip(created, lag, converts, strict=True)]
    at = [a if a is not None and a <= SNAPSHOT else None for a in at]
    ids = [f"L{i}" for i in range(n)]
    leads = pl.LazyFrame({"lead_id": ids, "created_at": created}, schema_overrides={"created_at": TS})
    outcomes = pl.LazyFrame({"lead_id": ids, "converted": [a is not None for a in at], "converted_at": at},
                            schema_overrides={"converted_at": TS})
    return leads, outcomes


@pytest.mark.parametrize(("observation_days", "horizon_days"), [(14, 60), (0, 120), (7, 30)])
def test_places_count_the_conversions_exactly_as_the_labels_see_them(observation_days: int, horizon_days: int) -> None:
    leads, outcomes = export(1)
    counts = places(conversions(leads, outcomes, snapshot_at=SNAPSHOT), observation_days=observation_days,
                    horizon_days=horizon_days)
    feats = leads.select("lead_id", (pl.col("created_at") + pl.duration(days=observation_days)).alias("t0"))
    labeled = label_leads(feats, outcomes, horizon_days=horizon_days, snapshot_at=SNAPSHOT,
                          has_outcome_times=True).join(outcomes, on="lead_id").filter(pl.col("converted")).collect()
    scope = dict(labeled.group_by("scope").len().iter_rows())
    assert counts[BEFORE_T0] == scope.get(CONVERTED_BEFORE_T0, 0)
    assert counts[CENSORED_PLACE] == scope.get(CENSORED, 0)
    assert counts[WITHIN] == int(labeled.filter(pl.col("scope") == IN_SCOPE)["label"].sum())
    assert counts[AFTER] == int((labeled.filter(pl.col("scope") == IN_SCOPE)["label"] == 0).sum())


@pytest.mark.parametrize("seed", [2, 3, 4, 5])
@pytest.mark.parametrize(("fast_share", "mean_days"), [(0.4, 50.0), (0.6, 120.0), (0.1, 20.0)])
def test_the_suggested_window_passes_the_check_it_was_suggested_by(seed: int, fast_share: float,
                                                                   mean_days: float) -> None:
    leads, outcomes = export(seed, fast_share=fast_share, mean_days=mean_days)
    conv = conversions(leads, outcomes, snapshot_at=SNAPSHOT)
    report = timing_report(conv, observation_days=14, horizon_days=60)
    assert report["lost_share"] > 0.25  # the defaults lose too many here
    with pytest.raises(TimingError):
        check_timing(conv, report, max_lost_share=0.25)
    obs, horizon = suggest(conv, max_lost_share=0.25, min_positives=100)  # type: ignore[misc]
    followed = timing_report(conv, observation_days=obs, horizon_days=horizon)
    check_timing(conv, followed, max_lost_share=0.25)  # following the advice passes
    assert followed["counts"][WITHIN] >= 100


def test_the_stop_names_both_params_the_shares_and_the_lags() -> None:
    leads, outcomes = export(6)
    conv = conversions(leads, outcomes, snapshot_at=SNAPSHOT)
    report = timing_report(conv, observation_days=14, horizon_days=60)
    with pytest.raises(TimingError) as stop:
        check_timing(conv, report, max_lost_share=0.25)
    message = str(stop.value)
    for part in ("base.observation_days (14)", "base.horizon_days (60)", "converted before t0", "count as losses",
                 "featurize.max_lost_conversion_share = 0.25", "p50", "try base: {observation_days: "):
        assert part in message, part
    assert isinstance(stop.value, BadInput)  # so every stage exits 2 on it


def test_timing_within_the_limit_passes_and_is_reported() -> None:
    leads, outcomes = export(7, fast_share=0.0, mean_days=10.0)
    conv = conversions(leads, outcomes, snapshot_at=SNAPSHOT)
    report = timing_report(conv, observation_days=0, horizon_days=90)
    check_timing(conv, report, max_lost_share=0.25)
    assert report["lost_share"] == pytest.approx(lost_share(report["counts"]), abs=1e-4)
    assert report["lost_share"] < 0.25
    assert sum(report["shares"].values()) == pytest.approx(1.0, abs=1e-3)
    assert list(report["lag_days_quantiles"]) == ["p05", "p10", "p25", "p50", "p75", "p90", "p95"]


def test_too_few_train_conversions_stop_instead_of_a_one_tree_model() -> None:
    check_train_positives(100, minimum=100, train_rows=1000)
    with pytest.raises(BadInput, match=r"99 conversions among 1,000 leads, fewer than featurize.min_train_positives"):
        check_train_positives(99, minimum=100, train_rows=1000)


def test_valid_and_test_need_both_classes() -> None:
    check_split_conversions({"valid": (300, 10), "test": (300, 1)}, min_valid_positives=10)
    with pytest.raises(BadInput, match=r"the valid split has 9 conversions among 300 leads"):
        check_split_conversions({"valid": (300, 9), "test": (300, 50)}, min_valid_positives=10)
    with pytest.raises(BadInput, match=r"the test split has 0 conversions among 300 leads"):
        check_split_conversions({"valid": (300, 50), "test": (300, 0)}, min_valid_positives=10)
    check_split_conversions({"valid": (3, 0), "test": (1, 0)}, min_valid_positives=0)


def _interim(folder: Path, leads: pl.LazyFrame, outcomes: pl.LazyFrame) -> None:
    folder.mkdir(parents=True)
    leads.with_columns(pl.lit("software").alias("industry")).collect().write_parquet(folder / "leads.parquet")
    outcomes.collect().write_parquet(folder / "outcomes.parquet")
    (folder / "source.json").write_text(json.dumps({
        "name": "slow", "categorical": {"industry": {"group": "company_fit", "description": "Industry"}},
        "numeric": {}, "pii": [], "notes_allowed": [], "after_outcome": [], "legacy_score": False,
        "has_events": False, "has_outcome_times": True, "snapshot_at": SNAPSHOT.isoformat()}))


def _featurize(tmp_path: Path, base: dict[str, int], **featurize: object) -> int:
    from pipelines.featurize import main

    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"base": {"seed": 1, **base}, "featurize": {
        "windows": [7], "split": {"train": 0.6, "valid": 0.2, "test": 0.2}, "leak_auc_max": 0.95,
        "max_lost_conversion_share": 0.25, "min_train_positives": 100, **featurize}}))
    try:
        main(["--interim", str(tmp_path / "interim"), "--out", str(tmp_path / "features"), "--spec",
              str(tmp_path / "spec.json"), "--report", str(tmp_path / "report.json"), "--params", str(params)])
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def test_featurize_exits_2_with_advice_and_the_advice_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leads, outcomes = export(8)
    _interim(tmp_path / "interim", leads, outcomes)
    assert _featurize(tmp_path, {"observation_days": 14, "horizon_days": 60}) == 2
    err = capsys.readouterr().err
    assert err.startswith("bad input: ") and "base.horizon_days" in err
    advice = err.split("try base: {")[1].split("}")[0]
    suggested = {k.strip(): int(v) for k, v in (part.split(":") for part in advice.split(","))}
    assert _featurize(tmp_path, suggested) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["target_timing"]["lost_share"] <= 0.25
    assert "target timing:" in capsys.readouterr().out
    # Too few conversions for the train split: exit 2 rather than a model that learns nothing.
    assert _featurize(tmp_path, suggested, min_train_positives=10_000) == 2
    assert "featurize.min_train_positives" in capsys.readouterr().err
