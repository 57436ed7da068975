"""Probability calibration, so that "score 37" means a 37% chance of converting, plus the 0-100 score and percentile.

The calibrator maps the booster's raw margin (log-odds) to a probability. It is fitted on the valid split (data the
booster never saw) and stored as plain JSON numbers: loading it never unpickles anything. Applying a calibrator needs
numpy and scipy only; scikit-learn is imported where one is fitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit, logit

from models.metrics import brier, ece, labels_and_scores, log_loss

METHODS = ("none", "sigmoid", "isotonic")
#: Calibrated probabilities live in [P_MIN, 1 - P_MIN]: no lead is ever certain to convert or certain not to, and a
#: probability rounded to 4 places for a note is never 0 or 1 either.
P_MIN = 1e-4
#: Folds of the cross-fitting that chooses the method: contiguous blocks of the valid split in its time order.
CROSS_FIT_FOLDS = 5
#: The 0-100 score shown to sales stays within these (see to_score).
SCORE_MIN, SCORE_MAX = 1, 99
#: Most values a stored percentile reference holds (quantiles at 0.0%, 0.1%, ..., 100%).
REFERENCE_SIZE = 1001


@dataclass(frozen=True)
class Calibrator:
    """A fitted margin -> probability map, strictly increasing, with values in [P_MIN, 1 - P_MIN].

    none: p = expit(margin), the model's own probability. sigmoid: Platt scaling p = expit(a * margin + b).
    isotonic: the isotonic (PAV) fit's blocks as knots (x_knots: each block's mean margin, p_knots: its smoothed
    conversion rate), joined linearly in log-odds and continued beyond the end knots with the slope `a` (log-odds per
    unit of margin, from a Platt fit): unlike a step function it never ties two different margins, so the ranking,
    and the AUC, of the raw margin survive calibration, and the top block is never "certain".
    """

    method: str
    x_knots: list[float] = field(default_factory=list)
    p_knots: list[float] = field(default_factory=list)
    a: float = 1.0
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not (math.isfinite(self.a) and math.isfinite(self.b)) or self.a <= 0.0:
            raise ValueError(f"a calibrator needs finite a > 0 and finite b; got a={self.a}, b={self.b}")
        if self.method == "isotonic":
            x, p = np.asarray(self.x_knots, dtype=np.float64), np.asarray(self.p_knots, dtype=np.float64)
            if x.size == 0 or x.size != p.size:
                raise ValueError(f"isotonic calibrator needs matching non-empty knots; got {x.size} x and {p.size} p")
            if np.any(np.diff(x) <= 0) or np.any(np.diff(p) <= 0):
                raise ValueError("isotonic calibrator knots must be strictly increasing in both margin and probability")
            if not (np.all(np.isfinite(x)) and p.min() > 0.0 and p.max() < 1.0):
                raise ValueError("isotonic calibrator knots must be finite with probabilities strictly inside (0, 1)")

    def log_odds(self, margin: ArrayLike) -> np.ndarray:
        """The calibrated log-odds, before the squeeze into [P_MIN, 1 - P_MIN]."""
        m = np.asarray(margin, dtype=np.float64)
        if self.method == "none":
            return m
        if self.method == "sigmoid":
            return self.a * m + self.b
        x, z = np.asarray(self.x_knots), logit(np.asarray(self.p_knots))
        out = np.interp(m, x, z)
        return np.where(m < x[0], z[0] + self.a * (m - x[0]), np.where(m > x[-1], z[-1] + self.a * (m - x[-1]), out))

    def predict(self, margin: ArrayLike) -> np.ndarray:
        """Calibrated probabilities in [P_MIN, 1 - P_MIN] for raw margins (log-odds) of the model."""
        return P_MIN + (1.0 - 2.0 * P_MIN) * expit(self.log_odds(margin))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able parameters (Python floats, which JSON round-trips exactly)."""
        if self.method == "isotonic":
            return {"method": self.method, "x_knots": [float(v) for v in self.x_knots],
                    "p_knots": [float(v) for v in self.p_knots], "a": float(self.a)}
        if self.method == "sigmoid":
            return {"method": self.method, "a": float(self.a), "b": float(self.b)}
        return {"method": self.method}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        keys = {"none": {"method"}, "isotonic": {"method", "x_knots", "p_knots", "a"},
                "sigmoid": {"method", "a", "b"}}
        method = d.get("method")
        if method not in keys:
            raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
        if set(d) != keys[method]:
            raise ValueError(f"a {method} calibrator has keys {sorted(keys[method])}; got {sorted(d)} "
                             "(a calibrator from an older leadlift: re-run the calibrate stage)")
        if method == "isotonic":
            return cls(method=method, x_knots=[float(v) for v in d["x_knots"]],
                       p_knots=[float(v) for v in d["p_knots"]], a=float(d["a"]))
        if method == "sigmoid":
            return cls(method=method, a=float(d["a"]), b=float(d["b"]))
        return cls(method=method)


def _fit_sigmoid(margin: np.ndarray, y: np.ndarray) -> Calibrator:
    """Platt scaling with Platt's smoothed targets (N+ + 1)/(N+ + 2) and 1/(N- + 2), which keep the fit finite even
    when the margin separates the classes perfectly. A soft target t is the same log loss as a positive row of weight t
    plus a negative row of weight 1 - t, so scikit-learn's unpenalised Newton solver fits it exactly. A margin that
    ranks backwards (a <= 0) keeps a tiny positive slope: a calibrator never reverses the model's ranking."""
    from sklearn.linear_model import LogisticRegression

    n_pos = y.sum()
    n_neg = y.size - n_pos
    t = np.where(y == 1.0, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    mu, sd = float(margin.mean()), float(margin.std())
    sd = sd if sd > 0.0 else 1.0
    z = ((margin - mu) / sd)[:, None]
    lr = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(
        np.vstack([z, z]), np.r_[np.ones(y.size), np.zeros(y.size)], sample_weight=np.r_[t, 1.0 - t])
    a = float(lr.coef_[0, 0]) / sd
    if a < _MIN_SLOPE:
        return Calibrator(method="sigmoid", a=_MIN_SLOPE, b=float(logit(t.mean())) - _MIN_SLOPE * mu)
    return Calibrator(method="sigmoid", a=a, b=float(lr.intercept_[0]) - a * mu)


#: The flattest slope a calibrator keeps (log-odds per unit of margin): strictly increasing, never reversed.
_MIN_SLOPE = 1e-3


def _fit_isotonic(margin: np.ndarray, y: np.ndarray) -> Calibrator:
    """PAV blocks -> knots at each block's mean margin with its conversion rate smoothed as (k + 0.5) / (n + 1), so
    no knot is 0 or 1; smoothing can break monotonicity between small blocks, so PAV runs once more on the smoothed
    rates and equal neighbours merge (weighted), leaving strictly increasing knots."""
    from sklearn.isotonic import IsotonicRegression

    order = np.argsort(margin, kind="stable")
    m, yy = margin[order], y[order]
    fitted = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(m, yy).predict(m)
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])
    n = np.diff(np.r_[starts, m.size]).astype(np.float64)
    x = np.add.reduceat(m, starts) / n
    rate = (np.add.reduceat(yy, starts) + 0.5) / (n + 1.0)
    rate = IsotonicRegression(increasing=True).fit(x, rate, sample_weight=n).predict(x)
    keep = np.r_[True, np.diff(rate) > 0]
    group = np.cumsum(keep) - 1
    weight = np.bincount(group, weights=n)
    x_knots = np.bincount(group, weights=x * n) / weight
    p_knots = np.bincount(group, weights=rate * n) / weight
    slope = _fit_sigmoid(margin, y).a
    return Calibrator(method="isotonic", x_knots=[float(v) for v in x_knots], p_knots=[float(v) for v in p_knots],
                      a=slope)


def fit_calibrator(margin: ArrayLike, y: ArrayLike, *, method: str) -> Calibrator:
    """Fit one calibration method (none, sigmoid or isotonic) on held-out margins and 0/1 labels. Deterministic."""
    yy, m = labels_and_scores(y, margin)
    n_pos = int(yy.sum())
    if n_pos == 0 or n_pos == yy.size:
        raise ValueError(
            f"calibration needs both converted and not-converted leads; got {n_pos} conversions in {yy.size} leads"
        )
    if method == "none":
        return Calibrator(method="none")
    if method == "isotonic":
        return _fit_isotonic(m, yy)
    if method == "sigmoid":
        return _fit_sigmoid(m, yy)
    raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")


def cross_fitted(margin: ArrayLike, y: ArrayLike, *, method: str, folds: int = CROSS_FIT_FOLDS) -> np.ndarray:
    """Each row's probability from `method` fitted on the other folds (contiguous blocks in the given order): what
    the method does on leads it was not fitted on. A fold whose complement holds a single class gets that class's
    share, squeezed like any probability."""
    yy, m = labels_and_scores(y, margin)
    out = np.empty(yy.size)
    for block in np.array_split(np.arange(yy.size), max(1, min(folds, yy.size))):
        rest = np.ones(yy.size, dtype=bool)
        rest[block] = False
        if folds == 1 or not rest.any():
            rest[:] = True
        n_pos = yy[rest].sum()
        if 0 < n_pos < rest.sum():
            out[block] = fit_calibrator(m[rest], yy[rest], method=method).predict(m[block])
        else:
            out[block] = P_MIN + (1.0 - 2.0 * P_MIN) * (n_pos / rest.sum())
    return out


def choose_calibrator(margin: ArrayLike, y: ArrayLike, *, method: str = "auto", min_positives_isotonic: int = 200,
                      folds: int = CROSS_FIT_FOLDS) -> tuple[Calibrator, dict[str, Any]]:
    """The calibrator and the held-out evidence for it.

    auto: each candidate (none, sigmoid, and isotonic when valid holds at least `min_positives_isotonic` conversions:
    it needs the data) is cross-fitted on the valid rows; the lowest cross-fitted log loss wins and is refitted on all
    of them. A named method is fitted as asked, with its cross-fitted figures reported the same way. The figures are
    held out (each row scored by a fit that did not see it), never in sample.
    """
    yy, m = labels_and_scores(y, margin)
    n_pos = int(yy.sum())
    if method == "auto":
        candidates = ["none", "sigmoid"] + (["isotonic"] if n_pos >= min_positives_isotonic else [])
    elif method in METHODS:
        candidates = [method]
    else:
        raise ValueError(f"unknown calibration method {method!r}; choose auto or one of {', '.join(METHODS)}")
    held: dict[str, dict[str, float]] = {}
    for name in candidates:
        p = cross_fitted(m, yy, method=name, folds=folds)
        held[name] = {"log_loss": log_loss(yy, p), "ece": ece(yy, p), "brier": brier(yy, p)}
    chosen = min(candidates, key=lambda c: (held[c]["log_loss"], candidates.index(c)))
    report = {"method": chosen, "chosen_by": "cross-fitted log loss on valid" if method == "auto" else "params",
              "folds": folds, "valid_positives": n_pos, "held_out": held}
    return fit_calibrator(m, yy, method=chosen), report


def to_score(p: ArrayLike) -> np.ndarray:
    """The 0-100 score sales sees: round(100 * p) as int64, kept within 1-99 (a score of 0 or 100 would read as
    certain, and no lead is).

    numpy rounds halves to even (100 * p = 12.5 -> 12, 13.5 -> 14). SQL means score >= the threshold score.
    """
    arr = np.asarray(p, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("probabilities must be finite to score (found NaN or inf)")
    return np.clip(np.round(100.0 * arr), SCORE_MIN, SCORE_MAX).astype(np.int64)


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
