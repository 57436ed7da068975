"""models.treeshap: our TreeSHAP kernel must give LightGBM's own pred_contrib numbers on every kind of split."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

import models.treeshap as treeshap
from models.treeshap import TreeShap, explain

TOL = 1e-6


def _train(
    X: np.ndarray, y: np.ndarray, *, rounds: int = 30, categorical: list[int] | None = None, **params: Any
) -> lgb.Booster:
    base = {
        "objective": "binary",
        "num_leaves": 15,
        "min_data_in_leaf": 5,
        "verbosity": -1,
        "num_threads": 1,
        "seed": 0,
        "deterministic": True,
    }
    data = lgb.Dataset(X, y, categorical_feature=categorical or "auto", free_raw_data=False)
    return lgb.train({**base, **params}, data, num_boost_round=rounds)


def _max_diff(booster: lgb.Booster, X: np.ndarray) -> float:
    ours = TreeShap.from_booster(booster).contributions(X)
    theirs = booster.predict(X, pred_contrib=True)
    assert ours.shape == theirs.shape
    return float(np.abs(ours - theirs).max())


def _numeric_with_nans(seed: int = 0, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    X[rng.random(X.shape) < 0.15] = np.nan
    signal = np.nan_to_num(X[:, 0], nan=1.5) - np.nan_to_num(X[:, 1]) + 0.5 * np.isnan(X[:, 2])
    y = (signal + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return X, y


def _odd_numeric_rows(X: np.ndarray) -> np.ndarray:
    """Rows LightGBM treats specially: all-NaN, exact zeros, |x| under its zero threshold, infinities."""
    odd = np.repeat(X[:1], 6, axis=0)
    odd[0] = np.nan
    odd[1] = 0.0
    odd[2] = 1e-40
    odd[3] = -1e-40
    odd[4] = np.inf
    odd[5] = -np.inf
    return np.vstack([X, odd])


def _categorical_data(seed: int = 1, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.empty((n, 4))
    X[:, 0] = rng.normal(size=n)
    X[:, 1] = rng.integers(0, 12, size=n)  # category 0 matters, so it lands in split sets
    X[:, 2] = rng.integers(0, 40, size=n)  # more categories than max_cat_to_onehot: bitset splits
    X[:, 3] = rng.normal(size=n)
    X[rng.random(n) < 0.1, 1] = np.nan
    X[rng.random(n) < 0.1, 3] = np.nan
    effect = np.isin(X[:, 1], [0, 3, 7]) * 1.5 + (X[:, 2] % 5 == 1) - 0.8 * np.isnan(X[:, 1])
    y = (effect + 0.5 * X[:, 0] + rng.normal(scale=0.7, size=n) > 0.6).astype(int)
    return X, y


def _categorical_split_sets(booster: lgb.Booster) -> list[set[int]]:
    sets: list[set[int]] = []

    def walk(node: dict[str, Any]) -> None:
        if "split_index" not in node:
            return
        if node["decision_type"] == "==":
            sets.append({int(c) for c in str(node["threshold"]).split("||")})
        walk(node["left_child"])
        walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return sets


def _missing_types(booster: lgb.Booster) -> list[int]:
    """LightGBM's missing type of every split: 0 None, 1 Zero, 2 NaN (bits 2-3 of decision_type)."""
    found = re.findall(r"decision_type=([\d ]+)", booster.model_to_string())
    return [(int(t) >> 2) & 3 for line in found for t in line.split()]


def test_numeric_features_with_nans_match_pred_contrib() -> None:
    X, y = _numeric_with_nans()
    booster = _train(X, y)
    assert 2 in _missing_types(booster)
    assert _max_diff(booster, _odd_numeric_rows(X[:500])) <= TOL


def test_numeric_splits_without_missing_values_in_training_match_pred_contrib() -> None:
    """Check that missing type None (NaN read as 0.0) is followed when training saw no NaN."""
    X, y = _numeric_with_nans(seed=3)
    booster = _train(np.nan_to_num(X, nan=0.25), y)
    assert set(_missing_types(booster)) == {0}
    assert _max_diff(booster, _odd_numeric_rows(X[:500])) <= TOL


def test_categorical_splits_match_pred_contrib_for_unseen_negative_and_nan_codes() -> None:
    X, y = _categorical_data()
    booster = _train(X, y, categorical=[1, 2], max_cat_to_onehot=4, min_data_per_group=5, cat_smooth=1.0)
    sets = _categorical_split_sets(booster)
    assert sets, "the model must contain categorical splits"
    assert any(0 in s for s in sets), "category 0 must be in some split set, so NaN -> 0 would be caught"
    Xt = X[:600].copy()
    odd_codes = [np.nan, -1.0, -3.0, -0.5, 0.0, 0.7, 2.7, 11.0, 12.0, 99.0, 1e10, np.inf, -np.inf]
    for i, code in enumerate(odd_codes):
        Xt[i * 20 : (i + 1) * 20, 1] = code
        Xt[300 + i * 20 : 300 + (i + 1) * 20, 2] = code
    assert _max_diff(booster, Xt) <= TOL


def test_zero_as_missing_matches_pred_contrib() -> None:
    X, y = _numeric_with_nans(seed=5)
    rng = np.random.default_rng(5)
    X[rng.random(X.shape) < 0.2] = 0.0
    booster = _train(X, y, zero_as_missing=True)
    assert 1 in _missing_types(booster), "the model must contain missing-type Zero splits"
    assert _max_diff(booster, _odd_numeric_rows(X[:500])) <= TOL


def test_constant_model_gives_only_the_bias() -> None:
    X = np.zeros((200, 3))
    y = (np.arange(200) % 10 < 3).astype(int)  # 30 % positives: the bias is the log-odds, not 0
    booster = _train(X, y, rounds=5)
    ts = TreeShap.from_booster(booster)
    contrib = ts.contributions(X[:7])
    np.testing.assert_allclose(contrib, booster.predict(X[:7], pred_contrib=True), atol=TOL, rtol=0)
    assert np.all(contrib[:, :3] == 0.0)
    assert ts.expected_value == pytest.approx(np.log(0.3 / 0.7), abs=1e-6)


def test_single_leaf_tree_among_split_trees_matches_pred_contrib() -> None:
    X, y = _numeric_with_nans(seed=7)
    text = _train(X, y, rounds=4).model_to_string()
    start = text.index("Tree=2\n")
    end = text.index("\n\n", start)
    # Tree 2 becomes a constant tree; tree_sizes goes, so LightGBM parses the trees one by one.
    edited = re.sub(r"tree_sizes=[^\n]*\n", "", text[:start] + CONSTANT_TREE + text[end:])
    patched = lgb.Booster(model_str=edited)
    assert patched.num_trees() == 4
    ts = TreeShap.from_model_string(edited)
    assert ts.tree_n_int[2] == 0
    theirs = patched.predict(X[:300], pred_contrib=True)
    assert np.abs(ts.contributions(X[:300]) - theirs).max() <= TOL


CONSTANT_TREE = """Tree=2
num_leaves=1
num_cat=0
split_feature=
split_gain=
threshold=
decision_type=
left_child=
right_child=
leaf_value=0.125
leaf_weight=
leaf_count=100
internal_value=
internal_weight=
internal_count=
is_linear=0
shrinkage=1"""


def test_rows_sum_to_the_raw_prediction() -> None:
    X, y = _categorical_data(seed=11)
    booster = _train(X, y, categorical=[1, 2], max_cat_to_onehot=4, min_data_per_group=5)
    contrib = explain(booster, X[:400])
    np.testing.assert_allclose(contrib.sum(axis=1), booster.predict(X[:400], raw_score=True), atol=TOL, rtol=0)


def test_bias_equals_pred_contrib_last_column() -> None:
    X, y = _numeric_with_nans(seed=13)
    booster = _train(X, y)
    ts = TreeShap.from_booster(booster)
    assert ts.expected_value == pytest.approx(booster.predict(X[:1], pred_contrib=True)[0, -1], abs=1e-12)


def test_best_iteration_is_used_like_predict_does() -> None:
    X, y = _numeric_with_nans(seed=17, n=2000)
    rng = np.random.default_rng(17)
    y = np.where(rng.random(len(y)) < 0.35, 1 - y, y)  # noisy labels: early stopping stops early
    train = lgb.Dataset(X[:1200], y[:1200])
    valid = lgb.Dataset(X[1200:], y[1200:], reference=train)
    params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.3, "verbosity": -1, "num_threads": 1}
    booster = lgb.train(
        params,
        train,
        60,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(5, verbose=False)],
        keep_training_booster=True,  # keeps the trees after the best iteration, as a live booster does
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    ts = TreeShap.from_booster(booster)
    assert ts.num_trees == booster.best_iteration
    np.testing.assert_allclose(ts.contributions(X[:300]), booster.predict(X[:300], pred_contrib=True), atol=TOL, rtol=0)
    every = TreeShap.from_booster(booster, num_iteration=-1)
    assert every.num_trees == booster.current_iteration()
    full = booster.predict(X[:300], pred_contrib=True, num_iteration=-1)
    np.testing.assert_allclose(every.contributions(X[:300]), full, atol=TOL, rtol=0)


def test_repeated_feature_on_a_path_is_merged_like_treeshap() -> None:
    rng = np.random.default_rng(19)
    X = rng.normal(size=(3000, 2))
    y = (np.sin(3 * X[:, 0]) + X[:, 1] ** 2 + rng.normal(scale=0.3, size=3000) > 0.8).astype(int)
    booster = _train(X, y, num_leaves=31, max_depth=-1)
    ts = TreeShap.from_booster(booster)
    assert ts.lf_d.max() <= 2  # 31-leaf trees on 2 features: every deep path repeats features
    assert _max_diff(booster, X[:500]) <= TOL


def test_deep_leaves_computed_without_tables_match_pred_contrib(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _categorical_data(seed=23)
    booster = _train(X, y, categorical=[1, 2], num_leaves=40, max_depth=-1, max_cat_to_onehot=4)
    monkeypatch.setattr(treeshap, "TABLE_MAX_DEPTH", 2)
    ts = TreeShap.from_booster(booster)
    assert (ts.lf_mode == 1).sum() > 0 and (ts.lf_mode == 0).sum() > 0
    theirs = booster.predict(X[:400], pred_contrib=True)
    assert np.abs(ts.contributions(X[:400]) - theirs).max() <= TOL


@pytest.mark.parametrize("slot_depth", [0, 3])
def test_shares_looked_up_per_slot_are_the_bits_of_shares_computed_per_row(slot_depth: int,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Small leaves read each feature's share from a per-pattern table; without those tables (0), or with them for
    some leaves only (3), every double is the same, and all match pred_contrib."""
    X, y = _categorical_data(seed=29)
    booster = _train(X, y, categorical=[1, 2], num_leaves=31, max_depth=-1, rounds=40)
    X = X[:600]
    default = TreeShap.from_booster(booster)
    assert (default.slot_table_off >= 0).sum() > 0
    monkeypatch.setattr(treeshap, "SLOT_TABLE_MAX_DEPTH", slot_depth)
    other = TreeShap.from_booster(booster)
    with_slots = (other.slot_table_off >= 0).sum()
    assert with_slots == 0 if slot_depth == 0 else 0 < with_slots < (other.lf_mode == 0).sum()
    np.testing.assert_array_equal(other.contributions(X), default.contributions(X))
    assert np.abs(default.contributions(X) - booster.predict(X, pred_contrib=True)).max() <= TOL


def test_leaf_with_zero_data_count_stays_finite_and_additive() -> None:
    """A zero cover fraction rules out the table's division by z; the polynomial path must take over.

    LightGBM's own recursion divides by that zero and returns NaN for the path's features, so we check
    the other columns against it and the NaN ones by additivity.
    """
    X, y = _numeric_with_nans(seed=29)
    text = _train(X, y, rounds=3).model_to_string()
    counts = re.search(r"leaf_count=([^\n]*)", text)
    assert counts is not None
    values = counts.group(1).split()
    values[0] = "0"
    edited = text.replace(counts.group(0), "leaf_count=" + " ".join(values), 1)
    edited = re.sub(r"tree_sizes=[^\n]*\n", "", edited)
    patched = lgb.Booster(model_str=edited)
    ts = TreeShap.from_model_string(edited)
    assert (ts.lf_mode == 1).sum() >= 1
    ours = ts.contributions(X[:300])
    theirs = patched.predict(X[:300], pred_contrib=True)
    assert np.isfinite(ours).all()
    finite = np.isfinite(theirs)
    assert np.abs(ours[finite] - theirs[finite]).max() <= TOL
    np.testing.assert_allclose(ours.sum(axis=1), patched.predict(X[:300], raw_score=True), atol=TOL, rtol=0)


def test_regression_objective_matches_pred_contrib() -> None:
    X, _ = _numeric_with_nans(seed=31)
    target = np.nan_to_num(X[:, 0]) * 2 + np.nan_to_num(X[:, 3]) ** 2
    booster = _train(X, target, objective="regression", rounds=20)
    assert _max_diff(booster, X[:300]) <= TOL


def test_wrong_column_count_is_rejected() -> None:
    X, y = _numeric_with_nans(seed=37, n=500)
    ts = TreeShap.from_booster(_train(X, y, rounds=2))
    with pytest.raises(ValueError, match="6 columns"):
        ts.contributions(X[:, :5])


def test_multiclass_booster_is_rejected() -> None:
    X, y = _numeric_with_nans(seed=41, n=600)
    booster = _train(X, (y + (X[:, 4] > 0)).astype(int), objective="multiclass", num_class=3, rounds=2)
    with pytest.raises(ValueError, match="single-output"):
        TreeShap.from_booster(booster)


def test_empty_input_gives_empty_output() -> None:
    X, y = _numeric_with_nans(seed=43, n=500)
    ts = TreeShap.from_booster(_train(X, y, rounds=2))
    assert ts.contributions(np.empty((0, 6))).shape == (0, 7)


@pytest.mark.parametrize("case", ["nans", "categorical", "zero_as_missing", "no_missing", "constant_tree"])
def test_margin_is_lightgbms_raw_prediction_bit_for_bit(case: str) -> None:
    """The LightGBM-free predictor gives the exact doubles LightGBM's predict does, odd rows included."""
    if case == "categorical":
        X, y = _categorical_data()
        booster = _train(X, y, rounds=60, categorical=[1, 2])
        X = np.vstack([X, [[0.0, -1.0, 99.0, 0.5], [0.0, np.nan, -0.5, np.nan], [0.0, 3.7, 11.0, 0.0]]])
    elif case == "constant_tree":
        X, y = _numeric_with_nans(seed=7)
        text = _train(X, y, rounds=4).model_to_string()
        start = text.index("Tree=2\n")
        edited = re.sub(r"tree_sizes=[^\n]*\n", "", text[:start] + CONSTANT_TREE + text[text.index("\n\n", start):])
        booster = lgb.Booster(model_str=edited)
    else:
        X, y = _numeric_with_nans(seed=3)
        extra = {"zero_as_missing": {"zero_as_missing": True}, "no_missing": {"use_missing": False}}.get(case, {})
        X[::7, 4] = 0.0
        booster = _train(X, y, rounds=80, **extra)
    X = _odd_numeric_rows(X) if X.shape[1] == 6 else X
    ours = TreeShap.from_model_string(booster.model_to_string()).margin(X)
    np.testing.assert_array_equal(ours, booster.predict(X, raw_score=True))


@pytest.mark.parametrize("case", ["nans", "categorical", "zero_as_missing"])
def test_trees_walked_row_by_row_predict_the_same_bits_as_swept_ones(case: str, monkeypatch: pytest.MonkeyPatch
                                                                     ) -> None:
    """Trees past `_SWEEP_MAX_NODES` are walked instead of swept; both paths give LightGBM's doubles."""
    if case == "categorical":
        X, y = _categorical_data(seed=5)
        booster = _train(X, y, rounds=40, categorical=[1, 2], num_leaves=63)
        X = np.vstack([X, [[0.0, -1.0, 99.0, 0.5], [0.0, np.nan, -0.5, np.nan], [0.0, 35.0, 33.9, 0.0]]])
    else:
        X, y = _numeric_with_nans(seed=9)
        X[::5, 2] = 0.0
        booster = _train(X, y, rounds=40, num_leaves=63, **({"zero_as_missing": True} if case != "nans" else {}))
        X = _odd_numeric_rows(X)
    explainer = TreeShap.from_model_string(booster.model_to_string())
    swept = explainer.margin(X)
    monkeypatch.setattr(treeshap, "_SWEEP_MAX_NODES", 8)  # every tree here has more internal nodes: all walked
    assert int(explainer.tree_n_int.min()) > 8
    walked = explainer.margin(X)
    expected = booster.predict(X, raw_score=True)
    np.testing.assert_array_equal(swept, expected)
    np.testing.assert_array_equal(walked, expected)


def test_predicting_and_explaining_never_import_lightgbm() -> None:
    import subprocess
    import sys

    code = ("import sys, numpy as np; from models.treeshap import TreeShap; "
            "assert 'lightgbm' not in sys.modules and 'sklearn' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_kernels_held_to_one_thread_give_the_bits_of_all_threads() -> None:
    """`kernel_threads(1)` (set by a caller scoring partitions on threads of its own) changes how many threads run the
    blocks, never a bit of the margin or the contributions; it holds only inside its block."""
    from models.treeshap import _KERNEL_THREADS, kernel_threads

    X, y = _numeric_with_nans(seed=3, n=5000)
    ts = TreeShap.from_booster(_train(X, y))
    X = np.vstack([X] * 4)  # several blocks
    everywhere = ts.margin(X), ts.contributions(X)
    with kernel_threads(1):
        assert _KERNEL_THREADS.get() == 1
        alone = ts.margin(X), ts.contributions(X)
    assert _KERNEL_THREADS.get() is None
    for a, b in zip(everywhere, alone, strict=True):
        assert np.array_equal(a, b)
