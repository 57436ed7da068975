"""Probability calibration, so that "score 37" means a 37% chance of converting, plus the 0-100 score and percentile.

The calibrator maps the booster's raw margin (log-odds) to a probability. It is fitted on the valid split (data the
booster never saw) and stored as plain JSON numbers: loading it never unpickles anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models.metrics import labels_and_scores

METHODS = ("isotonic", "sigmoid")
#: Most values a stored percentile reference holds (quantiles at 0.0%, 0.1%, ..., 100%).
REFERENCE_SIZE = 1001


@dataclass(frozen=True)
class Calibrator:
    """A fitted margin -> probability map.

    isotonic: monotone step-and-ramp through the knots (x_thresholds on the margin scale, y_thresholds probabilities),
    flat beyond the end knots (as IsotonicRegression(out_of_bounds="clip")). sigmoid: Platt scaling
    p = 1 / (1 + exp(-(a * margin + b))).
    """

    method: str
    x_thresholds: list[float] = field(default_factory=list)
    y_thresholds: list[float] = field(default_factory=list)
    a: float = 1.0
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.method == "isotonic":
            x, y = np.asarray(self.x_thresholds, dtype=np.float64), np.asarray(self.y_thresholds, dtype=np.float64)
            if x.size == 0 or x.size != y.size:
                raise ValueError(f"isotonic calibrator needs matching non-empty knots; got {x.size} x and {y.size} y")
            if np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
                raise ValueError("isotonic calibrator knots must be non-decreasing in both margin and probability")
            if y.min() < 0.0 or y.max() > 1.0 or not np.all(np.isfinite(x)):
                raise ValueError("isotonic calibrator knots must be finite with probabilities in [0, 1]")
        elif not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"sigmoid calibrator needs finite a and b; got a={self.a}, b={self.b}")

    def predict(self, margin: ArrayLike) -> np.ndarray:
        """Calibrated probabilities in [0, 1] for raw margins (log-odds) of the booster."""
        m = np.asarray(margin, dtype=np.float64)
        if self.method == "isotonic":
            p = np.interp(m, np.asarray(self.x_thresholds), np.asarray(self.y_thresholds))
        else:
            p = expit(self.a * m + self.b)
        return np.clip(p, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able parameters (Python floats, which JSON round-trips exactly)."""
        if self.method == "isotonic":
            return {
                "method": self.method,
                "x_thresholds": [float(v) for v in self.x_thresholds],
                "y_thresholds": [float(v) for v in self.y_thresholds],
            }
        return {"method": self.method, "a": float(self.a), "b": float(self.b)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        keys = {"isotonic": {"method", "x_thresholds", "y_thresholds"}, "sigmoid": {"method", "a", "b"}}
        method = d.get("method")
        if method not in keys:
            raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
        if set(d) != keys[method]:
            raise ValueError(f"a {method} calibrator has keys {sorted(keys[method])}; got {sorted(d)}")
        if method == "isotonic":
            return cls(method=method, x_thresholds=[float(v) for v in d["x_thresholds"]],
                       y_thresholds=[float(v) for v in d["y_thresholds"]])
        return cls(method=method, a=float(d["a"]), b=float(d["b"]))


def _fit_isotonic(margin: np.ndarray, y: np.ndarray) -> Calibrator:
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True).fit(margin, y)
    return Calibrator(method="isotonic", x_thresholds=[float(v) for v in iso.X_thresholds_],
                      y_thresholds=[float(v) for v in iso.y_thresholds_])


def _fit_sigmoid(margin: np.ndarray, y: np.ndarray) -> Calibrator:
    """Platt scaling with Platt's smoothed targets (N+ + 1)/(N+ + 2) and 1/(N- + 2), which keep the fit finite even
    when the margin separates the classes perfectly. A soft target t is the same log loss as a positive row of weight t
    plus a negative row of weight 1 - t, so scikit-learn's unpenalised Newton solver fits it exactly."""
    n_pos = y.sum()
    n_neg = y.size - n_pos
    t = np.where(y == 1.0, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    mu, sd = float(margin.mean()), float(margin.std())
    sd = sd if sd > 0.0 else 1.0
    z = ((margin - mu) / sd)[:, None]
    lr = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(
        np.vstack([z, z]), np.r_[np.ones(y.size), np.zeros(y.size)], sample_weight=np.r_[t, 1.0 - t])
    a = float(lr.coef_[0, 0]) / sd
    return Calibrator(method="sigmoid", a=a, b=float(lr.intercept_[0]) - a * mu)


def fit_calibrator(
    margin: ArrayLike, y: ArrayLike, *, method: str = "auto", min_positives_isotonic: int = 200
) -> Calibrator:
    """Fit a calibrator on held-out margins and 0/1 labels.

    auto: isotonic when there are at least `min_positives_isotonic` conversions (it is flexible and needs the data),
    else sigmoid (two parameters, stable on few conversions). Deterministic: no randomness in either fit.
    """
    yy, m = labels_and_scores(y, margin)
    n_pos = int(yy.sum())
    if n_pos == 0 or n_pos == yy.size:
        raise ValueError(
            f"calibration needs both converted and not-converted leads; got {n_pos} conversions in {yy.size} leads"
        )
    if method == "auto":
        method = "isotonic" if n_pos >= min_positives_isotonic else "sigmoid"
    if method == "isotonic":
        return _fit_isotonic(m, yy)
    if method == "sigmoid":
        return _fit_sigmoid(m, yy)
    raise ValueError(f"unknown calibration method {method!r}; choose auto or one of {', '.join(METHODS)}")


def to_score(p: ArrayLike) -> np.ndarray:
    """The 0-100 score sales sees: round(100 * p) as int64.

    numpy rounds halves to even (100 * p = 12.5 -> 12, 13.5 -> 14). The handoff decision itself compares the
    probability with the threshold, never the rounded score, so a lead with score 70 can sit just below a 0.70 cutoff.
    """
    arr = np.asarray(p, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("probabilities must be finite to score (found NaN or inf)")
    return np.clip(np.round(100.0 * arr), 0, 100).astype(np.int64)


def percentile_reference(p: ArrayLike, *, size: int = REFERENCE_SIZE) -> np.ndarray:
    """A sorted sample that stands for a population of probabilities: the sample itself when it is small, else its
    `size` evenly spaced quantiles (each an observed value), so the stored reference stays small."""
    arr = np.sort(np.asarray(p, dtype=np.float64).ravel())
    if arr.size == 0:
        raise ValueError("a percentile reference needs at least one probability")
    if not np.all(np.isfinite(arr)):
        raise ValueError("reference probabilities must be finite (found NaN or inf)")
    if arr.size <= size:
        return arr
    return np.quantile(arr, np.linspace(0.0, 1.0, size), method="inverted_cdf")


def percentile(p: ArrayLike, reference_sorted: ArrayLike) -> np.ndarray:
    """Percentile (0-100) of each p among the reference: 100 x the share of reference values <= p."""
    ref = np.asarray(reference_sorted, dtype=np.float64).ravel()
    if ref.size == 0:
        raise ValueError("the percentile reference is empty")
    if np.any(np.diff(ref) < 0):
        raise ValueError("the percentile reference must be sorted ascending (build it with percentile_reference)")
    return 100.0 * np.searchsorted(ref, np.asarray(p, dtype=np.float64), side="right") / ref.size
