"""The leak guard refuses planted leaks by name, respects the analyst's allow list, and never passes them silently."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.leakguard import (
    DATE_RULE,
    FREE_TEXT_RULE,
    MISSING_AUC_RULE,
    PRESENCE_RULE,
    LeakError,
    closest_to_limit,
    find_leaks,
    single_feature_auc,
)
from features.schema import TS
from pipelines.featurize import main

RNG = np.random.default_rng(0)
N = 400
Y = (RNG.random(N) < 0.3).astype(np.int8)
FRAME = pl.DataFrame({
    "visits": RNG.poisson(3, N).astype(float),                                   # unrelated to the label
    "days_to_close": np.where(Y == 1, RNG.uniform(1, 10, N), RNG.uniform(20, 90, N)),  # planted numeric leak
    "deal_stage": np.where(Y == 1, "closed_won", RNG.choice(["open", "lost"], N)),     # planted categorical leak
    "industry": RNG.choice(["software", "retail", "health"], N),
})
SPEC = {"features": [
    {"name": "visits", "kind": "numeric"},
    {"name": "days_to_close", "kind": "numeric"},
    {"name": "deal_stage", "kind": "categorical", "categories": ["closed_won", "lost", "open", "other"]},
    {"name": "industry", "kind": "categorical", "categories": ["health", "retail", "software", "other"]},
]}


def test_planted_leaks_are_refused_by_name() -> None:
    with pytest.raises(LeakError, match=r"(?s)days_to_close: single-feature AUC on train = 1\.0000 > 0\.95.*"
                                        r"deal_stage: single-feature AUC on train \(out of fold\).*"
                                        r"featurize\.leak_allow") as err:
        find_leaks(FRAME, Y, SPEC, auc_max=0.95)
    assert sorted(f.column for f in err.value.findings) == ["days_to_close", "deal_stage"]
    assert "visits" not in str(err.value) and "industry" not in str(err.value)


def test_allowed_columns_are_reported_not_silently_passed() -> None:
    findings = find_leaks(FRAME, Y, SPEC, auc_max=0.95, allow=["days_to_close", "deal_stage"])
    assert [(f.column, f.allowed) for f in findings] == [("days_to_close", True), ("deal_stage", True)]


def test_allowing_one_leak_still_refuses_the_other() -> None:
    with pytest.raises(LeakError, match="deal_stage") as err:
        find_leaks(FRAME, Y, SPEC, auc_max=0.95, allow=["days_to_close"])
    assert "days_to_close:" not in str(err.value)  # the allowed one is not among the refused lines
    assert {f.column: f.allowed for f in err.value.findings} == {"days_to_close": True, "deal_stage": False}


def test_after_outcome_column_is_refused_even_when_its_auc_is_low() -> None:
    spec = {"features": [{"name": "visits", "kind": "numeric"}]}
    with pytest.raises(LeakError, match="visits: marked after the outcome"):
        find_leaks(FRAME, Y, spec, auc_max=0.95, after_outcome=["visits"])
    [finding] = find_leaks(FRAME, Y, spec, auc_max=0.95, after_outcome=["visits"], allow=["visits"])
    assert finding.rule == "after_outcome" and finding.allowed


def test_a_feature_parsed_from_an_after_outcome_column_is_refused() -> None:
    frame = pl.DataFrame({"seniority": ["vp", "student"] * 5})
    spec = {"features": [{"name": "seniority", "kind": "categorical", "source_column": "job_title",
                          "categories": ["student", "vp", "other"]}]}
    with pytest.raises(LeakError, match="seniority.*job_title"):
        find_leaks(frame, np.array([0, 1] * 5), spec, auc_max=0.99, after_outcome=["job_title"])


def test_missing_values_rank_as_their_own_lowest_value() -> None:
    # NaN only on the positives: a perfect separator once NaN is a value of its own.
    values = pl.Series([None, None, 1.0, 2.0, 3.0])
    assert single_feature_auc(values, np.array([1, 1, 0, 0, 0]), categorical=False) == 1.0
    # A column that is lower for positives is as leaky as one that is higher.
    assert single_feature_auc(pl.Series([5.0, 4.0, 1.0]), np.array([0, 0, 1]), categorical=False) == 1.0


def test_categorical_auc_uses_per_category_rate_with_null_as_a_category() -> None:
    values = pl.Series(["a", "a", None, None, "b", "b"])
    assert single_feature_auc(values, np.array([0, 0, 1, 1, 0, 0]), categorical=True) == 1.0
    assert single_feature_auc(pl.Series(["a", "b"] * 4), np.array([0, 1, 1, 0] * 2), categorical=True) == 0.5


def test_a_single_class_label_gives_no_auc_and_no_finding() -> None:
    assert single_feature_auc(pl.Series([1.0, 2.0]), np.array([0, 0]), categorical=False) is None
    assert find_leaks(FRAME.head(5), np.zeros(5), SPEC, auc_max=0.5) == []


def _write_interim(folder: Path, *, leak: bool) -> None:
    """A tiny ingest output whose leads carry `deal_stage`, filled in from the outcome when `leak`."""
    folder.mkdir(parents=True)
    n = 200
    rng = np.random.default_rng(1)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    created = [start + timedelta(days=int(d)) for d in np.sort(rng.integers(0, 150, n))]
    converted = rng.random(n) < 0.4
    conv_at = [c + timedelta(days=20) if k else None for c, k in zip(created, converted, strict=True)]
    stage = np.where(converted, "won", "open") if leak else rng.choice(["won", "open"], n)
    pl.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "created_at": created, "deal_stage": stage,
                  "industry": rng.choice(["a", "b"], n)}, schema_overrides={"created_at": TS}
                 ).write_parquet(folder / "leads.parquet")
    pl.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "converted": converted, "converted_at": conv_at},
                 schema_overrides={"converted_at": TS}).write_parquet(folder / "outcomes.parquet")
    source = {"name": "tiny", "categorical": {
        "deal_stage": {"group": "company_fit", "description": "CRM deal stage"},
        "industry": {"group": "company_fit", "description": "Industry"}},
        "numeric": {}, "pii": [], "notes_allowed": [], "after_outcome": [], "dropped_leaky": [],
        "legacy_score": False, "has_events": False, "has_outcome_times": True,
        "snapshot_at": "2025-12-31T00:00:00+00:00", "truth": None}
    (folder / "source.json").write_text(json.dumps(source))


def _params(tmp_path: Path, allow: list[str]) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps({  # JSON is YAML
        "base": {"seed": 1, "observation_days": 7, "horizon_days": 60},
        "featurize": {"windows": [7, 30], "split": {"train": 0.6, "valid": 0.2, "test": 0.2},
                      "leak_auc_max": 0.95, "leak_allow": allow, "min_train_positives": 10}}))
    return path


def _exit_code(argv: list[str]) -> int:
    """The stage main's exit code: 0 when it returns, else the code it exits with."""
    try:
        main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def _args(tmp_path: Path, params: Path) -> list[str]:
    return ["--interim", str(tmp_path / "interim"), "--out", str(tmp_path / "features"),
            "--spec", str(tmp_path / "spec.json"), "--report", str(tmp_path / "report.json"), "--params", str(params)]


def test_featurize_stage_exits_2_and_names_the_leak(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_interim(tmp_path / "interim", leak=True)
    assert _exit_code(_args(tmp_path, _params(tmp_path, []))) == 2
    err = capsys.readouterr().err
    assert "deal_stage" in err and "leak_allow" in err and "industry" not in err
    assert not (tmp_path / "features" / "features.parquet").exists()


def test_featurize_stage_writes_outputs_and_reports_an_allowed_leak(tmp_path: Path) -> None:
    _write_interim(tmp_path / "interim", leak=True)
    assert _exit_code(_args(tmp_path, _params(tmp_path, ["deal_stage"]))) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(f["column"], f["allowed"]) for f in report["leak_guard"]["findings"]] == [("deal_stage", True)]
    assert report["in_scope"] + report["converted_before_t0"] + report["censored"] == report["leads"] == 200
    frame = pl.read_parquet(tmp_path / "features" / "features.parquet")
    spec = json.loads((tmp_path / "spec.json").read_text())
    assert frame.columns == ["lead_id", "t0", "split", "scope", "label", *[f["name"] for f in spec["features"]]]


def test_featurize_stage_exits_2_when_an_input_is_missing(tmp_path: Path) -> None:
    (tmp_path / "interim").mkdir()
    assert _exit_code(_args(tmp_path, _params(tmp_path, []))) == 2


# ---------------------------------------------------------------- the rules beyond the value's own AUC


def _own(name: str, kind: str = "numeric", **extra: object) -> dict[str, object]:
    """A spec entry for one of the export's own columns (event features have no source_column)."""
    return {"name": name, "kind": kind, "source_column": name, **extra}


def _won_deals_frame(n: int = 2000, seed: int = 3) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(np.int8)
    copied = (y == 1) & (rng.random(n) < 0.3)  # filled for some converters only, as a won-deals export leaves it
    return pl.DataFrame({
        "deal_amount": np.where(copied, rng.lognormal(9, 0.5, n), np.nan),
        "industry": rng.choice(["a", "b", "c"], n),
    }).with_columns(pl.col("deal_amount").fill_nan(None)), y


def test_a_column_present_almost_only_for_converters_is_refused_though_its_auc_is_low() -> None:
    frame, y = _won_deals_frame()
    assert single_feature_auc(frame["deal_amount"], y, categorical=False) < 0.7  # the value alone passes
    with pytest.raises(LeakError, match=r"deal_amount: present almost only for converters.*rule: non-null for < 1% "
                                        r"of one class and >= 5% of the other") as err:
        find_leaks(frame, y, {"features": [_own("deal_amount")]}, auc_max=0.95)
    assert [f.rule for f in err.value.findings] == [PRESENCE_RULE]


def test_a_column_present_almost_only_for_non_converters_is_refused_too() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(2000) < 0.3).astype(np.int8)
    lost = (y == 0) & (rng.random(2000) < 0.5)
    frame = pl.DataFrame({"lost_reason": pl.Series(["no budget"] * 2000).zip_with(
        pl.Series(lost), pl.Series([None] * 2000, dtype=pl.String))})
    with pytest.raises(LeakError, match="present almost only for non-converters"):
        find_leaks(frame, y, {"features": [_own("lost_reason", "categorical")]}, auc_max=0.95)


def test_presence_for_one_class_needs_enough_rows_to_be_a_pattern() -> None:
    """Present for 6% of 970 non-converters and none of 30 converters: 1.8 expected, so no finding."""
    y = np.r_[np.ones(30), np.zeros(970)].astype(np.int8)
    values = np.where((y == 0) & (np.arange(1000) % 16 == 0), 1.0, np.nan)
    frame = pl.DataFrame({"x": values}).with_columns(pl.col("x").fill_nan(None))
    assert find_leaks(frame, y, {"features": [_own("x")]}, auc_max=0.95) == []


def test_a_columns_missingness_is_tested_as_a_feature_of_its_own() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(3000) < 0.3).astype(np.int8)
    missing = rng.random(3000) < np.where(y == 1, 0.05, 0.95)  # filled in once sales worked the lead
    frame = pl.DataFrame({"score": np.where(missing, np.nan, rng.normal(size=3000))}).with_columns(
        pl.col("score").fill_nan(None))
    with pytest.raises(LeakError, match=r"score: whether it is missing alone gives an AUC of 0\.9\d+ on train") as err:
        find_leaks(frame, y, {"features": [_own("score")]}, auc_max=0.85)
    assert err.value.findings[0].rule == MISSING_AUC_RULE


def test_event_features_missing_for_no_event_yet_are_not_refused_for_it() -> None:
    """days_since_meeting is empty for leads without a meeting before t0: a point-in-time signal, not a leak."""
    rng = np.random.default_rng(6)
    y = (rng.random(3000) < 0.2).astype(np.int8)
    met = (y == 1) & (rng.random(3000) < 0.2)
    frame = pl.DataFrame({"days_since_meeting": np.where(met, rng.uniform(0, 30, 3000), np.nan)}).with_columns(
        pl.col("days_since_meeting").fill_nan(None))
    assert find_leaks(frame, y, {"features": [{"name": "days_since_meeting", "kind": "numeric"}]},
                      auc_max=0.95) == []


def test_an_id_like_categorical_is_judged_out_of_fold_not_in_sample() -> None:
    rng = np.random.default_rng(7)
    n = 3000
    owner = rng.integers(0, 600, n)
    skill = rng.normal(0, 0.3, 600)
    y = (rng.random(n) < 1 / (1 + np.exp(1.2 - skill[owner]))).astype(np.int8)
    frame = pl.DataFrame({"owner": [f"o{o}" for o in owner]})
    assert single_feature_auc(frame["owner"], y, categorical=True) > 0.8  # memorised in sample
    spec = {"features": [_own("owner", "categorical")]}
    assert find_leaks(frame, y, spec, auc_max=0.75) == []
    assert closest_to_limit(frame, y, spec)["owner"] < 0.6


def test_the_guard_runs_on_the_valid_rows_too() -> None:
    """A column the CRM started filling from the outcome only lately passes on train and is caught on valid."""
    rng = np.random.default_rng(8)
    y_train, y_valid = (rng.random(1000) < 0.3).astype(np.int8), (rng.random(400) < 0.3).astype(np.int8)
    train = pl.DataFrame({"stage": rng.choice(["open", "won"], 1000)})
    valid = pl.DataFrame({"stage": np.where(y_valid == 1, "won", "open")})
    spec = {"features": [_own("stage", "categorical")]}
    assert find_leaks(train, y_train, spec, auc_max=0.95) == []
    with pytest.raises(LeakError, match=r"stage: single-feature AUC on valid = 1\.0000"):
        find_leaks(train, y_train, spec, auc_max=0.95, valid=valid, valid_label=y_valid)


def test_free_text_is_refused_as_a_category_but_a_category_derived_from_it_is_kept() -> None:
    rng = np.random.default_rng(9)
    y = (rng.random(500) < 0.3).astype(np.int8)
    notes = [f"call {i}: {'signed' if v else 'follow up'} next week" for i, v in enumerate(y)]
    frame = pl.DataFrame({"description": notes, "seniority": rng.choice(["vp", "manager", "student"], 500)})
    spec = {"features": [_own("description", "categorical"),
                         {"name": "seniority", "kind": "categorical", "source_column": "job_title"}]}
    with pytest.raises(LeakError, match=r"description: free text: 100% of its 500 values occur once") as err:
        find_leaks(frame, y, spec, auc_max=0.95)
    assert [(f.column, f.rule) for f in err.value.findings] == [("description", FREE_TEXT_RULE)]


def test_a_date_column_after_t0_for_most_leads_is_an_after_outcome_column() -> None:
    t0 = [datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(days=i) for i in range(200)]
    after = [(t + timedelta(days=30)).date().isoformat() for t in t0]
    before = [(t0[0] - timedelta(days=3 + i % 10)).date().isoformat() for i in range(200)]  # 10 dates, all before
    frame = pl.DataFrame({"t0": t0, "last_activity": after, "first_touch": before},
                         schema_overrides={"t0": TS})
    y = np.array([0, 1] * 100)
    spec = {"features": [_own("last_activity", "categorical"), _own("first_touch", "categorical")]}
    with pytest.raises(LeakError, match=r"last_activity: its values are dates, after the lead's decision time t0 "
                                        r"for 100% of the leads") as err:
        find_leaks(frame, y, spec, auc_max=0.99, t0="t0")
    assert [(f.column, f.rule) for f in err.value.findings] == [("last_activity", DATE_RULE)]
