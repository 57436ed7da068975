"""`assess` stage: how good the model is on the test period, whatever the threshold.

Ranking (AUC, PR-AUC, lift; beside the logistic regression, the legacy point score and the generator's oracle),
calibration (log loss, Brier, ECE), and the curves and figures that show them: ROC, precision-recall, reliability,
cumulative gains, feature importance and the SHAP summary. The metrics and figures go to the training run in MLflow.

Its own stage, apart from `evaluate`, because none of it depends on the threshold: a threshold experiment
(`dvc exp run -S calibrate.policy=...`) re-runs `evaluate` (the hand-off at the new threshold, the sweep, the
registered model) and leaves these metrics and six figures as they are, instead of redrawing them.

Paths come from dvc.yaml (`python -m pipelines.assess --features ... --model ... --scorer ... --spec ... --calibrator
... --baseline ... --importance ... --interim ... --train-run ... --metrics ... --plots ... --figures ...`); params
from the `assess` section and `base`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.special import expit

from features.build import SPLIT
from features.schema import LEAD_ID, LEGACY_SCORE, T0, has_legacy_score
from features.spec import feature_names, to_matrix
from models import metrics as M
from models.baseline import LinearBaseline
from models.bundle import BLEND, LIGHTGBM, LOGISTIC, GbmScorer, Scorer, scorer_from_dict
from models.calibration import Calibrator, to_score
from models.choice import blend_margin
from models.threshold import period_weeks
from pipelines import plots, tracking
from pipelines.bundle import read_model_text
from pipelines.io import exit_codes, load_params, read_frame, read_json, stage_args, write_frame, write_json

#: The curves this stage writes for DVC plots (reports/plots/<name>.csv) and its figures (reports/figures/<name>.png).
CURVES = ("roc", "precision_recall", "calibration", "gains")
FIGURES = (*CURVES, "importance", "shap_summary")


@dataclass(frozen=True)
class Model:
    """What the test period is assessed with: the chosen model's scorer, its calibrator and the feature spec (the
    threshold is not part of it)."""

    model_text: str
    scorer: Scorer
    calibrator: Calibrator
    spec: dict[str, Any]


def assess_frame(test: pl.DataFrame, model: Model, baseline: LinearBaseline | None,
                 truth: pl.DataFrame | None) -> dict[str, Any]:
    """All threshold-free test-period numbers, from one dict that goes to both DVC and MLflow."""
    y = test["label"].to_numpy().astype(np.float64)
    X = to_matrix(test, model.spec)
    margin = model.scorer.margin(X)
    p = model.calibrator.predict(margin)
    scores = to_score(p)
    out: dict[str, Any] = {
        "model": model.scorer.kind,
        "calibration": model.calibrator.method,
        "test": {
            "leads": int(len(y)),
            "conversions": int(y.sum()),
            "base_rate": float(y.mean()),
            "weeks": round(period_weeks(test[T0]), 3),
            "auc": M.auc(y, margin),
            "auc_calibrated_probability": M.auc(y, p),
            "auc_calibrated_score": M.auc(y, scores),
            "distinct_scores": int(np.unique(scores).size),
            "probability_min": float(p.min()),
            "probability_max": float(p.max()),
            "pr_auc": M.pr_auc(y, p),
            "log_loss": M.log_loss(y, p),
            "brier": M.brier(y, p),
            "ece": M.ece(y, p),
            "ece_uncalibrated": M.ece(y, expit(margin)),
            "lift_at_10pct": M.lift_at(y, p, 0.1),
        },
    }
    if baseline is not None:
        out["test"]["baseline_lr_auc"] = M.auc(y, baseline.predict_proba(X))
        # Reported for transparency only: the model was chosen on valid (reports/train.json), never on these.
        parts = {LIGHTGBM: GbmScorer(model.model_text).margin(X), LOGISTIC: baseline.margin(X)}
        out["test"]["auc_by_candidate"] = {**{k: M.auc(y, v) for k, v in parts.items()},
                                           BLEND: M.auc(y, blend_margin(parts))}
    if has_legacy_score(test):
        out["test"]["legacy_auc"] = M.auc(y, legacy_points(test))
    if truth is not None:
        t = test.select(LEAD_ID, "label").join(truth.select(LEAD_ID, "p_true"), on=LEAD_ID, how="inner")
        out["test"]["oracle_auc"] = M.auc(t["label"].to_numpy(), t["p_true"].to_numpy())
    return out


def legacy_points(test: pl.DataFrame) -> np.ndarray:
    """The legacy point score on the 0-100 scale (a lead without one has 0 points: the rule never hands it off)."""
    return test[LEGACY_SCORE].fill_null(0).to_numpy().astype(np.float64)


def write_figures(test: pl.DataFrame, model: Model, baseline: LinearBaseline | None, importance: dict[str, float],
                  plots_dir: Path, figures: Path, *, seed: int, shap_sample: int) -> None:
    """The CURVES as plot data and every one of FIGURES as a PNG: the model beside the logistic baseline and the
    legacy points where the source has them."""
    y = test["label"].to_numpy().astype(np.float64)
    X = to_matrix(test, model.spec)
    p = model.calibrator.predict(model.scorer.margin(X))
    scores = {"leadlift": p}
    if baseline is not None:
        scores["logistic baseline"] = baseline.predict_proba(X)
    if has_legacy_score(test):
        scores["legacy points"] = legacy_points(test) / 100.0
    roc = {k: M.roc_points(y, v) for k, v in scores.items()}
    pr = {k: M.pr_points(y, v) for k, v in scores.items()}
    gains = {k: M.gains_curve(y, v) for k, v in scores.items()}
    rc = M.reliability_curve(y, p)
    write_frame(roc["leadlift"], plots_dir / "roc.csv")
    write_frame(pr["leadlift"], plots_dir / "precision_recall.csv")
    write_frame(rc, plots_dir / "calibration.csv")
    write_frame(gains["leadlift"], plots_dir / "gains.csv")
    plots.curves(figures / "roc.png", roc, x=roc["leadlift"].columns[0], y=roc["leadlift"].columns[1],
                 title="ROC, test period", diagonal=True)
    plots.curves(figures / "precision_recall.png", pr, x=pr["leadlift"].columns[0], y=pr["leadlift"].columns[1],
                 title="Precision-recall, test period")
    plots.curves(figures / "calibration.png", {"leadlift (calibrated)": rc}, x=rc.columns[0], y=rc.columns[1],
                 title="Reliability, test period", diagonal=True)
    plots.curves(figures / "gains.png", gains, x=gains["leadlift"].columns[0], y=gains["leadlift"].columns[1],
                 title="Cumulative gains, test period", diagonal=True)
    plots.importance(figures / "importance.png", importance)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(X.shape[0], size=min(shap_sample, X.shape[0]), replace=False))
    contrib = model.scorer.contributions(X[rows])
    plots.shap_summary(figures / "shap_summary.png", contrib[:, :-1], X[rows], feature_names(model.spec))


def log_assessment(train_run: dict[str, str], metrics: dict[str, Any], metrics_path: Path, plots_dir: Path,
                   figures: Path) -> None:
    """The test metrics, figures, plot data and report go to the training run: they describe the trained model."""
    import mlflow

    tracking.set_experiment()
    with mlflow.start_run(run_id=train_run["run_id"]):
        mlflow.log_metrics(tracking.numeric_metrics({"test": metrics["test"]}))
        for name in FIGURES:
            mlflow.log_artifact(str(figures / f"{name}.png"), artifact_path="plots")
        for name in CURVES:
            mlflow.log_artifact(str(plots_dir / f"{name}.csv"), artifact_path="plot_data")
        mlflow.log_artifact(str(metrics_path), artifact_path="reports")


def assess_summary(metrics: dict[str, Any]) -> str:
    """One line: the test AUC beside the baselines the source has, and the calibration error."""
    t = metrics["test"]
    # Sources without a legacy score or a ground truth have no such AUC: leave them out rather than print "nan".
    beside = ", ".join(f"{name} {t[key]:.4f}" for name, key in
                       (("LR", "baseline_lr_auc"), ("legacy", "legacy_auc"), ("oracle", "oracle_auc")) if key in t)
    return (f"assess: {metrics['model']} model, test AUC {t['auc']:.4f} ({beside}), ECE {t['ece']:.4f} "
            f"({metrics['calibration']} calibration)")


@exit_codes
def main(argv: list[str] | None = None) -> None:
    args = stage_args(argv, __doc__, "features", "model", "scorer", "spec", "calibrator", "baseline", "importance",
                      "interim", "train-run", "metrics", "plots", "figures")
    params = load_params("assess", args.params)
    test = read_frame(args.features).filter(pl.col(SPLIT) == "test")
    text = read_model_text(args.model)
    calib = read_json(args.calibrator)
    model = Model(text, scorer_from_dict(read_json(args.scorer), text), Calibrator.from_dict(calib["calibrator"]),
                  read_json(args.spec))
    baseline = LinearBaseline.from_dict(read_json(args.baseline)) if args.baseline.exists() else None
    source = read_json(args.interim / "source.json")
    truth = read_frame(source["truth"]) if source.get("truth") and Path(source["truth"]).exists() else None
    metrics = assess_frame(test, model, baseline, truth)
    metrics["source"] = source.get("name")
    metrics["calibration_choice"] = calib.get("choice")
    write_json(args.metrics, metrics)
    write_figures(test, model, baseline, read_json(args.importance), args.plots, args.figures,
                  seed=int(params["base"]["seed"]), shap_sample=int(params["shap_sample"]))
    log_assessment(read_json(args.train_run), metrics, args.metrics, args.plots, args.figures)
    print(assess_summary(metrics))


if __name__ == "__main__":
    main()
