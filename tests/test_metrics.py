"""Metrics: hand-computed values, calibration error that tells calibrated from miscalibrated, small curve files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models import metrics as M


def _bernoulli(p: np.ndarray, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(p.size) < p).astype(np.float64)


def test_auc_is_one_for_a_perfect_ranking_and_half_for_all_ties() -> None:
    y = np.array([0, 0, 1, 1])
    assert M.auc(y, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert M.auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    # one converter out-ranked by one of two non-converters: 3 of 4 pairs ordered right
    assert M.auc([0, 1, 0, 1], [0.1, 0.3, 0.4, 0.9]) == pytest.approx(0.75)


def test_auc_with_one_class_raises_instead_of_returning_nan() -> None:
    with pytest.raises(ValueError, match="needs both converted and not-converted"):
        M.auc([0, 0, 0], [0.1, 0.2, 0.3])


def test_log_loss_and_brier_match_hand_values() -> None:
    y, p = [1, 0], [0.8, 0.4]
    assert M.brier(y, p) == pytest.approx((0.2**2 + 0.4**2) / 2)
    assert M.log_loss(y, p) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert math.isfinite(M.log_loss([1], [0.0]))  # a confident miss is large but finite


def test_pr_auc_is_one_when_every_converter_ranks_first() -> None:
    assert M.pr_auc([1, 1, 0, 0, 0], [0.9, 0.8, 0.3, 0.2, 0.1]) == pytest.approx(1.0)


def test_ece_matches_a_hand_example() -> None:
    # bin [0, 0.1): mean p 0.05, observed 1/3 -> gap 0.2833, weight 3/4; bin [0.9, 1]: 0.95 vs 1 -> gap 0.05, weight 1/4
    assert M.ece([0, 0, 1, 1], [0.05, 0.05, 0.05, 0.95]) == pytest.approx((1 / 3 - 0.05) * 3 / 4 + 0.05 / 4)


def test_ece_is_small_when_calibrated_and_large_when_not() -> None:
    q = np.random.default_rng(0).uniform(0.0, 1.0, 50_000)
    y = _bernoulli(q, seed=1)
    assert M.ece(y, q) < 0.01
    assert M.ece(y, q**3) > 0.15  # systematically under-confident


def test_ece_rejects_probabilities_outside_zero_one() -> None:
    with pytest.raises(ValueError, match=r"probabilities must lie in \[0, 1\]"):
        M.ece([0, 1], [-0.5, 2.0])


def test_lift_at_is_top_precision_over_base_rate() -> None:
    # 10 leads, 2 conversions (base rate 0.2); the top 10% is one lead, which converted: 1.0 / 0.2 = 5
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    p = np.linspace(0.9, 0.0, 10)
    assert M.lift_at(y, p, 0.1) == pytest.approx(5.0)
    # top 50%: 2 of 5 convert -> 0.4 / 0.2 = 2
    assert M.lift_at(y, p, frac=0.5) == pytest.approx(2.0)


def test_conversions_at_volume_breaks_ties_by_input_order() -> None:
    y = [0, 1, 1, 0]
    p = [0.5, 0.9, 0.5, 0.5]
    # order by -p, stable: lead 1 (0.9), then the tied 0.5s as given: lead 0, lead 2, lead 3
    assert M.conversions_at_volume(y, p, 2) == 1
    assert M.conversions_at_volume(y, p, 3) == 2
    assert M.conversions_at_volume(y, p, 0) == 0
    assert M.conversions_at_volume(y, p, 99) == 2


def test_rankings_break_large_ties_by_input_order() -> None:
    rng = np.random.default_rng(4)
    p = rng.choice([0.1, 0.3, 0.5], 5_000)
    y = (rng.random(5_000) < 0.3).astype(np.float64)
    # Python's sort is stable: the oracle order is highest p first, tied leads as given
    top = np.array(sorted(range(5_000), key=lambda i: -p[i]))
    assert M.conversions_at_volume(y, p, 2_345) == int(y[top[:2_345]].sum())
    assert M.lift_at(y, p, 0.25) == pytest.approx(y[top[:1_250]].mean() / y.mean())


def test_decision_table_counts_a_hand_example() -> None:
    y = [1, 1, 0, 0, 1, 0]
    selected = [True, False, True, True, True, False]
    # 4 handoffs over 2 weeks, 2 of them convert, 3 conversions in all; value 2*1000 - 4*300 = 800
    table = M.decision_table(y, selected, weeks=2.0, value_per_conversion=1000.0, cost_per_handoff=300.0)
    assert table == {
        "handoffs": 4,
        "handoffs_per_week": 2.0,
        "precision": 0.5,
        "recall": pytest.approx(2 / 3),
        "conversions": 2,
        "expected_value": 800.0,
    }


def test_decision_table_with_no_handoffs_reports_zero_precision() -> None:
    table = M.decision_table([1, 0], [False, False], weeks=1.0, value_per_conversion=1.0, cost_per_handoff=1.0)
    assert (table["handoffs"], table["precision"], table["recall"], table["expected_value"]) == (0, 0.0, 0.0, 0.0)


def test_roc_and_pr_points_are_cut_to_a_small_file_and_keep_their_ends() -> None:
    q = np.random.default_rng(2).uniform(size=20_000)
    y = _bernoulli(q, seed=3)
    roc = M.roc_points(y, q)
    pr = M.pr_points(y, q)
    assert roc.columns == ["fpr", "tpr"] and pr.columns == ["recall", "precision"]
    assert roc.height <= M.MAX_CURVE_POINTS and pr.height <= M.MAX_CURVE_POINTS
    assert roc.row(0) == (0.0, 0.0) and roc.row(-1) == (1.0, 1.0)
    assert pr["recall"][0] == 0.0 and pr["recall"][-1] == 1.0
    assert (np.diff(roc["fpr"].to_numpy()) >= 0).all() and (np.diff(pr["recall"].to_numpy()) >= 0).all()


def test_reliability_curve_has_one_row_per_non_empty_bin() -> None:
    y = [0, 1, 1, 1, 0]
    p = [0.05, 0.05, 0.95, 0.95, 0.55]
    rc = M.reliability_curve(y, p)
    assert rc.columns == ["mean_predicted", "observed_rate", "count"]
    assert rc.rows() == [(0.05, 0.5, 2), (0.55, 0.0, 1), (0.95, 1.0, 2)]


def test_gains_curve_runs_from_nothing_to_everything() -> None:
    y = [1, 0, 1, 0]
    p = [0.9, 0.8, 0.7, 0.1]
    gains = M.gains_curve(y, p, points=5)
    # contacting 0, 1, 2, 3, 4 of 4 leads captures 0, 1, 1, 2, 2 of 2 conversions
    assert gains["share_contacted"].to_list() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert gains["share_captured"].to_list() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert M.gains_curve(y, p).height == 101


def test_mismatched_lengths_and_non_binary_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        M.brier([0, 1], [0.5])
    with pytest.raises(ValueError, match="labels must be 0/1"):
        M.auc([0, 2], [0.1, 0.2])


def test_the_auc_interval_holds_the_auc_narrows_with_more_leads_and_repeats_by_seed() -> None:
    from models.metrics import auc, auc_interval

    rng = np.random.default_rng(3)
    y = rng.random(4000) < 0.3
    p = y * 0.8 + rng.normal(size=4000)
    lo, hi = auc_interval(y, p, seed=1)
    assert lo < auc(y, p) < hi and auc_interval(y, p, seed=1) == (lo, hi)
    small_lo, small_hi = auc_interval(y[:400], p[:400], seed=1)
    assert small_hi - small_lo > 2 * (hi - lo)


def test_the_reliability_curve_is_sklearns_and_bins_as_ece_does() -> None:
    from sklearn.calibration import calibration_curve

    from models.metrics import ece, reliability_curve

    rng = np.random.default_rng(3)
    p = np.concatenate([rng.random(500), np.array([0.1, 0.2, 0.5, 1.0, 0.0])])  # values on bin edges too
    y = (rng.random(p.size) < p).astype(float)
    curve = reliability_curve(y, p)
    rate, mean_p = calibration_curve(y, p, n_bins=10, strategy="uniform")
    np.testing.assert_array_equal(curve["observed_rate"].to_numpy(), rate)
    np.testing.assert_array_equal(curve["mean_predicted"].to_numpy(), mean_p)
    assert int(curve["count"].sum()) == p.size
    weighted = np.sum(curve["count"].to_numpy() * np.abs(curve["mean_predicted"] - curve["observed_rate"]).to_numpy())
    assert ece(y, p) == pytest.approx(weighted / p.size, abs=1e-15)
