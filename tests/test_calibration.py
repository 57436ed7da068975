"""Calibration fixes a deliberately miscalibrated margin and stores as JSON; scores and percentiles as documented."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from models.calibration import (
    P_MIN,
    REFERENCE_SIZE,
    Calibrator,
    choose_calibrator,
    cross_fitted,
    fit_calibrator,
    percentile,
    percentile_reference,
    to_score,
)
from models.metrics import auc, ece, log_loss


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Margins m whose true log-odds are m/3: read as log-odds they are three times too confident."""
    rng = np.random.default_rng(seed)
    m = rng.normal(-1.0, 3.0, n)
    y = (rng.random(n) < expit(m / 3.0)).astype(np.float64)
    return m, y


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_lowers_ece_on_an_overconfident_margin(method: str) -> None:
    m_fit, y_fit = _overconfident(20_000, seed=0)
    m_new, y_new = _overconfident(20_000, seed=1)  # judged on fresh leads, not the ones it was fitted on
    calibrator = fit_calibrator(m_fit, y_fit, method=method)
    before = ece(y_new, expit(m_new))
    after = ece(y_new, calibrator.predict(m_new))
    assert before > 0.08
    assert after < 0.02
    assert calibrator.method == method


def test_sigmoid_recovers_the_true_slope_and_intercept() -> None:
    m, y = _overconfident(40_000, seed=2)
    c = fit_calibrator(m, y, method="sigmoid")
    assert c.a == pytest.approx(1 / 3, abs=0.03)
    assert c.b == pytest.approx(0.0, abs=0.05)


def test_sigmoid_stays_finite_when_the_margin_separates_the_classes() -> None:
    c = fit_calibrator([-2.0, -1.0, 1.0, 2.0], [0, 0, 1, 1], method="sigmoid")
    p = c.predict(np.array([-2.0, 2.0]))
    assert np.isfinite([c.a, c.b]).all() and 0.0 < p[0] < 0.5 < p[1] < 1.0


@pytest.mark.parametrize("method", ["none", "isotonic", "sigmoid"])
def test_json_round_trip_gives_identical_predictions(method: str) -> None:
    m, y = _overconfident(3_000, seed=3)
    c = fit_calibrator(m, y, method=method)
    restored = Calibrator.from_dict(json.loads(json.dumps(c.to_dict())))
    grid = np.linspace(-15.0, 15.0, 1001)  # beyond the fitted range too
    assert restored == c
    assert np.array_equal(restored.predict(grid), c.predict(grid))


@pytest.mark.parametrize("method", ["none", "isotonic", "sigmoid"])
def test_calibrated_probabilities_rise_strictly_with_the_margin_and_are_never_0_or_1(method: str) -> None:
    m, y = _overconfident(3_000, seed=4)
    calibrator = fit_calibrator(m, y, method=method)
    p = calibrator.predict(np.linspace(-30.0, 30.0, 2001))
    assert (np.diff(p) > 0).all()  # strictly: two different margins never share a probability
    assert p.min() >= P_MIN and p.max() <= 1 - P_MIN
    low, high = calibrator.predict(np.array([-1e6, 1e6]))
    assert 0.0 < round(low, 4) and round(high, 4) < 1.0  # not even the 4-place probability a note shows


def test_isotonic_keeps_the_margins_ranking_so_its_auc() -> None:
    m_fit, y_fit = _overconfident(5_000, seed=8)
    m_new, y_new = _overconfident(5_000, seed=9)
    p = fit_calibrator(m_fit, y_fit, method="isotonic").predict(m_new)
    assert auc(y_new, p) == pytest.approx(auc(y_new, m_new), abs=1e-12)
    assert np.unique(p).size == np.unique(m_new).size


def test_isotonic_never_calls_a_block_of_converters_certain() -> None:
    """The top PAV block of a small valid set is often all converters; a step fit would say 100%."""
    rng = np.random.default_rng(10)
    m = rng.normal(size=2_000)
    y = (rng.random(2_000) < expit(m - 1)).astype(float)
    y[np.argsort(m)[-25:]] = 1.0  # the 25 highest margins all converted
    c = fit_calibrator(m, y, method="isotonic")
    assert max(c.p_knots) < 1.0
    assert c.predict(np.array([m.max()]))[0] < 0.99


def test_auto_tries_isotonic_only_with_enough_conversions() -> None:
    rng = np.random.default_rng(5)
    m = rng.normal(size=1_000)
    y = np.zeros(1_000)
    y[np.argsort(m)[-50:]] = 1.0  # 50 conversions
    assert set(choose_calibrator(m, y, min_positives_isotonic=51)[1]["held_out"]) == {"none", "sigmoid"}
    assert set(choose_calibrator(m, y, min_positives_isotonic=50)[1]["held_out"]) == {"none", "sigmoid", "isotonic"}


def test_auto_chooses_the_lowest_cross_fitted_log_loss() -> None:
    # Three times too confident: Platt scaling fixes it exactly, the raw margin does not.
    m, y = _overconfident(6_000, seed=11)
    chosen, report = choose_calibrator(m, y)
    held = report["held_out"]
    assert chosen.method == report["method"] == min(held, key=lambda k: held[k]["log_loss"]) == "sigmoid"
    assert held["none"]["log_loss"] > held["sigmoid"]["log_loss"]
    assert held["sigmoid"]["log_loss"] == pytest.approx(log_loss(y, cross_fitted(m, y, method="sigmoid")))
    # A step in the true rate (5% below margin 0, 60% above): no sigmoid fits it, isotonic does.
    rng = np.random.default_rng(12)
    m = rng.normal(0.0, 2.0, 6_000)
    y = (rng.random(6_000) < np.where(m < 0, 0.05, 0.6)).astype(float)
    chosen, report = choose_calibrator(m, y)
    assert chosen.method == "isotonic" and report["chosen_by"] == "cross-fitted log loss on valid"


def test_reported_figures_are_held_out_not_in_sample() -> None:
    """Isotonic fitted on noise looks well calibrated in sample; the report shows what it does on rows it did not
    see."""
    rng = np.random.default_rng(13)
    m = rng.normal(size=3_000)
    y = (rng.random(3_000) < 0.2).astype(float)  # the margin says nothing
    calibrator, report = choose_calibrator(m, y, method="isotonic")
    assert report["held_out"]["isotonic"]["ece"] > ece(y, calibrator.predict(m))
    assert report["chosen_by"] == "params"


def test_a_margin_that_ranks_backwards_still_gets_a_rising_map() -> None:
    m = np.linspace(-3, 3, 400)
    y = (m < 0).astype(float)  # converters have the lowest margins
    low, high = fit_calibrator(m, y, method="sigmoid").predict(np.array([-3.0, 3.0]))
    assert low < high


def test_fitting_without_both_classes_or_with_unknown_method_raises() -> None:
    with pytest.raises(ValueError, match="needs both converted and not-converted"):
        fit_calibrator([0.1, 0.2], [0, 0], method="sigmoid")
    with pytest.raises(ValueError, match="needs both converted and not-converted"):
        choose_calibrator([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="unknown calibration method 'beta'; choose one of none, sigmoid, isotonic"):
        fit_calibrator([0.1, 0.2], [0, 1], method="beta")
    with pytest.raises(ValueError, match="choose auto or one of none, sigmoid, isotonic"):
        choose_calibrator([0.1, 0.2], [0, 1], method="beta")


def test_from_dict_refuses_keys_of_another_method() -> None:
    with pytest.raises(ValueError, match="a sigmoid calibrator has keys"):
        Calibrator.from_dict({"method": "sigmoid", "x_knots": [0.0], "p_knots": [0.5], "a": 1.0})
    with pytest.raises(ValueError, match="older leadlift"):  # the step-function isotonic of earlier versions
        Calibrator.from_dict({"method": "isotonic", "x_thresholds": [0.0], "y_thresholds": [0.5]})


def test_to_score_rounds_half_to_even_and_never_shows_0_or_100() -> None:
    # 12.5 -> 12 and 62.5 -> 62 (even below), 37.5 -> 38 (even above); 0 and 100 would read as certain
    assert to_score(np.array([0.0, 0.004, 0.125, 0.375, 0.625, 0.994, 1.0])).tolist() == [1, 1, 12, 38, 62, 99, 99]
    assert to_score(np.array([0.3])).dtype == np.int64


def test_percentile_is_the_share_of_the_reference_at_or_below() -> None:
    ref = percentile_reference([0.4, 0.1, 0.3, 0.2])
    assert ref.tolist() == [0.1, 0.2, 0.3, 0.4]
    assert percentile([0.05, 0.2, 0.25, 0.4, 0.9], ref).tolist() == [0.0, 50.0, 50.0, 100.0, 100.0]


def test_percentile_reference_of_a_large_sample_is_small_and_close() -> None:
    sample = np.random.default_rng(6).beta(2, 8, 50_000)
    ref = percentile_reference(sample)
    assert ref.size == REFERENCE_SIZE
    assert ref[0] == sample.min() and ref[-1] == sample.max()
    probe = np.quantile(sample, [0.1, 0.5, 0.93])
    exact = 100.0 * np.array([(sample <= q).mean() for q in probe])
    assert np.abs(percentile(probe, ref) - exact).max() < 0.2


def test_percentile_refuses_an_unsorted_reference() -> None:
    with pytest.raises(ValueError, match="sorted ascending"):
        percentile([0.5], np.array([0.3, 0.1]))


def test_sigmoid_fit_minimises_platts_smoothed_log_loss() -> None:
    """Platt scaling by scikit-learn's Newton solver lands on the optimum an independent optimiser finds."""
    from scipy.optimize import minimize

    m, y = _overconfident(5_000, seed=7)
    c = fit_calibrator(m, y, method="sigmoid")
    n_pos = y.sum()
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (y.size - n_pos + 2))

    def loss(w: np.ndarray) -> float:
        z = w[0] * m + w[1]
        return float(np.sum(np.logaddexp(0.0, z) - t * z))

    ref = minimize(loss, x0=np.array([1.0, 0.0]), method="BFGS", options={"gtol": 1e-10}).x
    assert c.a == pytest.approx(ref[0], abs=1e-6) and c.b == pytest.approx(ref[1], abs=1e-6)
    assert loss(np.array([c.a, c.b])) <= loss(ref) + 1e-9
