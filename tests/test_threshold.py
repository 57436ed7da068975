"""Threshold policies on a hand-worked example, ties, the bootstrap interval and the 0-100 sweep."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.calibration import to_score
from models.metrics import decision_table
from models.threshold import (
    POLICIES,
    _bootstrap_thresholds,
    _policy_parameter,
    bootstrap_interval,
    choose_threshold,
    sweep,
    threshold_score,
)

# Ten leads, five conversions, a tie at 0.8 and at 0.1. Handing off at t = each distinct p (highest first):
#   t     handoffs  conversions  precision  recall
#   0.9   1         1            1.000      0.2
#   0.8   3         2            0.667      0.4
#   0.6   4         3            0.750      0.6
#   0.5   5         3            0.600      0.6
#   0.4   6         4            0.667      0.8
#   0.3   7         4            0.571      0.8
#   0.2   8         4            0.500      0.8
#   0.1   10        5            0.500      1.0
P = np.array([0.9, 0.8, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1])
Y = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0, 1])


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    p = np.random.default_rng(seed).beta(2, 5, n)
    return (np.random.default_rng(seed + 1).random(n) < p).astype(np.float64), p


def test_expected_value_hands_off_when_p_times_value_beats_cost() -> None:
    # V = 1000, C = 250: a lead is worth handing off when 1000 p > 250, i.e. p > 0.25
    t = choose_threshold(Y, P, policy="expected_value", value_per_conversion=1000.0, cost_per_handoff=250.0)
    assert t == 0.25
    assert (P >= t).sum() == 7


def test_capacity_fills_the_team_without_exceeding_it() -> None:
    # 1 rep x 2 leads a week x 1.5 weeks = 3 handoffs: t = 0.8 hands off exactly 3
    assert choose_threshold(Y, P, policy="capacity", weeks=1.5, reps=1, leads_per_rep_per_week=2) == 0.8


def test_capacity_keeps_tied_leads_together() -> None:
    # capacity 2: t = 0.8 would hand off 3 (the two 0.8s tie), so only the 0.9 lead goes
    t = choose_threshold(Y, P, policy="capacity", weeks=1.0, reps=1, leads_per_rep_per_week=2)
    assert t == 0.9
    assert (P >= t).sum() == 1


def test_capacity_below_the_top_tie_hands_off_nobody() -> None:
    t = choose_threshold(Y, P, policy="capacity", weeks=1.0, reps=0, leads_per_rep_per_week=2)
    assert t > 0.9 and (P >= t).sum() == 0
    # ...also once read on the 0-100 score: the threshold score is above the highest score.
    assert threshold_score(t) > to_score(P).max()


def test_precision_target_takes_the_lowest_threshold_that_reaches_it() -> None:
    assert choose_threshold(Y, P, policy="precision_target", precision_target=0.7) == 0.6  # 0.75, recall 0.6
    assert choose_threshold(Y, P, policy="precision_target", precision_target=0.65) == 0.4  # 0.667, recall 0.8
    assert choose_threshold(Y, P, policy="precision_target", precision_target=1.0) == 0.9


def test_unreachable_precision_target_raises_with_the_best_reachable() -> None:
    with pytest.raises(ValueError, match=r"no threshold reaches precision 0.6 .* the best is 0.500"):
        choose_threshold([0, 1], [0.9, 0.5], policy="precision_target", precision_target=0.6)


def test_recall_target_takes_the_highest_threshold_that_reaches_it() -> None:
    assert choose_threshold(Y, P, policy="recall_target", recall_target=0.6) == 0.6  # not 0.5: same recall, more leads
    assert choose_threshold(Y, P, policy="recall_target", recall_target=0.7) == 0.4
    assert choose_threshold(Y, P, policy="recall_target", recall_target=1.0) == 0.1


def test_legacy_volume_matches_the_legacy_handoffs_without_exceeding() -> None:
    assert choose_threshold(Y, P, policy="legacy_volume", legacy_handoffs=5) == 0.5
    assert choose_threshold(Y, P, policy="legacy_volume", legacy_handoffs=6) == 0.4
    # 9 would split the 0.1 tie: stop at 8
    assert choose_threshold(Y, P, policy="legacy_volume", legacy_handoffs=9) == 0.2


def test_legacy_volume_without_a_legacy_score_says_so() -> None:
    with pytest.raises(ValueError, match="needs legacy_handoffs .*no legacy_score"):
        choose_threshold(Y, P, policy="legacy_volume", legacy_handoffs=None)


def test_unknown_policy_raises_with_the_list_of_policies() -> None:
    with pytest.raises(ValueError, match="unknown policy 'gut_feeling'; choose one of "
                                         "expected_value, capacity, precision_target, recall_target, legacy_volume"):
        choose_threshold(Y, P, policy="gut_feeling")


def test_threshold_needs_probabilities_not_margins() -> None:
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        choose_threshold([0, 1], [-2.0, 1.5], policy="recall_target", recall_target=0.5)


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.integers(0, 20), min_size=2, max_size=40),
    labels=st.lists(st.booleans(), min_size=40, max_size=40),
    budget=st.integers(0, 45),
    target=st.sampled_from([0.2, 0.5, 0.8, 1.0]),
)
def test_policies_meet_their_constraint_and_cannot_do_better(
    scores: list[int], labels: list[bool], budget: int, target: float
) -> None:
    p = np.array(scores) / 20.0
    y = np.array(labels[: p.size], dtype=np.float64)
    distinct = np.unique(p)

    t = choose_threshold(y, p, policy="legacy_volume", legacy_handoffs=budget)
    assert (p >= t).sum() <= budget
    assert all((p >= v).sum() > budget for v in distinct if v < t)  # any lower observed cutoff breaks the budget

    if y.sum() > 0:
        t = choose_threshold(y, p, policy="recall_target", recall_target=target)
        assert t in distinct and y[p >= t].sum() / y.sum() >= target
        assert all(y[p >= v].sum() / y.sum() < target for v in distinct if v > t)


def test_bootstrap_interval_is_deterministic_for_a_seed_and_contains_the_point() -> None:
    y, p = _synthetic(3_000, seed=10)
    kw = {"policy": "capacity", "weeks": 10.0, "reps": 4, "leads_per_rep_per_week": 15}
    t = choose_threshold(y, p, **kw)
    lo, hi = bootstrap_interval(y, p, n=200, seed=7, **kw)
    assert bootstrap_interval(y, p, n=200, seed=7, **kw) == (lo, hi)
    assert bootstrap_interval(y, p, n=200, seed=8, **kw) != (lo, hi)
    assert lo <= t <= hi and lo < hi


def test_bootstrap_rechooses_exactly_as_choose_threshold_on_each_resample() -> None:
    y, p = _synthetic(300, seed=11)
    p = np.round(p, 3)  # some ties, and many values that a resample leaves out
    n, seed = 25, 3
    for policy, inputs in [
        ("capacity", {"weeks": 2.0, "reps": 3, "leads_per_rep_per_week": 10}),
        ("precision_target", {"precision_target": 0.45}),
        ("recall_target", {"recall_target": 0.6}),
        ("legacy_volume", {"legacy_handoffs": 90}),
    ]:
        fast = _bootstrap_thresholds(y, p, n=n, seed=seed, policy=policy, x=_policy_parameter(policy, inputs))
        idx = np.random.default_rng(seed).integers(0, p.size, size=(n, p.size))  # the same draws, one chunk
        slow = []
        for rows in idx:
            try:
                slow.append(choose_threshold(y[rows], p[rows], policy=policy, **inputs))
            except ValueError:
                slow.append(np.nan)
        np.testing.assert_array_equal(fast, np.array(slow), err_msg=policy)


def test_bootstrap_of_expected_value_is_the_point() -> None:
    y, p = _synthetic(500, seed=12)
    kw = {"policy": "expected_value", "value_per_conversion": 5000.0, "cost_per_handoff": 400.0}
    assert bootstrap_interval(y, p, seed=0, **kw) == (0.08, 0.08)


def test_sweep_matches_the_decision_table_at_every_cutoff() -> None:
    y, p = _synthetic(2_000, seed=13)
    kw = {"weeks": 4.0, "value_per_conversion": 5000.0, "cost_per_handoff": 400.0}
    table = sweep(y, p, **kw)
    assert table.columns == ["threshold_score", "handoffs_per_week", "precision", "recall", "conversions",
                             "expected_value"]
    assert table["threshold_score"].to_list() == list(range(101))
    for row in table.iter_rows(named=True):
        expected = decision_table(y, p >= row["threshold_score"] / 100, **kw)
        assert row["conversions"] == expected["conversions"]
        assert row["handoffs_per_week"] == pytest.approx(expected["handoffs_per_week"])
        assert row["expected_value"] == pytest.approx(expected["expected_value"])
        assert row["recall"] == pytest.approx(expected["recall"])


def test_sweep_of_the_legacy_rule_counts_a_score_of_exactly_70() -> None:
    legacy = np.array([69, 70, 70, 80, 95])
    y = np.array([0, 1, 0, 1, 1])
    table = sweep(y, legacy / 100, weeks=1.0, value_per_conversion=10.0, cost_per_handoff=1.0, scores=[70, 80, 96])
    assert table.rows() == [
        (70, 4.0, 0.75, 1.0, 3, 26.0),   # 3 x 10 - 4 x 1
        (80, 2.0, 1.0, 2 / 3, 2, 18.0),
        (96, 0.0, None, 0.0, 0, 0.0),    # nobody handed off: precision undefined, left null
    ]


def test_policies_constant_lists_every_policy() -> None:
    assert POLICIES == ("expected_value", "capacity", "precision_target", "recall_target", "legacy_volume")
