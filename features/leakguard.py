"""The leak guard: refuse features that predict the label too well on their own, or that the source records late.

A column that alone separates converters from the rest is almost always written after the outcome (a "deal stage",
a "lost reason", a sales rep's tag, attributes copied from a won-deals table). The guard stops the stage and names
the column and the rule; an analyst who has checked a column allows it in params (featurize.leak_allow), and the
report still lists it. The rules, each named in the message:

- `after_outcome`: the source mapping marks the column (or the one it is parsed from) as recorded after the outcome.
- `date_after_t0`: a categorical whose values are dates, after t0 for most leads: written after the decision time.
- `free_text`: a categorical with mostly unique values (a description, a note); it can only be learnt by heart.
- `present_for_one_class`: filled in almost only for one class (for example non-null for < 1% of non-converters but
  >= 5% of converters), so its mere presence gives the outcome away, whatever its values.
- `missingness_auc`: whether the value is missing, as a feature of its own, separates the classes beyond the limit.
- `single_feature_auc`: the value alone ranks converters above the rest beyond the limit. Categoricals are target-
  encoded out of fold on train and with the train encoding on valid, so an id-like column with hundreds of levels is
  judged on how it generalises, not on how well it memorises train.

Every rule runs on the train rows and, when given, on the valid rows too (a column filled in late shows in either).
The presence and missingness rules look at the export's own columns only: leadlift's event features count events
before t0 and are point in time by construction, so "no pricing visit yet" is a signal, not a leak.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from features.errors import BadInput
from features.spec import CATEGORICAL

AUC_RULE = "single_feature_auc"
MISSING_AUC_RULE = "missingness_auc"
PRESENCE_RULE = "present_for_one_class"
FREE_TEXT_RULE = "free_text"
DATE_RULE = "date_after_t0"
AFTER_OUTCOME_RULE = "after_outcome"
RULES: tuple[str, ...] = (AFTER_OUTCOME_RULE, DATE_RULE, FREE_TEXT_RULE, PRESENCE_RULE, MISSING_AUC_RULE, AUC_RULE)

#: present_for_one_class: non-null for fewer than RARE of one class and at least COMMON of the other...
PRESENCE_RARE = 0.01
PRESENCE_COMMON = 0.05
#: ...and, were presence unrelated to the class, at least this many rows of the rare class would have had a value
#: (so 0 of 30 converters is not read as a pattern).
PRESENCE_MIN_EXPECTED = 10.0
#: free_text: more than this share of a categorical's values occur once, over at least FREE_TEXT_MIN_VALUES values.
FREE_TEXT_UNIQUE_SHARE = 0.5
FREE_TEXT_MIN_VALUES = 30
#: date_after_t0: at least this share of a categorical's values parse as dates, and at least DATE_AFTER_SHARE of
#: the leads that have one are dated after their t0.
DATE_PARSE_SHARE = 0.9
DATE_AFTER_SHARE = 0.5
#: Out-of-fold target encoding of categoricals: folds (by row position) and smoothing towards the prior (rows).
FOLDS = 5
SMOOTHING = 10.0
_NULL = "\x00null"


@dataclass(frozen=True)
class Finding:
    """One suspicious column: the rule that caught it, why, its single-feature AUC, and whether it is allowed."""

    column: str
    rule: str
    reason: str
    auc: float | None
    allowed: bool
    measures: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LeakError(BadInput):
    """Features the guard refuses (bad input: exit 2); the message names each and says how to override."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        refused = [f for f in findings if not f.allowed]
        lines = [f"  {f.column}: {f.reason} (rule {f.rule})" for f in refused]
        super().__init__(
            None,
            f"leak guard refused {len(refused)} feature column(s):\n" + "\n".join(lines) + "\n"
            "If a column is really known at decision time, add it to featurize.leak_allow in params.yaml; "
            "if it is filled in after the outcome, drop it in the source mapping (drop_leaky)."
        )


@dataclass(frozen=True)
class Rows:
    """One split's rows for the guard: the frame, its 0/1 labels, and its name in messages."""

    frame: pl.DataFrame
    y: np.ndarray
    name: str


def find_leaks(
    frame: pl.DataFrame,
    label: pl.Series | np.ndarray,
    spec: Mapping[str, Any],
    *,
    auc_max: float,
    allow: Iterable[str] = (),
    after_outcome: Iterable[str] = (),
    valid: pl.DataFrame | None = None,
    valid_label: pl.Series | np.ndarray | None = None,
    t0: str | None = None,
) -> list[Finding]:
    """Check every spec feature on the train rows (`frame`, `label`) and the valid rows; raise LeakError if any
    finding is not allowed, else return the (allowed) findings. `t0` names the decision-time column the date rule
    compares with (the rule is skipped without it).

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
    parts = [Rows(frame, _labels(label, frame.height), "train")]
    if valid is not None and valid_label is not None:
        parts.append(Rows(valid, _labels(valid_label, valid.height), "valid"))
    findings: list[Finding] = []
    for f in spec["features"]:
        name = f["name"]
        categorical = f["kind"] == CATEGORICAL
        sources = {name, f.get("source_column", name)}
        # Event features are point in time by construction (events before t0 only): "missing" there means "no such
        # event yet", a legitimate signal. The presence rules are for the export's own columns.
        own_column = "source_column" in f
        aucs = {p.name: (encoded_auc(parts[0], p, name) if categorical else
                         single_feature_auc(p.frame[name], p.y, categorical=False)) for p in parts}
        auc = _max(aucs.values())
        found = (_after_outcome(sources & late)
                 or (_date_after_t0(parts, name, t0) if categorical and t0 else None)
                 or (_free_text(parts[0].frame[name]) if categorical else None)
                 or (_presence(parts, name) if own_column else None)
                 or (_missingness(parts, name, auc_max) if own_column else None)
                 or _value_auc(aucs, auc_max, categorical=categorical))
        if found is not None:
            rule, reason, measures = found
            findings.append(Finding(name, rule, reason, auc, name in allowed,
                                    {**{f"auc_{k}": v for k, v in aucs.items()}, **measures}))
    if any(not f.allowed for f in findings):
        raise LeakError(findings)
    return findings


def closest_to_limit(frame: pl.DataFrame, label: pl.Series | np.ndarray, spec: Mapping[str, Any], *,
                     top: int = 5) -> dict[str, float]:
    """The `top` columns with the highest single-feature AUC on train (out of fold for categoricals), for the report:
    how close the legitimate columns come to featurize.leak_auc_max."""
    rows = Rows(frame, _labels(label, frame.height), "train")
    aucs: dict[str, float] = {}
    for f in spec["features"]:
        name = f["name"]
        value = (encoded_auc(rows, rows, name) if f["kind"] == CATEGORICAL
                 else single_feature_auc(frame[name], rows.y, categorical=False))
        if value is not None:
            aucs[name] = value
    return dict(sorted(aucs.items(), key=lambda kv: (-kv[1], kv[0]))[:top])


def single_feature_auc(values: pl.Series, y: np.ndarray, *, categorical: bool) -> float | None:
    """How well one column alone ranks converters above the rest (0.5: not at all, 1: perfectly), in sample.

    Numeric: max(AUC, 1 - AUC) with missing ranked as its own lowest value. Categorical: AUC of the per-category
    rate on the same rows (in sample: see `encoded_auc` for the honest version). None when y has a single class.

    Examples
    --------
    >>> single_feature_auc(pl.Series([None, 1.0, 5.0]), np.array([0, 0, 1]), categorical=False)
    1.0
    """
    if categorical:
        score = _category_rate(values, y)
    else:
        x = values.cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64, copy=False)
        score = np.where(np.isnan(x), -np.inf, x)  # missing is its own value, below every real one
    auc = _auc(score, y)
    return None if auc is None else float(round(max(auc, 1.0 - auc), 6))


def encoded_auc(train: Rows, rows: Rows, name: str) -> float | None:
    """AUC of a categorical's smoothed target rate: out of fold when `rows` is `train`, else encoded from train.

    Not flipped below 0.5: an encoding learnt on other rows that ranks backwards is noise, not signal.

    Examples
    --------
    >>> ids = pl.Series([f"id{i}" for i in range(40)])  # every value unique: nothing to learn out of fold
    >>> r = Rows(pl.DataFrame({"c": ids}), np.array([0, 1] * 20), "train")
    >>> encoded_auc(r, r, "c")
    0.5
    """
    if rows is train:
        score = _out_of_fold_rate(train.frame[name], train.y)
    else:
        score = _encode(train.frame[name], train.y, rows.frame[name])
    auc = _auc(score, rows.y)
    return None if auc is None else float(round(auc, 6))


# ---------------------------------------------------------------- the rules (None: the rule does not fire)

Hit = tuple[str, str, dict[str, float | None]]


def _after_outcome(marked: set[str]) -> Hit | None:
    if not marked:
        return None
    why = f"marked after the outcome by the source mapping (after_outcome: {sorted(marked)[0]})"
    return AFTER_OUTCOME_RULE, why, {}


def _date_after_t0(parts: list[Rows], name: str, t0: str) -> Hit | None:
    frame = pl.concat([p.frame.select(name, t0) for p in parts])
    text = frame[name].cast(pl.String)
    present = int(text.is_not_null().sum())
    if present < FREE_TEXT_MIN_VALUES // 3:
        return None
    dates = _dates(text)
    parsed = int(dates.is_not_null().sum())
    if parsed < DATE_PARSE_SHARE * present:
        return None
    after = float((dates > frame[t0]).fill_null(False).sum()) / parsed
    if after < DATE_AFTER_SHARE:
        return None
    return (DATE_RULE, f"its values are dates, after the lead's decision time t0 for {after:.0%} of the leads that "
            f"have one (limit {DATE_AFTER_SHARE:.0%}): recorded after the decision, so an after-outcome column",
            {"share_after_t0": round(after, 4)})


def _free_text(values: pl.Series) -> Hit | None:
    text = values.cast(pl.String).drop_nulls()
    if text.len() < FREE_TEXT_MIN_VALUES:
        return None
    counts = text.value_counts()
    once = int((counts["count"] == 1).sum())
    share = once / text.len()
    if share <= FREE_TEXT_UNIQUE_SHARE:
        return None
    what = "dates" if _parsed_dates(text) >= DATE_PARSE_SHARE * text.len() else "free text"
    return (FREE_TEXT_RULE, f"{what}: {share:.0%} of its {text.len():,} values occur once (limit "
            f"{FREE_TEXT_UNIQUE_SHARE:.0%}), so as a category it can only be memorised; derive a category or a "
            "number from it in the mapping (e.g. parse: seniority for a job title) or drop it",
            {"unique_share": round(share, 4)})


def _presence(parts: list[Rows], name: str) -> Hit | None:
    for p in parts:
        present = ~_missing(p.frame[name]).to_numpy()
        pos, neg = p.y == 1, p.y == 0
        if not pos.any() or not neg.any():
            continue
        share = {"converters": float(present[pos].mean()), "non-converters": float(present[neg].mean())}
        size = {"converters": int(pos.sum()), "non-converters": int(neg.sum())}
        for rare, common in (("non-converters", "converters"), ("converters", "non-converters")):
            if (share[rare] < PRESENCE_RARE and share[common] >= PRESENCE_COMMON
                    and share[common] * size[rare] >= PRESENCE_MIN_EXPECTED):
                return (PRESENCE_RULE, f"present almost only for {common}: non-null for {share[rare]:.1%} of "
                        f"{rare} but {share[common]:.1%} of {common} on {p.name} (rule: non-null for < "
                        f"{PRESENCE_RARE:.0%} of one class and >= {PRESENCE_COMMON:.0%} of the other), as when it "
                        "is copied from a won-deals table",
                        {f"present_{p.name}_converters": round(share["converters"], 4),
                         f"present_{p.name}_non_converters": round(share["non-converters"], 4)})
    return None


def _missingness(parts: list[Rows], name: str, auc_max: float) -> Hit | None:
    for p in parts:
        missing = _missing(p.frame[name])
        if not missing.any() or missing.all():
            continue
        auc = _auc(missing.cast(pl.Float64).to_numpy(), p.y)
        if auc is not None and max(auc, 1 - auc) > auc_max:
            value = max(auc, 1 - auc)
            return (MISSING_AUC_RULE, f"whether it is missing alone gives an AUC of {value:.4f} on {p.name} > "
                    f"{auc_max}", {f"missing_auc_{p.name}": round(value, 6)})
    return None


def _value_auc(aucs: Mapping[str, float | None], auc_max: float, *, categorical: bool) -> Hit | None:
    over = {k: v for k, v in aucs.items() if v is not None and v > auc_max}
    if not over:
        return None
    where = " and ".join(f"on {k}{' (out of fold)' if categorical and k == 'train' else ''} = {v:.4f}"
                         for k, v in over.items())
    return AUC_RULE, f"single-feature AUC {where} > {auc_max}", {}


# ---------------------------------------------------------------- helpers


def _labels(label: pl.Series | np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(label, dtype=np.float64)
    if len(y) != n:
        raise ValueError(f"label has {len(y)} rows, frame has {n}")
    return y


def _auc(score: np.ndarray, y: np.ndarray) -> float | None:
    positives = int(np.sum(y == 1))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = pl.Series(score).rank("average").to_numpy()
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _dates(text: pl.Series) -> pl.Series:
    """Text parsed as UTC timestamps where it looks like dates (null elsewhere)."""
    return text.str.to_datetime(strict=False, time_zone="UTC", time_unit="us")


def _parsed_dates(text: pl.Series) -> int:
    return int(_dates(text).is_not_null().sum())


def _missing(values: pl.Series) -> pl.Series:
    """Null, or NaN in a float column."""
    missing = values.is_null()
    return missing | values.is_nan().fill_null(False) if values.dtype.is_float() else missing


def _max(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _keys(values: pl.Series) -> pl.Series:
    return values.cast(pl.String).fill_null(_NULL)


def _category_rate(values: pl.Series, y: np.ndarray) -> np.ndarray:
    frame = pl.DataFrame({"v": _keys(values), "y": y})
    return frame.select(pl.col("y").mean().over("v")).to_series().to_numpy()


def _encode(train_values: pl.Series, y: np.ndarray, values: pl.Series) -> np.ndarray:
    """Smoothed train rate of each value's category (unseen categories get the train rate)."""
    prior = float(y.mean()) if y.size else 0.5
    table = (pl.DataFrame({"v": _keys(train_values), "y": y}).group_by("v")
             .agg(((pl.col("y").sum() + SMOOTHING * prior) / (pl.len() + SMOOTHING)).alias("rate")))
    looked = pl.DataFrame({"v": _keys(values)}).join(table, on="v", how="left", maintain_order="left")
    return looked["rate"].fill_null(prior).to_numpy()


def _out_of_fold_rate(values: pl.Series, y: np.ndarray) -> np.ndarray:
    fold = np.arange(len(y)) % FOLDS
    out = np.empty(len(y))
    for k in range(FOLDS):
        held = fold == k
        if not held.any():
            continue
        mask = pl.Series(~held)
        out[held] = _encode(values.filter(mask), y[~held], values.filter(pl.Series(held)))
    return out
