"""Ranking, probability and decision metrics, computed once and sent to both DVC and MLflow.

Scores `p` may be any real ranking score for the ranking metrics (auc, pr_auc, lift_at, roc_points, pr_points,
gains_curve, conversions_at_volume); the probability metrics (log_loss, brier, ece, reliability_curve) need p in [0, 1].
Labels `y` are 0/1 (bool, int or float). Everything is deterministic: ties in a ranking are broken by a stable sort on
-p, so equal scores keep their input order.

scikit-learn is imported inside the functions that use it (about 1.3 s per process): the decision metrics a threshold
experiment re-computes (decision_table, conversions_at_volume, lift_at, ece, log_loss) never load it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike

#: Curves written for DVC plots are cut down to about this many points (the shape survives, the files stay small).
MAX_CURVE_POINTS = 500
_EPS = 1e-15


def _labels(y: ArrayLike) -> np.ndarray:
    arr = np.asarray(y, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError("no rows: metrics need at least one lead")
    if not np.all((arr == 0.0) | (arr == 1.0)):
        bad = arr[(arr != 0.0) & (arr != 1.0)][:3]
        raise ValueError(f"labels must be 0/1 (converted or not); found {bad.tolist()}")
    return arr


def _scores(p: ArrayLike, n: int, *, probability: bool = False) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64).ravel()
    if arr.size != n:
        raise ValueError(f"labels and scores differ in length: {n} labels, {arr.size} scores")
    if not np.all(np.isfinite(arr)):
        raise ValueError("scores must be finite (found NaN or inf)")
    if probability and (arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(f"probabilities must lie in [0, 1]; found range [{arr.min()}, {arr.max()}]")
    return arr


def labels_and_scores(y: ArrayLike, p: ArrayLike, *, probability: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Validated 1-D float64 copies: y all 0/1, p finite (and in [0, 1] when `probability`), equal lengths."""
    yy = _labels(y)
    return yy, _scores(p, yy.size, probability=probability)


def _need_both_classes(y: np.ndarray, what: str) -> None:
    pos = int(y.sum())
    if pos == 0 or pos == y.size:
        raise ValueError(
            f"{what} needs both converted and not-converted leads; got {pos} conversions in {y.size} leads"
        )


def _rank_order(p: np.ndarray) -> np.ndarray:
    """Indices from the highest to the lowest score; ties keep input order (stable), so results are reproducible."""
    return np.argsort(-p, kind="stable")


def _downsample(n: int, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Evenly spaced indices into a curve of n points, always keeping both ends."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


def auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve: the chance a random converter ranks above a random non-converter (ties count 1/2)."""
    from sklearn.metrics import roc_auc_score

    yy, pp = labels_and_scores(y, p)
    _need_both_classes(yy, "AUC")
    return float(roc_auc_score(yy, pp))


def auc_interval(y: ArrayLike, p: ArrayLike, *, n: int = 200, level: float = 0.9, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC over leads: how much of a gap between two AUCs is noise."""
    from sklearn.metrics import roc_auc_score

    yy, pp = labels_and_scores(y, p)
    _need_both_classes(yy, "AUC")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n):
        i = rng.integers(0, len(yy), len(yy))
        if 0 < yy[i].sum() < len(i):
            draws.append(roc_auc_score(yy[i], pp[i]))
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def pr_auc(y: ArrayLike, p: ArrayLike) -> float:
    """Average precision (step-wise area under precision-recall); honest when conversions are rare, unlike AUC."""
    from sklearn.metrics import average_precision_score

    yy, pp = labels_and_scores(y, p)
    if yy.sum() == 0:
        raise ValueError(f"PR-AUC needs at least one conversion; got 0 in {yy.size} leads")
    return float(average_precision_score(yy, pp))


def log_loss(y: ArrayLike, p: ArrayLike) -> float:
    """Mean negative log-likelihood of calibrated probabilities (clipped at 1e-15 so a confident miss is finite)."""
    yy, pp = labels_and_scores(y, p, probability=True)
    q = np.clip(pp, _EPS, 1.0 - _EPS)
    return float(-np.mean(yy * np.log(q) + (1.0 - yy) * np.log1p(-q)))


def brier(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared error of the probabilities: rewards both ranking and calibration."""
    from sklearn.metrics import brier_score_loss

    yy, pp = labels_and_scores(y, p, probability=True)
    return float(brier_score_loss(yy, pp))


def _bin_index(p: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins exactly as scikit-learn's calibration_curve draws them: [0, 1/b], (1/b, 2/b], ..., so ECE
    and the reliability curve always bin a lead the same way."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    return np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], p)


def _bin_stats(y: np.ndarray, p: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin: mean predicted probability, observed conversion rate, count."""
    idx = _bin_index(p, bins)
    count = np.bincount(idx, minlength=bins).astype(np.float64)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    keep = count > 0
    return sum_p[keep] / count[keep], sum_y[keep] / count[keep], count[keep]


def ece(y: ArrayLike, p: ArrayLike, *, bins: int = 10) -> float:
    """Expected calibration error: |mean predicted - observed rate| per equal-width bin, weighted by the bin's share
    of leads. "Score 37 means a 37% chance" holds to within about this many probability points."""
    yy, pp = labels_and_scores(y, p, probability=True)
    mean_p, rate, count = _bin_stats(yy, pp, bins)
    return float(np.sum(count * np.abs(mean_p - rate)) / yy.size)


def lift_at(y: ArrayLike, p: ArrayLike, frac: float = 0.1) -> float:
    """Precision among the top `frac` of leads by p (at least one lead; ties by stable sort) over the base rate."""
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    yy, pp = labels_and_scores(y, p)
    base = yy.mean()
    if base == 0.0:
        raise ValueError(f"lift needs at least one conversion; got 0 in {yy.size} leads")
    k = max(1, int(np.ceil(frac * yy.size - 1e-9)))
    top = _rank_order(pp)[:k]
    return float(yy[top].mean() / base)


def roc_points(y: ArrayLike, p: ArrayLike) -> pl.DataFrame:
    """ROC curve (fpr, tpr), cut to at most MAX_CURVE_POINTS points for DVC plots."""
    from sklearn.metrics import roc_curve

    yy, pp = labels_and_scores(y, p)
    _need_both_classes(yy, "an ROC curve")
    fpr, tpr, _ = roc_curve(yy, pp, drop_intermediate=True)
    keep = _downsample(fpr.size)
    return pl.DataFrame({"fpr": fpr[keep], "tpr": tpr[keep]})


def pr_points(y: ArrayLike, p: ArrayLike) -> pl.DataFrame:
    """Precision-recall curve (recall rising), cut to at most MAX_CURVE_POINTS points for DVC plots."""
    from sklearn.metrics import precision_recall_curve

    yy, pp = labels_and_scores(y, p)
    if yy.sum() == 0:
        raise ValueError(f"a precision-recall curve needs at least one conversion; got 0 in {yy.size} leads")
    precision, recall, _ = precision_recall_curve(yy, pp)
    precision, recall = precision[::-1], recall[::-1]
    keep = _downsample(recall.size)
    return pl.DataFrame({"recall": recall[keep], "precision": precision[keep]})


def reliability_curve(y: ArrayLike, p: ArrayLike, *, bins: int = 10) -> pl.DataFrame:
    """Mean predicted probability against observed conversion rate per equal-width bin (empty bins left out), as
    scikit-learn's calibration_curve draws it, with each bin's lead count beside it."""
    from sklearn.calibration import calibration_curve

    yy, pp = labels_and_scores(y, p, probability=True)
    idx = _bin_index(pp, bins)
    rate, mean_p = calibration_curve(yy, pp, n_bins=bins, strategy="uniform")
    count = np.bincount(idx, minlength=bins)
    count = count[count > 0].astype(np.float64)
    return pl.DataFrame(
        {"mean_predicted": mean_p, "observed_rate": rate, "count": count.astype(np.int64)},
        schema={"mean_predicted": pl.Float64, "observed_rate": pl.Float64, "count": pl.Int64},
    )


def gains_curve(y: ArrayLike, p: ArrayLike, *, points: int = 101) -> pl.DataFrame:
    """Cumulative gains: contacting the top share of leads by p captures this share of all conversions."""
    if points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    yy, pp = labels_and_scores(y, p)
    total = yy.sum()
    if total == 0:
        raise ValueError(f"a gains curve needs at least one conversion; got 0 in {yy.size} leads")
    captured = np.concatenate([[0.0], np.cumsum(yy[_rank_order(pp)])])
    share = np.linspace(0.0, 1.0, points)
    k = np.round(share * yy.size).astype(np.int64)
    return pl.DataFrame({"share_contacted": share, "share_captured": captured[k] / total})


def decision_table(
    y: ArrayLike, selected: ArrayLike, *, weeks: float, value_per_conversion: float, cost_per_handoff: float
) -> dict[str, Any]:
    """What a handoff rule does over a period, in the numbers sales watches.

    precision = share of handoffs that convert, recall = share of all conversions handed off (both 0.0 when undefined,
    as in scikit-learn's zero_division=0; `handoffs` or `conversions` then shows why). expected_value is for the whole
    period: conversions * value - handoffs * cost.
    """
    if weeks <= 0:
        raise ValueError(f"weeks must be positive, got {weeks}")
    yy = _labels(y)
    sel = np.asarray(selected).ravel()
    if sel.size != yy.size:
        raise ValueError(f"labels and selection differ in length: {yy.size} labels, {sel.size} selections")
    sel = sel.astype(bool)
    handoffs = int(sel.sum())
    conversions = int(yy[sel].sum())
    positives = int(yy.sum())
    return {
        "handoffs": handoffs,
        "handoffs_per_week": handoffs / weeks,
        "precision": conversions / handoffs if handoffs else 0.0,
        "recall": conversions / positives if positives else 0.0,
        "conversions": conversions,
        "expected_value": conversions * float(value_per_conversion) - handoffs * float(cost_per_handoff),
    }


def conversions_at_volume(y: ArrayLike, p: ArrayLike, n: int) -> int:
    """Conversions among the n highest-p leads (ties by stable sort on -p): the model's catch at a rival's volume."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    yy, pp = labels_and_scores(y, p)
    return int(yy[_rank_order(pp)[:n]].sum())
