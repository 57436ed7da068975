"""`calibrate` stage: calibrate probabilities on the valid split and choose the handoff threshold.

The calibrator is fitted on the held-out valid margins written by `train` (from the booster that did not see valid),
so it stays honest when the final model was refit on train + valid.

Calibrate completes the bundle (model, feature spec, calibrator, threshold), so it also seals it: `manifest.json`
beside them holds the sha256 of every bundle file, which every loader checks before parsing anything.

Paths come from dvc.yaml (`python -m pipelines.calibrate --features ... --model ... --spec ... --calibrator ...
--threshold ... --train-run ... --valid-margins ... --run ... --manifest ...`); params from the `calibrate` section
and `base`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
from scipy.special import expit

from features.schema import LEGACY_SCORE, T0, has_legacy_score
from features.spec import to_matrix
from models.bundle import MANIFEST
from models.calibration import fit_calibrator, percentile_reference, to_score
from models.metrics import ece
from models.threshold import (
    LEGACY_CUTOFFS,
    bootstrap_interval,
    choose_threshold,
    on_score_scale,
    period_weeks,
    policy_inputs,
    threshold_score,
)
from pipelines import tracking
from pipelines.bundle import load_booster, write_manifest
from pipelines.io import BadInput, exit_codes, load_params, read_frame, read_json, stage_args, write_json


def held_out_margin(valid: pl.DataFrame, valid_margins: pl.DataFrame) -> np.ndarray:
    """The valid rows' held-out margins, in `valid`'s row order; every valid lead must have one."""
    joined = valid.select("lead_id").join(valid_margins, on="lead_id", how="left", maintain_order="left")
    missing = joined["margin"].null_count()
    if missing or joined.height != valid.height:
        raise ValueError(
            f"valid margins do not match the valid split: {missing} of {valid.height} valid leads have none"
        )
    return joined["margin"].to_numpy().astype(np.float64)


def run(frame: pl.DataFrame, booster: lgb.Booster, spec: dict[str, Any], params: dict[str, Any],
        valid_margins: pl.DataFrame | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (calibrator.json, threshold.json) contents.

    `valid_margins` (lead_id, margin) are held-out raw scores on valid; without them the booster's own are used,
    which is only honest when the booster was not fitted on valid.
    """
    valid = frame.filter(pl.col("split") == "valid")
    train = frame.filter(pl.col("split") == "train")
    y = valid["label"].to_numpy().astype(np.float64)
    if valid_margins is None:
        margin = booster.predict(to_matrix(valid, spec), raw_score=True)
    else:
        margin = held_out_margin(valid, valid_margins)
    calibrator = fit_calibrator(
        margin, y, method=params["method"], min_positives_isotonic=int(params["min_positives_isotonic"])
    )
    p = calibrator.predict(margin)
    p_train = calibrator.predict(booster.predict(to_matrix(train, spec), raw_score=True))
    weeks = period_weeks(valid[T0])
    legacy_handoffs = int((valid[LEGACY_SCORE] >= LEGACY_CUTOFFS[0]).sum()) if has_legacy_score(valid) else None
    inputs = policy_inputs(params)
    kwargs = dict(policy=params["policy"], weeks=weeks, legacy_handoffs=legacy_handoffs, **inputs)
    p_score = on_score_scale(p)
    t = float(choose_threshold(y, p_score, **kwargs))
    lo, hi = bootstrap_interval(y, p_score, n=int(params["bootstrap"]), seed=int(params["base"]["seed"]), level=0.9,
                                **kwargs)
    calib = {
        "calibrator": calibrator.to_dict(),
        "reference": [float(v) for v in percentile_reference(p_train)],
        "valid_ece_uncalibrated": ece(y, expit(margin)),
        "valid_ece_in_sample": ece(y, p),
        "valid_positives": int(y.sum()),
    }
    threshold = {
        "policy": params["policy"],
        "inputs": {**inputs, "legacy_handoffs_valid": legacy_handoffs, "valid_weeks": round(weeks, 4)},
        "threshold_probability": t,
        "threshold_score": threshold_score(t),
        "interval_90": {"probability": [float(lo), float(hi)], "score": [threshold_score(lo), threshold_score(hi)]},
        "expected_handoffs_per_week": float((to_score(p) >= threshold_score(t)).sum() / weeks),
        "chosen_on": "valid",
        "method": calibrator.method,
    }
    return calib, threshold


def log_calibration(params: dict[str, Any], calib: dict[str, Any], threshold: dict[str, Any], files: list[Path],
                    train_run: dict[str, str]) -> dict[str, str]:
    """Each calibration (each threshold experiment) is its own MLflow run, nested under its training run."""
    import mlflow

    tracking.set_experiment()
    with mlflow.start_run(run_name=f"calibrate-{threshold['policy']}", parent_run_id=train_run["run_id"],
                          tags={"leadlift.training_run_id": train_run["run_id"], "leadlift.stage": "calibrate"}) as run:
        mlflow.log_params(tracking.flatten({"calibrate": {k: v for k, v in params.items() if k != "base"}}))
        mlflow.log_metrics({
            "threshold_probability": threshold["threshold_probability"],
            "threshold_score": threshold["threshold_score"],
            "expected_handoffs_per_week": threshold["expected_handoffs_per_week"],
            "valid_ece_in_sample": calib["valid_ece_in_sample"],
            "valid_ece_uncalibrated": calib["valid_ece_uncalibrated"],
        })
        for f in files:
            mlflow.log_artifact(str(f), artifact_path="calibration")
        return {"run_id": run.info.run_id, "training_run_id": train_run["run_id"]}


@exit_codes
def main(argv: list[str] | None = None) -> None:
    args = stage_args(argv, __doc__, "features", "model", "spec", "calibrator", "threshold", "train-run",
                      "valid-margins", "run", "manifest")
    if args.manifest.name != MANIFEST:
        raise BadInput(args.manifest, f"the bundle manifest must be named {MANIFEST} (loaders look for that name)")
    params = load_params("calibrate", args.params)
    frame = read_frame(args.features)
    calib, threshold = run(frame, load_booster(args.model), read_json(args.spec), params,
                           read_frame(args.valid_margins))
    write_json(args.calibrator, calib)
    write_json(args.threshold, threshold)
    write_manifest(args.manifest.parent)  # calibrate completes the bundle: seal it
    run_info = log_calibration(params, calib, threshold, [args.calibrator, args.threshold], read_json(args.train_run))
    write_json(args.run, run_info)
    lo, hi = threshold["interval_90"]["score"]
    print(
        f"calibrate: {calib['calibrator']['method']} (valid ECE {calib['valid_ece_uncalibrated']:.3f} -> "
        f"{calib['valid_ece_in_sample']:.3f}); policy {threshold['policy']}: "
        f"hand off at score >= {threshold['threshold_score']} "
        f"(90% interval {lo}-{hi}), ~{threshold['expected_handoffs_per_week']:.1f} handoffs/week"
    )


if __name__ == "__main__":
    main()
