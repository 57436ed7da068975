"""LightGBM training: seeded, deterministic, early-stopped on the valid split, optionally refit on train + valid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np

#: Params that make LightGBM bit-for-bit repeatable on the same data and seed.
DETERMINISTIC: dict[str, Any] = {
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbosity": -1,
}


def lgb_params(params: dict[str, Any], *, seed: int) -> dict[str, Any]:
    """Turn the `train` params section into LightGBM's own params."""
    keep = (
        "learning_rate",
        "num_leaves",
        "max_depth",
        "min_data_in_leaf",
        "feature_fraction",
        "lambda_l2",
        "cat_smooth",
    )
    out = {k: params[k] for k in keep if k in params}
    return {
        "objective": "binary",
        "metric": ["auc", "binary_logloss"],
        "first_metric_only": True,
        "seed": seed,
        "bagging_seed": seed,
        "feature_fraction_seed": seed,
        "data_random_seed": seed,
        **DETERMINISTIC,
        **out,
    }


def train_gbm(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    *,
    feature_names: Sequence[str],
    categorical: Sequence[int],
    params: dict[str, Any],
    seed: int,
) -> lgb.Booster:
    """Fit on train, stop early on valid AUC; the returned booster keeps only the best iterations."""
    names = list(feature_names)
    cats = list(categorical)
    dtrain = lgb.Dataset(X_train, label=y_train, feature_name=names, categorical_feature=cats, free_raw_data=False)
    dvalid = lgb.Dataset(X_valid, label=y_valid, reference=dtrain, categorical_feature=cats, free_raw_data=False)
    # early_stopping_rounds <= 0 trains exactly num_boost_round trees: for sources whose valid period is too unlike
    # the rest (a regime shift) for early stopping to pick a sensible size.
    patience = int(params.get("early_stopping_rounds", 100))
    booster = lgb.train(
        lgb_params(params, seed=seed),
        dtrain,
        num_boost_round=int(params.get("num_boost_round", 1000)),
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(patience, verbose=False)] if patience > 0 else [],
    )
    # Re-load only the best iterations so every consumer (predict, SHAP, the saved file) sees the same trees.
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def refit_gbm(
    X: np.ndarray,
    y: np.ndarray,
    *,
    feature_names: Sequence[str],
    categorical: Sequence[int],
    params: dict[str, Any],
    seed: int,
    num_trees: int,
) -> lgb.Booster:
    """Train exactly `num_trees` trees (the size chosen on valid) on more rows, usually train + valid.

    Why: on a small or drifting export the valid window is the most recent data before the test period; leaving it
    out of the final fit throws away the rows most like the leads the model will score.
    """
    dtrain = lgb.Dataset(X, label=y, feature_name=list(feature_names), categorical_feature=list(categorical))
    booster = lgb.train(lgb_params(params, seed=seed), dtrain, num_boost_round=int(num_trees))
    return lgb.Booster(model_str=booster.model_to_string())


def importance(booster: lgb.Booster) -> dict[str, float]:
    """Total gain per feature, the importance least distorted by split counts."""
    gains = booster.feature_importance(importance_type="gain")
    return {name: float(g) for name, g in zip(booster.feature_name(), gains, strict=True)}
