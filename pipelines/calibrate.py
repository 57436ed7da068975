"""`calibrate` stage: choose the handoff threshold on the valid split's calibrated probabilities, and seal the bundle.

The policy (`calibrate.policy`: expected value, rep capacity, a precision or recall target, or the legacy rule's
volume) picks the threshold on valid, where the model was not fitted, from the held-out margins `train` wrote and the
calibrator the `calibrator` stage fitted on them; a bootstrap over the valid leads gives its interval.

Calibrate completes the bundle (model, scorer, feature spec, calibrator, threshold), so it also seals it:
`manifest.json` beside them holds the sha256 of every bundle file, which every loader checks before parsing anything.

This is what a threshold experiment (`dvc exp run -S calibrate.policy=capacity ...`) re-runs first, so it stays
light: no model, no LightGBM, scikit-learn, numba or MLflow (the experiment's MLflow run is written by `evaluate`,
once its results are known).

Paths come from dvc.yaml (`python -m pipelines.calibrate --features ... --valid-margins ... --scorer ...
--calibrator ... --threshold ... --manifest ...`); params from the `calibrate` section and `base`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.build import SPLIT
from features.schema import LEGACY_SCORE, T0, has_legacy_score
from models.bundle import LIGHTGBM, MANIFEST
from models.calibration import Calibrator, to_score
from models.threshold import (
    LEGACY_CUTOFFS,
    bootstrap_interval,
    choose_threshold,
    on_score_scale,
    period_weeks,
    policy_inputs,
    threshold_score,
)
from pipelines.bundle import write_manifest
from pipelines.calibrator import calibrator_summary, held_out_margin
from pipelines.io import BadInput, exit_codes, load_params, read_frame, read_json, stage_args, write_json

#: Keys that left this section when the calibrator fit became its own stage (`calibrator`).
MOVED_TO_CALIBRATOR = ("method", "min_positives_isotonic")


def check_moved_params(params: dict[str, Any], where: str | Path | None) -> None:
    """A calibrator key still under `calibrate` would be silently ignored: refuse it, saying where it lives now."""
    moved = [k for k in MOVED_TO_CALIBRATOR if k in params]
    if moved:
        raise BadInput(where, "; ".join(f"calibrate.{k} is now calibrator.{k} (the calibrator is fitted by its own "
                                        "stage): move it to the calibrator section" for k in moved))


def run(frame: pl.DataFrame, calib: dict[str, Any], params: dict[str, Any], valid_margins: pl.DataFrame, *,
        model: str = LIGHTGBM) -> dict[str, Any]:
    """threshold.json: the threshold `params["policy"]` picks on valid's calibrated probabilities (calibrator.json
    `calib` applied to the held-out `valid_margins`), its bootstrap interval, and the handoffs a week it implies.
    `model` is the scoring model's kind (scorer.json), recorded beside the threshold."""
    valid = frame.filter(pl.col(SPLIT) == "valid")
    y = valid["label"].to_numpy().astype(np.float64)
    calibrator = Calibrator.from_dict(calib["calibrator"])
    p = calibrator.predict(held_out_margin(valid, valid_margins))
    weeks = period_weeks(valid[T0])
    legacy_handoffs = int((valid[LEGACY_SCORE] >= LEGACY_CUTOFFS[0]).sum()) if has_legacy_score(valid) else None
    inputs = policy_inputs(params)
    kwargs = dict(policy=params["policy"], weeks=weeks, legacy_handoffs=legacy_handoffs, **inputs)
    p_score = on_score_scale(p)
    t = float(choose_threshold(y, p_score, **kwargs))
    lo, hi = bootstrap_interval(y, p_score, n=int(params["bootstrap"]), seed=int(params["base"]["seed"]), level=0.9,
                                **kwargs)
    return {
        "policy": params["policy"],
        "inputs": {**inputs, "legacy_handoffs_valid": legacy_handoffs, "valid_weeks": round(weeks, 4)},
        "threshold_probability": t,
        "threshold_score": threshold_score(t),
        "interval_90": {"probability": [float(lo), float(hi)], "score": [threshold_score(lo), threshold_score(hi)]},
        "expected_handoffs_per_week": float((to_score(p) >= threshold_score(t)).sum() / weeks),
        "chosen_on": "valid",
        "method": calibrator.method,
        "model": model,
    }


@exit_codes
def main(argv: list[str] | None = None) -> None:
    args = stage_args(argv, __doc__, "features", "valid-margins", "scorer", "calibrator", "threshold", "manifest")
    if args.manifest.name != MANIFEST:
        raise BadInput(args.manifest, f"the bundle manifest must be named {MANIFEST} (loaders look for that name)")
    params = load_params("calibrate", args.params)
    check_moved_params(params, args.params)
    frame = read_frame(args.features)
    valid_margins = read_frame(args.valid_margins)
    calib = read_json(args.calibrator)
    threshold = run(frame, calib, params, valid_margins, model=read_json(args.scorer).get("kind", LIGHTGBM))
    write_json(args.threshold, threshold)
    write_manifest(args.manifest.parent)  # calibrate completes the bundle: seal it
    print(calibrate_summary(calib, threshold))


def calibrate_summary(calib: dict[str, Any], threshold: dict[str, Any]) -> str:
    """One line: the calibration the threshold was chosen on, and the threshold."""
    lo, hi = threshold["interval_90"]["score"]
    return (f"calibrate: {calibrator_summary(calib)}; policy {threshold['policy']}: hand off at score >= "
            f"{threshold['threshold_score']} (90% interval {lo}-{hi}), ~{threshold['expected_handoffs_per_week']:.1f} "
            "handoffs/week")


if __name__ == "__main__":
    main()
