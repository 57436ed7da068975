"""Target timing: when conversions happen relative to the decision time, and whether the label can see them.

The label is "converted within horizon_days after t0 = created_at + observation_days". A conversion before t0 is out
of scope (excluded), one after the horizon is counted as a loss, and one whose window runs past the snapshot is
censored. When the export's conversions mostly fall outside the window, the model learns from a sliver of them and
counts the rest as losses, and nothing downstream can tell. So featurize measures the conversion lag from creation,
reports where the conversions fall, and stops (exit 2) when too many are lost, naming `base.observation_days` and
`base.horizon_days` with values computed from the lags that pass the same check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from features.errors import BadInput
from features.schema import CONVERTED, CONVERTED_AT, CREATED_AT, DAY_US, LEAD_ID, TS, utc

#: Lag quantiles reported (share of conversions with a known time converted within the lag).
LAG_QUANTILES: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
#: Where a conversion falls for a given observation window and horizon (label_leads' rules, conversion by conversion).
BEFORE_T0 = "before_t0"
WITHIN = "within_horizon"
AFTER = "after_horizon"
CENSORED = "censored"
PLACES: tuple[str, ...] = (BEFORE_T0, WITHIN, AFTER, CENSORED)
#: A suggestion must clear the limit by this factor, so a slightly different export with the same lags passes too.
SUGGESTION_MARGIN = 0.8
#: Lag quantiles tried as observation windows and as window ends when suggesting values.
_OBSERVATION_LEVELS: tuple[float, ...] = (0.2, 0.1, 0.05, 0.02, 0.0)
_END_LEVELS: tuple[float, ...] = (0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99)


@dataclass(frozen=True)
class Conversions:
    """Every converted lead's creation time and conversion time (None where the export has no time for it)."""

    created_us: np.ndarray
    converted_us: np.ndarray
    has_time: np.ndarray
    snapshot_us: int

    @property
    def lag_days(self) -> np.ndarray:
        """Days from creation to conversion, for conversions with a known time."""
        return (self.converted_us[self.has_time] - self.created_us[self.has_time]) / DAY_US


def conversions(leads: pl.LazyFrame, outcomes: pl.LazyFrame, *, snapshot_at: datetime) -> Conversions:
    """The converted leads, as label_leads sees them (leads missing from outcomes did not convert)."""
    frame = (
        leads.select(LEAD_ID, pl.col(CREATED_AT).cast(TS))
        .join(outcomes.select(LEAD_ID, pl.col(CONVERTED).cast(pl.Boolean), pl.col(CONVERTED_AT).cast(TS)),
              on=LEAD_ID, how="inner")
        .filter(pl.col(CONVERTED).fill_null(False))
        .select(pl.col(CREATED_AT).dt.epoch("us"), pl.col(CONVERTED_AT).dt.epoch("us"))
        .collect()
    )
    at = frame[CONVERTED_AT]
    return Conversions(
        created_us=frame[CREATED_AT].to_numpy().astype(np.int64),
        converted_us=at.fill_null(0).to_numpy().astype(np.int64),
        has_time=at.is_not_null().to_numpy(),
        snapshot_us=int(pl.Series([utc(snapshot_at)], dtype=TS).dt.epoch("us")[0]),
    )


def places(conv: Conversions, *, observation_days: int, horizon_days: int) -> dict[str, int]:
    """How many conversions fall before t0, within the horizon, after it, or in a censored window.

    The same rules as label_leads: before t0 wins; then a window that ends after the snapshot (or a conversion with no
    time) is censored; the rest is within [t0, t0 + H) or after it.
    """
    t0 = conv.created_us + observation_days * DAY_US
    end = t0 + horizon_days * DAY_US
    timed = conv.has_time
    before = timed & (conv.converted_us < t0)
    censored = ~before & ((end > conv.snapshot_us) | ~timed)
    within = ~before & ~censored & (conv.converted_us < end)
    after = ~before & ~censored & ~within
    return {BEFORE_T0: int(before.sum()), WITHIN: int(within.sum()), AFTER: int(after.sum()),
            CENSORED: int(censored.sum())}


def lost_share(counts: dict[str, int]) -> float | None:
    """Share of the decided conversions (not censored) that the label cannot see: before t0 or after the horizon."""
    decided = counts[BEFORE_T0] + counts[WITHIN] + counts[AFTER]
    return (counts[BEFORE_T0] + counts[AFTER]) / decided if decided else None


def timing_report(conv: Conversions, *, observation_days: int, horizon_days: int) -> dict[str, Any]:
    """Lag quantiles (days from creation) and where the conversions fall, as counts and shares of all conversions."""
    counts = places(conv, observation_days=observation_days, horizon_days=horizon_days)
    total = sum(counts.values())
    lags = conv.lag_days
    return {
        "conversions": total,
        "conversions_with_time": int(lags.size),
        "lag_days_quantiles": ({f"p{round(100 * q):02d}": round(float(v), 2)
                                for q, v in zip(LAG_QUANTILES, np.quantile(lags, LAG_QUANTILES), strict=True)}
                               if lags.size else {}),
        "counts": counts,
        "shares": {k: round(v / total, 4) if total else None for k, v in counts.items()},
        "lost_share": _round(lost_share(counts)),
        "observation_days": int(observation_days),
        "horizon_days": int(horizon_days),
    }


def suggest(conv: Conversions, *, max_lost_share: float, min_positives: int = 0) -> tuple[int, int] | None:
    """(observation_days, horizon_days) computed from the lag quantiles whose lost share clears the limit.

    Candidates: observation windows at low lag quantiles (down to 0: decide at creation) and window ends at high
    ones; each pair is checked with the same rules as the data's labels (censoring included), must lose at most
    SUGGESTION_MARGIN x the limit and keep at least `min_positives` conversions within the horizon. Of those, the
    one that keeps the most conversions as positives wins. None when no pair does.
    """
    lags = conv.lag_days
    if lags.size == 0:
        return None
    obs_options = sorted({max(0, math.floor(float(np.quantile(lags, q)))) for q in _OBSERVATION_LEVELS} | {0},
                         reverse=True)
    best: tuple[int, int, int] | None = None
    for obs in obs_options:
        for level in _END_LEVELS:
            horizon = max(1, math.ceil(float(np.quantile(lags, level))) - obs + 1)
            counts = places(conv, observation_days=obs, horizon_days=horizon)
            lost = lost_share(counts)
            if lost is None or lost > SUGGESTION_MARGIN * max_lost_share or counts[WITHIN] < min_positives:
                continue
            if best is None or counts[WITHIN] > best[0]:
                best = (counts[WITHIN], obs, horizon)
    return None if best is None else (best[1], best[2])


class TimingError(BadInput):
    """Too many conversions fall outside the label's window (bad input for these params: exit 2)."""


def check_timing(conv: Conversions, report: dict[str, Any], *, max_lost_share: float, min_positives: int = 0) -> None:
    """Raise TimingError, naming both params and values that pass, when the lost share is above the limit."""
    lost = report["lost_share"]
    if lost is None or lost <= max_lost_share:
        return
    counts, obs, horizon = report["counts"], report["observation_days"], report["horizon_days"]
    quantiles = ", ".join(f"{k} {v:g}" for k, v in report["lag_days_quantiles"].items())
    advice = suggest(conv, max_lost_share=max_lost_share, min_positives=min_positives)
    fix = (f"try base: {{observation_days: {advice[0]}, horizon_days: {advice[1]}}} in params.yaml (or the mapping's "
           "params), which loses "
           f"{_pct(lost_share(places(conv, observation_days=advice[0], horizon_days=advice[1])))} on this export"
           if advice else "no observation window and horizon computed from the lags keep enough of them; check the "
           "conversion times against the creation times")
    raise TimingError(
        None,
        f"{_pct(lost)} of the decided conversions fall outside the label's window (limit "
        f"featurize.max_lost_conversion_share = {max_lost_share:g}): {counts[BEFORE_T0]:,} converted before t0 = "
        f"created_at + base.observation_days ({obs}) and are excluded, {counts[AFTER]:,} converted after "
        f"base.horizon_days ({horizon}) and count as losses, {counts[WITHIN]:,} are positives "
        f"({counts[CENSORED]:,} more censored). Days from creation to conversion: {quantiles}. {fix}.",
    )


def check_train_positives(positives: int, *, minimum: int, train_rows: int) -> None:
    """Too few conversions to learn from is bad input, not a one-tree model that hands nobody off."""
    if positives < minimum:
        raise BadInput(
            None,
            f"the train split has {positives:,} conversions among {train_rows:,} leads, fewer than "
            f"featurize.min_train_positives ({minimum}); a model fitted on so few learns nothing useful. Check the "
            "target timing above (base.observation_days, base.horizon_days), give the train split a larger share "
            "(featurize.split), or bring a longer export.",
        )


def check_split_conversions(counts: dict[str, tuple[int, int]], *, min_valid_positives: int) -> None:
    """Valid must hold at least `min_valid_positives` conversions and some leads that did not convert (calibration,
    the threshold and the model are chosen on it), and test both classes (its figures need them). `counts`: split ->
    (rows, positives). A minimum of 0 skips both checks.
    """
    if min_valid_positives <= 0:
        return
    rows, positives = counts.get("valid", (0, 0))
    if positives < min_valid_positives or positives == rows:
        raise BadInput(None, f"the valid split has {positives:,} conversions among {rows:,} leads; calibration, the "
                             f"threshold and the model choice need at least featurize.min_valid_positives "
                             f"({min_valid_positives}) and some leads that did not convert. Give valid a larger share "
                             "(featurize.split) or check the target timing.")
    rows, positives = counts.get("test", (0, 0))
    if positives == 0 or positives == rows:
        raise BadInput(None, f"the test split has {positives:,} conversions among {rows:,} leads: its figures need "
                             "both converted and not-converted leads. Give test a larger share (featurize.split).")


def timing_lines(report: dict[str, Any]) -> list[str]:
    """The timing report in plain words, for the console."""
    if not report.get("has_outcome_times", True):
        return ["target timing: the export has no conversion times, so every lead is in scope and the label is "
                "whether it converted at all"]
    if not report.get("conversions"):
        return ["target timing: no conversions"]
    s, c = report["shares"], report["counts"]
    q = report["lag_days_quantiles"]
    lags = ", ".join(f"{k} {v:g}" for k, v in q.items()) if q else "no conversion times"
    return [
        f"target timing: {report['conversions']:,} conversions; days from creation to conversion: {lags}",
        f"  before t0 (excluded) {c[BEFORE_T0]:,} ({_pct(s[BEFORE_T0])}), within the {report['horizon_days']}-day "
        f"horizon {c[WITHIN]:,} ({_pct(s[WITHIN])}), after it (counted as losses) {c[AFTER]:,} ({_pct(s[AFTER])}), "
        f"censored {c[CENSORED]:,} ({_pct(s[CENSORED])}); lost share of decided conversions "
        f"{_pct(report['lost_share'])}",
    ]


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


__all__ = ["PLACES", "Conversions", "TimingError", "check_split_conversions", "check_timing", "check_train_positives",
           "conversions",
           "lost_share", "places", "suggest", "timing_lines", "timing_report"]
