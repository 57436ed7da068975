"""The leak guard: refuse features that predict the label too well on their own, or that the source records late.

A column that alone separates converters from the rest (single-feature AUC near 1) is almost always written after
the outcome (a "deal stage", a "lost reason", a sales rep's tag). The guard stops the stage and names it; an analyst
who has checked a column allows it in params (featurize.leak_allow), and the report still lists it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from features.errors import BadInput
from features.spec import CATEGORICAL

AUC_RULE = "single_feature_auc"
AFTER_OUTCOME_RULE = "after_outcome"


@dataclass(frozen=True)
class Finding:
    """One suspicious column: why, its single-feature AUC on train, and whether the analyst allowed it."""

    column: str
    rule: str
    reason: str
    auc: float | None
    allowed: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LeakError(BadInput):
    """Features the guard refuses (bad input: exit 2); the message names each and says how to override."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        refused = [f for f in findings if not f.allowed]
        lines = [f"  {f.column}: {f.reason}" for f in refused]
        super().__init__(
            None,
            f"leak guard refused {len(refused)} feature column(s):\n" + "\n".join(lines) + "\n"
            "If a column is really known at decision time, add it to featurize.leak_allow in params.yaml; "
            "if it is filled in after the outcome, drop it in the source mapping (drop_leaky)."
        )


def find_leaks(
    frame: pl.DataFrame,
    label: pl.Series | np.ndarray,
    spec: Mapping[str, Any],
    *,
    auc_max: float,
    allow: Iterable[str] = (),
    after_outcome: Iterable[str] = (),
) -> list[Finding]:
    """Check every spec feature on the train rows; raise LeakError if any finding is not allowed.

    Numeric: max(AUC, 1 - AUC) with NaN ranked as its own lowest value. Categorical: AUC of the per-category train
    target rate (in-sample, so a near-unique ID-like column scores near 1 too). A feature is also refused when it
    (or the column it is parsed from) is marked after_outcome by the source mapping. Returns the allowed findings.

    Examples
    --------
    >>> frame = pl.DataFrame({"visits": [1.0, 2.0, 3.0], "stage": ["lost", "won", "won"]})
    >>> spec = {"features": [{"name": "visits", "kind": "numeric"},
    ...                      {"name": "stage", "kind": "categorical", "categories": ["lost", "won", "other"]}]}
    >>> [(f.column, f.rule, f.auc) for f in find_leaks(frame, np.array([0, 1, 1]), spec, auc_max=0.95,
    ...                                                  allow=["visits", "stage"])]
    [('visits', 'single_feature_auc', 1.0), ('stage', 'single_feature_auc', 1.0)]
    """
    allowed, late = set(allow), set(after_outcome)
    y = np.asarray(label, dtype=np.float64)
    if len(y) != frame.height:
        raise ValueError(f"label has {len(y)} rows, frame has {frame.height}")
    findings: list[Finding] = []
    for f in spec["features"]:
        name = f["name"]
        auc = single_feature_auc(frame[name], y, categorical=f["kind"] == CATEGORICAL)
        sources = {name, f.get("source_column", name)}
        if sources & late:
            findings.append(Finding(name, AFTER_OUTCOME_RULE, "marked after the outcome by the source mapping "
                                    f"(after_outcome: {sorted(sources & late)[0]})", auc, name in allowed))
        elif auc is not None and auc > auc_max:
            findings.append(Finding(name, AUC_RULE, f"single-feature AUC on train = {auc:.4f} > {auc_max}", auc,
                                    name in allowed))
    if any(not f.allowed for f in findings):
        raise LeakError(findings)
    return findings


def single_feature_auc(values: pl.Series, y: np.ndarray, *, categorical: bool) -> float | None:
    """How well one column alone ranks converters above the rest (0.5: not at all, 1: perfectly).

    None when y has a single class, since AUC is then undefined.

    Examples
    --------
    >>> single_feature_auc(pl.Series([None, 1.0, 5.0]), np.array([0, 0, 1]), categorical=False)
    1.0
    """
    positives = int(np.sum(y == 1))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    if categorical:
        score = _category_rate(values, y)
    else:
        x = values.cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64, copy=False)
        score = np.where(np.isnan(x), -np.inf, x)  # missing is its own value, below every real one
    ranks = pl.Series(score).rank("average").to_numpy()
    auc = (ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    return float(round(max(auc, 1.0 - auc), 6))


def _category_rate(values: pl.Series, y: np.ndarray) -> np.ndarray:
    frame = pl.DataFrame({"v": values.cast(pl.String), "y": y})
    return frame.select(pl.col("y").mean().over("v")).to_series().to_numpy()
