"""The logistic-regression baseline every report stands the GBM beside.

Stored as plain JSON (coefficients and preprocessing), so it loads without unpickling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearBaseline:
        return cls(**d)

    def design(self, X: np.ndarray) -> np.ndarray:
        return _design(X, self)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self.design(X) @ np.asarray(self.coef) + self.intercept
        return np.asarray(expit(z))


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
    """Fit the baseline on the train split; `n_categories[i]` is the code count of `categorical[i]`."""
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
        [float(c) for c in lr.coef_[0]], float(lr.intercept_[0]),
    )
