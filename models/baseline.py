"""The logistic regression: the baseline every report stands the GBM beside, and a candidate model of its own.

Stored as plain JSON (coefficients and preprocessing), so it loads without unpickling. When it is the chosen model
(or part of a blend), its reason codes are exact linear SHAP values: coefficient x (design value - its mean over the
rows it was fitted on), summed over the design columns each feature expands into.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit


@dataclass(frozen=True)
class LinearBaseline:
    """One-hot categoricals, log1p-scaled numerics with median imputation and missing flags, then a logistic model."""

    numeric: list[int]
    categorical: list[int]
    n_categories: list[int]
    medians: list[float]
    log_scaled: list[bool]
    means: list[float]
    scales: list[float]
    coef: list[float]
    intercept: float
    #: Mean of each design column over the fit rows (the reference point of the linear SHAP values).
    design_means: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearBaseline:
        return cls(**d)

    def design(self, X: np.ndarray) -> np.ndarray:
        return _design(X, self)

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds: the linear predictor. Summed row by row (not a BLAS matrix-vector product, whose rounding can
        depend on how many rows come along), so a lead gets the same bits in any batch: one file or a Spark bucket."""
        return np.asarray((self.design(X) * np.asarray(self.coef)).sum(axis=1) + self.intercept, dtype=np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(expit(self.margin(X)))

    @property
    def expected_value(self) -> float:
        """The log-odds of the average fit row's design: what the contributions are measured from."""
        self._need_means()
        return float(self.intercept + np.dot(self.coef, self.design_means))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Exact linear SHAP values (n, features + 1): per feature, the sum of coef x (design - mean) over its design
        columns; the last column is the expected value, so each row adds up to its margin."""
        self._need_means()
        parts = (self.design(X) - np.asarray(self.design_means)) * np.asarray(self.coef)
        owner = self.design_owner(X.shape[1])
        out = np.zeros((X.shape[0], X.shape[1] + 1))
        for j in range(X.shape[1]):
            out[:, j] = parts[:, owner == j].sum(axis=1)
        out[:, -1] = self.expected_value
        return out

    def design_owner(self, n_features: int) -> np.ndarray:
        """The feature each design column comes from, in design order (numeric value and missing flag, then each
        categorical's one-hot columns)."""
        owner = [j for j in self.numeric for _ in range(2)]
        owner += [j for j, k in zip(self.categorical, self.n_categories, strict=True) for _ in range(k + 1)]
        if owner and max(owner) >= n_features:
            raise ValueError(f"the logistic model uses feature {max(owner)}, but the matrix has {n_features}")
        return np.asarray(owner, dtype=np.int64)

    def _need_means(self) -> None:
        if len(self.design_means) != len(self.coef):
            raise ValueError("this logistic model has no design means (fitted by an older leadlift): refit it")


def _design(X: np.ndarray, b: LinearBaseline) -> np.ndarray:
    cols: list[np.ndarray] = []
    for j, med, log, mu, sd in zip(b.numeric, b.medians, b.log_scaled, b.means, b.scales, strict=True):
        x = X[:, j]
        missing = np.isnan(x)
        v = np.where(missing, med, x)
        if log:
            v = np.log1p(np.maximum(v, 0.0))
        cols.append((v - mu) / sd)
        cols.append(missing.astype(float))
    for j, k in zip(b.categorical, b.n_categories, strict=True):
        codes = X[:, j]
        onehot = np.zeros((X.shape[0], k + 1))
        known = ~np.isnan(codes) & (codes >= 0) & (codes < k)
        onehot[np.flatnonzero(known), codes[known].astype(int)] = 1.0
        onehot[~known, k] = 1.0
        cols.append(onehot)
    return np.column_stack(cols) if cols else np.zeros((X.shape[0], 0))


def fit_baseline(
    X: np.ndarray, y: np.ndarray, *, categorical: Sequence[int], n_categories: Sequence[int], C: float = 1.0
) -> LinearBaseline:
    """Fit the baseline on the train split; `n_categories[i]` is the code count of `categorical[i]`. (scikit-learn is
    imported here, not by the module: scoring with a fitted baseline needs numpy only.)"""
    from sklearn.linear_model import LogisticRegression

    cats = list(categorical)
    numeric = [j for j in range(X.shape[1]) if j not in cats]
    medians, log_scaled, means, scales = [], [], [], []
    for j in numeric:
        x = X[:, j]
        med = float(np.nanmedian(x)) if np.isfinite(x).any() else 0.0
        v = np.where(np.isnan(x), med, x)
        log = bool(np.nanmin(v) >= 0) if v.size else False
        if log:
            v = np.log1p(v)
        sd = float(v.std()) or 1.0
        medians.append(med)
        log_scaled.append(log)
        means.append(float(v.mean()))
        scales.append(sd)
    skeleton = LinearBaseline(
        numeric, cats, [int(k) for k in n_categories], medians, log_scaled, means, scales, [], 0.0
    )
    design = _design(X, skeleton)
    lr = LogisticRegression(C=C, max_iter=5000)
    lr.fit(design, y)
    return LinearBaseline(
        numeric, cats, skeleton.n_categories, medians, log_scaled, means, scales,
        [float(c) for c in lr.coef_[0]], float(lr.intercept_[0]), [float(v) for v in design.mean(axis=0)],
    )
