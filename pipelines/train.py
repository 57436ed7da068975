"""`train` stage: LightGBM on the train split (early stopping on valid), the logistic regression, and the choice
between them (or their blend) on valid.

The model is chosen by valid AUC (`models.choice`): LightGBM unless the logistic regression or the blend beats it by
`train.choose_min_auc_gain`. With `train.refit_on_train_and_valid`, both models are then refit on train + valid (the
GBM with the tree count chosen on valid). The valid margins handed to `calibrate` always come from the chosen model's
fits that did not see valid, so the calibrator is fitted on held-out scores either way.

Paths come from dvc.yaml (`python -m pipelines.train --features ... --spec ... --model ... --baseline ... --scorer ...
--importance ... --valid-margins ... --run ... --report ...`); params from the `train` section and `base`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.spec import categorical_indices, feature_names, to_matrix
from models.baseline import fit_baseline
from models.bundle import LIGHTGBM, LOGISTIC, scorer_dict
from models.choice import BLEND_WEIGHTS, blend_margin, choose_model
from models.metrics import auc
from models.train import importance, refit_gbm, train_gbm
from pipelines import tracking
from pipelines.io import exit_codes, load_params, read_frame, read_json, stage_args, write_frame, write_json, write_text


def split_xy(frame: pl.DataFrame, spec: dict[str, Any], split: str) -> tuple[np.ndarray, np.ndarray]:
    part = frame.filter(pl.col("split") == split)
    return to_matrix(part, spec), part["label"].to_numpy().astype(np.float64)


@dataclass(frozen=True)
class Trained:
    model_text: str
    baseline: dict[str, Any]
    #: scorer.json: which model scores (lightgbm, logistic or blend) and the logistic model when it takes part.
    scorer: dict[str, Any]
    report: dict[str, Any]
    importance: dict[str, float]
    #: lead_id, margin: raw scores on valid from a booster that was not trained on valid (what calibrate fits on).
    valid_margins: pl.DataFrame


def run(features: Path, spec_path: Path, *, params: dict[str, Any]) -> Trained:
    """Train both models, choose on valid, and refit both on train + valid when asked."""
    frame = read_frame(features)
    spec = read_json(spec_path)
    X_tr, y_tr = split_xy(frame, spec, "train")
    X_va, y_va = split_xy(frame, spec, "valid")
    cats = categorical_indices(spec)
    names = feature_names(spec)
    seed = int(params["base"]["seed"])
    booster = train_gbm(X_tr, y_tr, X_va, y_va, feature_names=names, categorical=cats, params=params, seed=seed)
    n_cats = [len(spec["features"][j]["categories"]) for j in cats]
    C = float(params.get("baseline_c", 1.0))
    baseline = fit_baseline(X_tr, y_tr, categorical=cats, n_categories=n_cats, C=C)
    held_out: dict[str, np.ndarray] = {LIGHTGBM: np.asarray(booster.predict(X_va, raw_score=True)),
                                       LOGISTIC: baseline.margin(X_va)}
    chosen, choice = choose_model(held_out, y_va, min_auc_gain=float(params.get("choose_min_auc_gain", 0.002)))
    margin_va = blend_margin(held_out) if chosen not in held_out else held_out[chosen]
    trees = int(booster.current_iteration())
    report: dict[str, Any] = {
        "train_rows": int(len(y_tr)),
        "valid_rows": int(len(y_va)),
        "best_iteration": trees,
        "model": chosen,
        "model_choice": choice,
        "valid_auc": auc(y_va, margin_va),
        "valid_lightgbm_auc": auc(y_va, held_out[LIGHTGBM]),
        "valid_baseline_lr_auc": auc(y_va, held_out[LOGISTIC]),
        "refit_on_train_and_valid": bool(params.get("refit_on_train_and_valid", False)),
    }
    if report["refit_on_train_and_valid"]:
        X_all, y_all = np.vstack([X_tr, X_va]), np.concatenate([y_tr, y_va])
        booster = refit_gbm(
            X_all, y_all, feature_names=names, categorical=cats, params=params, seed=seed, num_trees=trees
        )
        baseline = fit_baseline(X_all, y_all, categorical=cats, n_categories=n_cats, C=C)
        report["fit_rows"] = int(len(y_all))
    else:
        report["fit_rows"] = int(len(y_tr))
    valid_ids = frame.filter(pl.col("split") == "valid")["lead_id"]
    margins = pl.DataFrame({"lead_id": valid_ids, "margin": margin_va})
    scorer = scorer_dict(chosen, baseline, weights=BLEND_WEIGHTS)
    return Trained(booster.model_to_string(), baseline.to_dict(), scorer, report, importance(booster), margins)


def log_training(
    params: dict[str, Any], report: dict[str, Any], files: dict[str, Path], data_files: list[Path]
) -> dict[str, str]:
    """One MLflow run per training: params, metrics, spec and model file, tagged with the data hash (MLflow itself
    records the git commit as mlflow.source.git.commit)."""
    import mlflow

    experiment_id = tracking.set_experiment()
    with mlflow.start_run(run_name="train") as run:
        mlflow.set_tags({"leadlift.stage": "train", "data_hash": tracking.data_hash(data_files),
                         "leadlift.model": report["model"],
                         "leadlift.model_criterion": report["model_choice"]["criterion"]})
        mlflow.log_params(tracking.flatten({"train": {k: v for k, v in params.items() if k != "base"},
                                            "base": params["base"]}))
        mlflow.log_metrics(tracking.numeric_metrics(report))
        for path in files.values():
            mlflow.log_artifact(str(path), artifact_path="training")
        return {"run_id": run.info.run_id, "experiment_id": experiment_id}


@exit_codes
def main(argv: list[str] | None = None) -> None:
    args = stage_args(argv, __doc__, "features", "spec", "model", "baseline", "scorer", "importance", "valid-margins",
                      "run", "report")
    params = load_params("train", args.params)
    trained = run(args.features, args.spec, params=params)
    report = trained.report
    write_text(args.model, trained.model_text)
    write_json(args.baseline, trained.baseline)
    write_json(args.scorer, trained.scorer)
    write_json(args.importance, trained.importance)
    write_frame(trained.valid_margins, args.valid_margins)
    write_json(args.report, report)
    run_info = log_training(params, report, {"model": args.model, "spec": args.spec, "baseline": args.baseline,
                                             "scorer": args.scorer}, [args.features, args.spec])
    write_json(args.run, run_info)
    refit = f", refit on {report['fit_rows']} train + valid rows" if report["refit_on_train_and_valid"] else ""
    print(train_summary(report) + f"{refit}; MLflow run {run_info['run_id']}")


def train_summary(report: dict[str, Any]) -> str:
    """One line: the model chosen on valid and why, with every candidate's valid AUC."""
    choice = report["model_choice"]
    aucs = ", ".join(f"{k} {v['auc']:.4f}" for k, v in choice["valid"].items())
    return (f"train: {report['best_iteration']} trees; model {report['model']} chosen on valid ({aucs}; "
            f"{choice['criterion']})")


if __name__ == "__main__":
    main()
