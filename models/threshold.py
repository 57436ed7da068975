"""Threshold policies: the data-chosen handoff cutoff that replaces the hand-set 70-80 points.

A lead is handed off when its calibrated probability p >= t. Apart from expected_value (whose optimum does not depend
on the sample), the threshold is one of the observed p values, so leads with equal p always share a decision. The
threshold is chosen on data the booster was not fitted on (the valid split), as scikit-learn's
TunedThresholdClassifierCV does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike

from models.calibration import to_score
from models.metrics import labels_and_scores

POLICIES = ("expected_value", "capacity", "precision_target", "recall_target", "legacy_volume")
#: What each policy reads; the rest of choose_threshold's inputs are ignored for it.
POLICY_INPUTS: dict[str, tuple[str, ...]] = {
    "expected_value": ("value_per_conversion", "cost_per_handoff"),
    "capacity": ("weeks", "reps", "leads_per_rep_per_week"),
    "precision_target": ("precision_target",),
    "recall_target": ("recall_target",),
    "legacy_volume": ("legacy_handoffs",),
}
#: leadlift's own placeholders for the expected-value policy (params.yaml ships them): a real source that keeps them
#: is handing off by someone else's economics, and the reports say so.
DEFAULT_VALUE_PER_CONVERSION = 4000.0
DEFAULT_COST_PER_HANDOFF = 500.0
#: The legacy rule's cutoffs every report compares against (points on the 0-100 legacy scale).
LEGACY_CUTOFFS: tuple[int, ...] = (70, 80)
#: The calibrate params each policy may read (the rest of the section is not a policy input).
POLICY_PARAMS: tuple[str, ...] = (
    "value_per_conversion",
    "cost_per_handoff",
    "reps",
    "leads_per_rep_per_week",
    "precision_target",
    "recall_target",
)
#: How far above the highest probability the "hand off nobody" threshold sits: half a point of the 0-100 score.
_NOBODY_MARGIN = 0.005
#: Bootstrap resamples are drawn in chunks of about this many row indices, to bound memory on large splits.
_CHUNK_CELLS = 1_000_000


def period_weeks(t0: pl.Series) -> float:
    """Length of a split's decision-time period in weeks (at least one day), for per-week rates."""
    span = (t0.max() - t0.min()).total_seconds() / 86400.0  # type: ignore[operator, union-attr]
    return max(span, 1.0) / 7.0


def threshold_score(t: float) -> int:
    """The lowest 0-100 score at or above probability t: SQL means score >= this, the number a rep sees."""
    return int(math.ceil(100.0 * t - 1e-9))


def on_score_scale(p: np.ndarray) -> np.ndarray:
    """Probabilities rounded to the 0-100 score, so a threshold chosen among them falls on a whole score."""
    return to_score(p) / 100.0


def policy_inputs(params: Mapping[str, Any]) -> dict[str, Any]:
    """The policy inputs of a calibrate params section."""
    return {k: params[k] for k in POLICY_PARAMS}


def _policy_parameter(policy: str, inputs: Mapping[str, float | None]) -> float:
    """The one number a policy needs: a fixed threshold, a handoff budget for the period, or a target rate."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    missing = [k for k in POLICY_INPUTS[policy] if inputs.get(k) is None]
    if missing:
        hint = " (the data has no legacy_score, so there is no legacy volume)" if policy == "legacy_volume" else ""
        raise ValueError(f"policy {policy} needs {', '.join(missing)}{hint}")
    get = {k: float(v) for k, v in inputs.items() if v is not None}
    if policy == "expected_value":
        if get["value_per_conversion"] <= 0 or get["cost_per_handoff"] < 0:
            raise ValueError("expected_value needs value_per_conversion > 0 and cost_per_handoff >= 0; got "
                             f"{get['value_per_conversion']} and {get['cost_per_handoff']}")
        return get["cost_per_handoff"] / get["value_per_conversion"]
    if policy == "capacity":
        if get["weeks"] <= 0 or get["reps"] < 0 or get["leads_per_rep_per_week"] < 0:
            raise ValueError("capacity needs weeks > 0, reps >= 0 and leads_per_rep_per_week >= 0")
        # a budget of leads, not a rate: the whole period's capacity, rounded down (1e-9 absorbs float noise)
        return float(math.floor(get["reps"] * get["leads_per_rep_per_week"] * get["weeks"] + 1e-9))
    if policy == "legacy_volume":
        if get["legacy_handoffs"] < 0:
            raise ValueError(f"legacy_handoffs must be non-negative, got {get['legacy_handoffs']}")
        return float(math.floor(get["legacy_handoffs"]))
    target = get[POLICY_INPUTS[policy][0]]
    if not 0.0 < target <= 1.0:
        raise ValueError(f"{policy} must be in (0, 1], got {target}")
    return target


def _groups(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct p values from the highest down, and each row's position in that list."""
    u, inv = np.unique(p, return_inverse=True)
    return u[::-1].copy(), (u.size - 1 - inv).astype(np.int64)


def _pick(policy: str, x: float, u: np.ndarray, cnt: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Thresholds for R weighted copies of one data set, all at once.

    u: the G distinct p values, descending; cnt, pos: (R, G) rows and conversions at each value. Only values present
    in a copy (cnt > 0) are candidates. NaN where the policy has no feasible threshold.
    """
    R, G = cnt.shape
    if policy == "expected_value":
        return np.full(R, x)
    n_cum = np.cumsum(cnt, axis=1)  # handoffs at t = u[k]: rows with p >= u[k]
    tp_cum = np.cumsum(pos, axis=1)
    observed = cnt > 0

    def last(ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # lowest feasible threshold
        return np.asarray(ok.any(axis=1)), np.asarray(G - 1 - np.argmax(ok[:, ::-1], axis=1))

    if policy in ("capacity", "legacy_volume"):
        has, k = last(observed & (n_cum <= x))
        # not even the top tie fits: hand off nobody (a threshold above the highest p by half a score point, so it
        # stays above it once read on the whole-point score: threshold_score of the highest score's p is the next one)
        nobody = u[np.argmax(observed, axis=1)] + _NOBODY_MARGIN
        return np.where(has, u[k], nobody)
    if policy == "precision_target":
        precision = tp_cum / np.maximum(n_cum, 1)
        has, k = last(observed & (precision >= x))
        return np.where(has, u[k], np.nan)
    total = tp_cum[:, -1:]
    recall = np.divide(tp_cum, total, out=np.zeros_like(tp_cum, dtype=np.float64), where=total > 0)
    ok = observed & (recall >= x) & (total > 0)
    k = np.argmax(ok, axis=1)  # highest feasible threshold
    return np.where(ok[np.arange(R), k], u[k], np.nan)


def choose_threshold(
    y: ArrayLike,
    p: ArrayLike,
    *,
    policy: str,
    weeks: float | None = None,
    value_per_conversion: float | None = None,
    cost_per_handoff: float | None = None,
    reps: float | None = None,
    leads_per_rep_per_week: float | None = None,
    precision_target: float | None = None,
    recall_target: float | None = None,
    legacy_handoffs: float | None = None,
) -> float:
    """The probability threshold t (hand off when p >= t) that a policy picks on labelled, calibrated leads.

    - expected_value: a handoff earns p*V - C in expectation, so every lead with p*V > C is worth handing off and
      every other lead is not; t = C/V. That is the optimum for any sample when p is calibrated, which is why the
      calibrator is fitted first; the labels are not used.
    - capacity: the most leads the team can work over the period (reps * leads_per_rep_per_week * weeks, rounded
      down): the lowest observed t whose handoffs do not exceed it (just above the highest p if even the top tie does).
    - precision_target: the lowest observed t whose precision >= target (the most recall at that precision).
    - recall_target: the highest observed t whose recall >= target (the fewest handoffs at that recall).
    - legacy_volume: as many handoffs as the legacy >= 70 rule made on the same leads, without exceeding it.
    Only the inputs a policy reads are required (POLICY_INPUTS).
    """
    x = _policy_parameter(policy, {
        "weeks": weeks, "value_per_conversion": value_per_conversion, "cost_per_handoff": cost_per_handoff,
        "reps": reps, "leads_per_rep_per_week": leads_per_rep_per_week, "precision_target": precision_target,
        "recall_target": recall_target, "legacy_handoffs": legacy_handoffs,
    })
    yy, pp = labels_and_scores(y, p, probability=True)
    u, g = _groups(pp)
    cnt = np.bincount(g, minlength=u.size)[None, :]
    pos = np.bincount(g, weights=yy, minlength=u.size)[None, :]
    t = float(_pick(policy, x, u, cnt, pos)[0])
    if math.isnan(t):
        n_cum, tp_cum = np.cumsum(cnt[0]), np.cumsum(pos[0])
        if policy == "recall_target":
            raise ValueError(f"recall_target needs at least one conversion; got 0 in {yy.size} leads")
        best = int(np.argmax(tp_cum / n_cum))
        raise ValueError(
            f"no threshold reaches precision {x:g} on these {yy.size} leads: the best is "
            f"{tp_cum[best] / n_cum[best]:.3f} (p >= {u[best]:.4f}, {int(n_cum[best])} handoffs); "
            "lower precision_target or choose another policy"
        )
    return t


def _bootstrap_thresholds(y: np.ndarray, p: np.ndarray, *, n: int, seed: int, policy: str, x: float) -> np.ndarray:
    """Thresholds re-chosen on n resamples of the rows (NaN where the policy is infeasible on a resample).

    A resample only changes how many times each row appears, so it is a table of per-value counts: bincount does
    every resample of a chunk in one pass and _pick chooses all their thresholds at once.
    """
    u, g = _groups(p)
    G, N = u.size, p.size
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.float64)
    per_chunk = max(1, _CHUNK_CELLS // N)
    for start in range(0, n, per_chunk):
        r = min(per_chunk, n - start)
        idx = rng.integers(0, N, size=(r, N))
        flat = (np.arange(r)[:, None] * G + g[idx]).ravel()
        cnt = np.bincount(flat, minlength=r * G).reshape(r, G)
        pos = np.bincount(flat, weights=y[idx].ravel(), minlength=r * G).reshape(r, G)
        out[start:start + r] = _pick(policy, x, u, cnt, pos)
    return out


def bootstrap_interval(
    y: ArrayLike,
    p: ArrayLike,
    *,
    policy: str,
    n: int = 200,
    seed: int,
    level: float = 0.9,
    **policy_inputs: float | None,
) -> tuple[float, float]:
    """Percentile interval of the threshold over n bootstrap resamples of the rows (numpy default_rng(seed)).

    policy and **policy_inputs are choose_threshold's. Shows how much the chosen cutoff moves with the sample; the
    calibrator is held fixed. Resamples on which the
    policy is infeasible (say, no threshold reaches the precision target) are left out; if all are, ValueError.
    expected_value does not depend on the sample, so its interval is the point (C/V, C/V).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    point = choose_threshold(y, p, policy=policy, **policy_inputs)  # validates policy, inputs and data
    if policy == "expected_value":
        return point, point
    yy, pp = labels_and_scores(y, p, probability=True)
    x = _policy_parameter(policy, policy_inputs)
    ts = _bootstrap_thresholds(yy, pp, n=n, seed=seed, policy=policy, x=x)
    ts = ts[~np.isnan(ts)]
    if ts.size == 0:
        raise ValueError(f"policy {policy} had no feasible threshold on any of {n} bootstrap resamples")
    lo, hi = np.percentile(ts, [50.0 * (1.0 - level), 50.0 * (1.0 + level)])
    return float(lo), float(hi)


def sweep(
    y: ArrayLike,
    p: ArrayLike,
    *,
    weeks: float,
    value_per_conversion: float,
    cost_per_handoff: float,
    scores: Iterable[int] = range(0, 101),
) -> pl.DataFrame:
    """The decision at every 0-100 cutoff s (hand off when p >= s/100), for the model (p = calibrated probability)
    and the legacy rule (p = legacy_score / 100) alike. precision is null where nobody is handed off (a gap in the
    plot rather than a false drop to zero); expected_value is for the whole period."""
    if weeks <= 0:
        raise ValueError(f"weeks must be positive, got {weeks}")
    yy, pp = labels_and_scores(y, p, probability=True)
    order = np.argsort(pp, kind="stable")
    sorted_p = pp[order]
    conv_below = np.concatenate([[0.0], np.cumsum(yy[order])])  # conversions among the i lowest
    s = np.asarray(list(scores), dtype=np.int64)
    below = np.searchsorted(sorted_p, s / 100.0, side="left")
    handoffs = yy.size - below
    conversions = (conv_below[-1] - conv_below[below]).round().astype(np.int64)
    total = int(yy.sum())
    precision = [c / h if h else None for c, h in zip(conversions.tolist(), handoffs.tolist(), strict=True)]
    return pl.DataFrame(
        {
            "threshold_score": s,
            "handoffs_per_week": handoffs / weeks,
            "precision": precision,
            "recall": conversions / total if total else np.zeros(s.size),
            "conversions": conversions,
            "expected_value": conversions * float(value_per_conversion) - handoffs * float(cost_per_handoff),
        },
        schema={"threshold_score": pl.Int64, "handoffs_per_week": pl.Float64, "precision": pl.Float64,
                "recall": pl.Float64, "conversions": pl.Int64, "expected_value": pl.Float64},
    )
