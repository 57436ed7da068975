"""Training: the optional refit on train + valid, and calibration on held-out margins either way."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
import yaml

from features.spec import to_matrix
from models.bundle import scorer_from_dict
from pipelines import calibrate, train
from pipelines.io import read_json


def params_for(repo: Path, **overrides: object) -> dict[str, object]:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    return {"base": params["base"], **params["train"], **overrides}


def test_refit_uses_train_and_valid_with_the_tree_count_chosen_on_valid(pipeline_repo: Path) -> None:
    features, spec_path = (
        pipeline_repo / "data/features/features.parquet",
        pipeline_repo / "data/artifacts/feature_spec.json",
    )
    plain = train.run(features, spec_path, params=params_for(pipeline_repo, refit_on_train_and_valid=False))
    refit = train.run(features, spec_path, params=params_for(pipeline_repo, refit_on_train_and_valid=True))
    r0, r1 = plain.report, refit.report
    assert r1["fit_rows"] == r0["train_rows"] + r0["valid_rows"] and r0["fit_rows"] == r0["train_rows"]
    assert r1["best_iteration"] == r0["best_iteration"] == lgb.Booster(model_str=refit.model_text).current_iteration()
    assert refit.model_text != plain.model_text and refit.baseline != plain.baseline
    # The margins handed to calibrate are the held-out ones of the chosen model's fits that never saw valid: the same
    # either way, and different from the refit model's own (in-sample) margins on valid.
    assert refit.valid_margins.equals(plain.valid_margins)
    assert refit.report["model"] == plain.report["model"] == refit.scorer["kind"]
    frame, spec = pl.read_parquet(features), read_json(spec_path)
    X_valid = to_matrix(frame.filter(pl.col("split") == "valid"), spec)
    own = scorer_from_dict(refit.scorer, lgb.Booster(model_str=refit.model_text)).margin(X_valid)
    held = calibrate.held_out_margin(frame.filter(pl.col("split") == "valid"), refit.valid_margins)
    np.testing.assert_allclose(held, scorer_from_dict(plain.scorer, lgb.Booster(model_str=plain.model_text))
                               .margin(X_valid))
    assert not np.allclose(own, held)


def test_calibrate_refuses_margins_that_do_not_cover_the_valid_split(pipeline_repo: Path) -> None:
    frame = pl.read_parquet(pipeline_repo / "data/features/features.parquet")
    valid = frame.filter(pl.col("split") == "valid")
    margins = pl.read_parquet(pipeline_repo / "data/artifacts/valid_margins.parquet")
    assert calibrate.held_out_margin(valid, margins).shape == (valid.height,)
    with pytest.raises(ValueError, match=r"1 of \d+ valid leads have none"):
        calibrate.held_out_margin(valid, margins.slice(1))


def test_the_logistic_margin_of_a_lead_does_not_depend_on_its_batch() -> None:
    """A lead scored alone, in a chunk or in a Spark bucket gets the same bits (a BLAS product would not promise it)."""
    from models.baseline import fit_baseline

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 12))
    X[:, 3] = rng.integers(0, 5, 3000)
    y = (rng.random(3000) < 0.3).astype(float)
    lr = fit_baseline(X, y, categorical=[3], n_categories=[5])
    whole = lr.margin(X)
    for size in (1, 37, 1024):
        parts = np.concatenate([lr.margin(X[i:i + size]) for i in range(0, len(X), size)])
        assert np.array_equal(whole.view(np.int64), parts.view(np.int64)), size
