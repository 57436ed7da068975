"""`calibrate` stage: calibrate probabilities on the valid split and choose the handoff threshold.

The calibrator is fitted on the held-out valid margins written by `train` (from the chosen model's fits that did not
see valid), so it stays honest when the final model was refit on train + valid. The method (none, sigmoid or
isotonic) is chosen by cross-fitted log loss on valid, and only held-out figures are reported.

Calibrate completes the bundle (model, scorer, feature spec, calibrator, threshold), so it also seals it:
`manifest.json` beside them holds the sha256 of every bundle file, which every loader checks before parsing anything.

Paths come from dvc.yaml (`python -m pipelines.calibrate --features ... --model ... --scorer ... --spec ...
--calibrator ... --threshold ... --train-run ... --valid-margins ... --run ... --manifest ...`); params from the
`calibrate` section and `base`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.schema import LEGACY_SCORE, T0, has_legacy_score
from features.spec import to_matrix
from models.bundle import MANIFEST, Scorer, scorer_from_dict
from models.calibration import choose_calibrator, percentile_reference, to_score
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


def run(frame: pl.DataFrame, scorer: Scorer, spec: dict[str, Any], params: dict[str, Any],
        valid_margins: pl.DataFrame | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (calibrator.json, threshold.json) contents.

    `valid_margins` (lead_id, margin) are held-out raw scores on valid; without them the scorer's own are used,
    which is only honest when the model was not fitted on valid.
    """
    valid = frame.filter(pl.col("split") == "valid")
    train = frame.filter(pl.col("split") == "train")
    y = valid["label"].to_numpy().astype(np.float64)
    if valid_margins is None:
        margin = scorer.margin(to_matrix(valid, spec))
    else:
        margin = held_out_margin(valid, valid_margins)
    calibrator, chosen = choose_calibrator(
        margin, y, method=params["method"], min_positives_isotonic=int(params["min_positives_isotonic"])
    )
    p = calibrator.predict(margin)
    p_train = calibrator.predict(scorer.margin(to_matrix(train, spec)))
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
        # Held out: each valid lead scored by a calibrator fitted on the other folds (never in sample).
        "choice": chosen,
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
        "model": scorer.kind,
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
        mlflow.set_tag("leadlift.calibration", calib["calibrator"]["method"])
        mlflow.log_metrics({
            "threshold_probability": threshold["threshold_probability"],
            "threshold_score": threshold["threshold_score"],
            "expected_handoffs_per_week": threshold["expected_handoffs_per_week"],
            **tracking.numeric_metrics({"valid_held_out": calib["choice"]["held_out"]}),
        })
        for f in files:
            mlflow.log_artifact(str(f), artifact_path="calibration")
        return {"run_id": run.info.run_id, "training_run_id": train_run["run_id"]}


@exit_codes
def main(argv: list[str] | None = None) -> None:
    args = stage_args(argv, __doc__, "features", "model", "scorer", "spec", "calibrator", "threshold", "train-run",
                      "valid-margins", "run", "manifest")
    if args.manifest.name != MANIFEST:
        raise BadInput(args.manifest, f"the bundle manifest must be named {MANIFEST} (loaders look for that name)")
    params = load_params("calibrate", args.params)
    frame = read_frame(args.features)
    scorer = scorer_from_dict(read_json(args.scorer), load_booster(args.model))
    calib, threshold = run(frame, scorer, read_json(args.spec), params, read_frame(args.valid_margins))
    write_json(args.calibrator, calib)
    write_json(args.threshold, threshold)
    write_manifest(args.manifest.parent)  # calibrate completes the bundle: seal it
    run_info = log_calibration(params, calib, threshold, [args.calibrator, args.threshold], read_json(args.train_run))
    write_json(args.run, run_info)
    print(calibrate_summary(calib, threshold))


def calibrate_summary(calib: dict[str, Any], threshold: dict[str, Any]) -> str:
    """One line: the method chosen, the held-out figures it was chosen on, and the threshold."""
    held = calib["choice"]["held_out"]
    figures = ", ".join(f"{k} log loss {v['log_loss']:.4f} / ECE {v['ece']:.3f}" for k, v in held.items())
    lo, hi = threshold["interval_90"]["score"]
    return (f"calibrate: {calib['calibrator']['method']} ({calib['choice']['chosen_by']}; cross-fitted on valid: "
            f"{figures}); policy {threshold['policy']}: hand off at score >= {threshold['threshold_score']} "
            f"(90% interval {lo}-{hi}), ~{threshold['expected_handoffs_per_week']:.1f} handoffs/week")


if __name__ == "__main__":
    main()
