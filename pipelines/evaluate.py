"""`evaluate` stage: honest out-of-time metrics on the test split, the decision side-by-side with the legacy
70 and 80 point cutoffs, reason-code fidelity, plots, and the MLflow model version with its promotion gates.

Paths come from dvc.yaml (`python -m pipelines.evaluate --features ... --bundle ... --interim ... --notes ...
--metrics ... --plots ... --figures ... --registry ...`); params from the `evaluate` and `calibrate` sections
and `base`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.special import expit

from features.build import SPLIT
from features.schema import GROUPS, LEAD_ID, T0, has_legacy_score
from features.spec import feature_names, to_matrix
from models import metrics as M
from models.baseline import LinearBaseline
from models.bundle import BUNDLE_FILES, SQL, Bundle
from models.threshold import LEGACY_CUTOFFS, period_weeks, sweep
from models.treeshap import TreeShap
from pipelines import plots, tracking
from pipelines.bundle import load_bundle
from pipelines.io import exit_codes, load_params, read_frame, read_json, stage_args, write_frame, write_json

SHAP_SAMPLE = 2000


def decision_metrics(y: np.ndarray, selected: np.ndarray, *, weeks: float, value: float, cost: float) -> dict[str, Any]:
    return M.decision_table(y, selected, weeks=weeks, value_per_conversion=value, cost_per_handoff=cost)


def evaluate_frame(test: pl.DataFrame, bundle: Bundle, baseline: LinearBaseline | None, calib_params: dict[str, Any],
                   truth: pl.DataFrame | None) -> dict[str, Any]:
    """All test-period numbers, from one dict that goes to both DVC and MLflow."""
    y = test["label"].to_numpy().astype(np.float64)
    X = to_matrix(test, bundle.spec)
    margin = bundle.margin(X)
    p = bundle.calibrator.predict(margin)
    weeks = period_weeks(test[T0])
    value, cost = float(calib_params["value_per_conversion"]), float(calib_params["cost_per_handoff"])
    out: dict[str, Any] = {
        "test": {
            "leads": int(len(y)),
            "conversions": int(y.sum()),
            "base_rate": float(y.mean()),
            "weeks": round(weeks, 3),
            "auc": M.auc(y, margin),
            "auc_calibrated_score": M.auc(y, bundle.score(p)),
            "pr_auc": M.pr_auc(y, p),
            "log_loss": M.log_loss(y, p),
            "brier": M.brier(y, p),
            "ece": M.ece(y, p),
            "ece_uncalibrated": M.ece(y, expit(margin)),
            "lift_at_10pct": M.lift_at(y, p, 0.1),
        }
    }
    if baseline is not None:
        out["test"]["baseline_lr_auc"] = M.auc(y, baseline.predict_proba(X))
    selected = bundle.decide(p) == SQL
    decision = decision_metrics(y, selected, weeks=weeks, value=value, cost=cost)
    decision.update(policy=bundle.threshold["policy"], threshold_score=int(bundle.threshold["threshold_score"]),
                    threshold_probability=float(bundle.threshold["threshold_probability"]))
    out["decision"] = decision
    if has_legacy_score(test):
        legacy = test["legacy_score"].fill_null(0).to_numpy().astype(np.float64)
        out["test"]["legacy_auc"] = M.auc(y, legacy)
        out["legacy"] = {
            f"cutoff_{c}": decision_metrics(y, legacy >= c, weeks=weeks, value=value, cost=cost) for c in LEGACY_CUTOFFS
        }
        n70 = int((legacy >= LEGACY_CUTOFFS[0]).sum())
        captured = M.conversions_at_volume(y, margin, n70)
        legacy70 = out["legacy"]["cutoff_70"]["conversions"]
        decision["conversions_at_legacy70_volume"] = captured
        decision["legacy70_conversions"] = legacy70
        decision["uplift_at_legacy70_volume"] = (captured / legacy70 - 1.0) if legacy70 else None
    if truth is not None:
        t = test.select(LEAD_ID, "label").join(truth.select(LEAD_ID, "p_true"), on=LEAD_ID, how="inner")
        out["test"]["oracle_auc"] = M.auc(t["label"].to_numpy(), t["p_true"].to_numpy())
    return out


def fidelity(notes: list[dict[str, Any]], truth: pl.DataFrame) -> float | None:
    """Share of recommended leads whose top reason's group is among their top-3 true drivers (centred terms)."""
    drivers = [g for g in GROUPS if g in truth.columns]
    if not notes or not drivers:
        return None
    centred = truth.select(LEAD_ID, *[(pl.col(g) - pl.col(g).mean()).alias(g) for g in drivers])
    top = pl.DataFrame({LEAD_ID: [n["lead_id"] for n in notes], "top_group": [n["reasons"][0]["group"] for n in notes]})
    joined = top.join(centred, on=LEAD_ID, how="inner")
    values = joined.select(drivers).to_numpy()
    order = np.argsort(-values, axis=1, kind="stable")[:, :3]
    idx = {g: i for i, g in enumerate(drivers)}
    hits = [idx.get(g, -1) in order[i] for i, g in enumerate(joined["top_group"].to_list())]
    return float(np.mean(hits)) if hits else None


def write_plots(
    test: pl.DataFrame,
    bundle: Bundle,
    baseline: LinearBaseline | None,
    importance: dict[str, float],
    metrics: dict[str, Any],
    calib_params: dict[str, Any],
    plots_dir: Path,
    figures: Path,
    seed: int,
) -> None:
    y = test["label"].to_numpy().astype(np.float64)
    X = to_matrix(test, bundle.spec)
    p = bundle.probability(X)
    scores = {"leadlift": p}
    if baseline is not None:
        scores["logistic baseline"] = baseline.predict_proba(X)
    has_legacy = "legacy" in metrics
    if has_legacy:
        scores["legacy points"] = test["legacy_score"].fill_null(0).to_numpy() / 100.0
    roc = {k: M.roc_points(y, v) for k, v in scores.items()}
    pr = {k: M.pr_points(y, v) for k, v in scores.items()}
    gains = {k: M.gains_curve(y, v) for k, v in scores.items()}
    write_frame(roc["leadlift"], plots_dir / "roc.csv")
    write_frame(pr["leadlift"], plots_dir / "precision_recall.csv")
    write_frame(M.reliability_curve(y, p), plots_dir / "calibration.csv")
    write_frame(gains["leadlift"], plots_dir / "gains.csv")
    weeks = metrics["test"]["weeks"]
    value, cost = float(calib_params["value_per_conversion"]), float(calib_params["cost_per_handoff"])
    model_sweep = sweep(y, p, weeks=weeks, value_per_conversion=value, cost_per_handoff=cost)
    write_frame(model_sweep, plots_dir / "threshold_sweep.csv")
    rc = M.reliability_curve(y, p)
    x_col, y_col = rc.columns[0], rc.columns[1]
    plots.curves(figures / "roc.png", roc, x=roc["leadlift"].columns[0], y=roc["leadlift"].columns[1],
                 title="ROC, test period", diagonal=True)
    plots.curves(figures / "precision_recall.png", pr, x=pr["leadlift"].columns[0], y=pr["leadlift"].columns[1],
                 title="Precision-recall, test period")
    plots.curves(figures / "calibration.png", {"leadlift (calibrated)": rc}, x=x_col, y=y_col,
                 title="Reliability, test period", diagonal=True)
    plots.curves(figures / "gains.png", gains, x=gains["leadlift"].columns[0], y=gains["leadlift"].columns[1],
                 title="Cumulative gains, test period", diagonal=True)
    plots.importance(figures / "importance.png", importance)
    legacy_sweep = (sweep(y, scores["legacy points"], weeks=weeks, value_per_conversion=value, cost_per_handoff=cost)
                    if has_legacy else model_sweep.clear())
    plots.threshold_sweep(
        figures / "threshold_sweep.png",
        model_sweep,
        legacy_sweep,
        chosen=int(bundle.threshold["threshold_score"]),
        legacy_cutoffs=LEGACY_CUTOFFS if has_legacy else (),
    )
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(X.shape[0], size=min(SHAP_SAMPLE, X.shape[0]), replace=False))
    contrib = TreeShap.from_booster(bundle.booster).contributions(X[rows])
    plots.shap_summary(figures / "shap_summary.png", contrib[:, :-1], X[rows], feature_names(bundle.spec))


def champion_auc_on(test: pl.DataFrame, name: str = tracking.MODEL_NAME) -> float | None:
    """The current champion's AUC on *this* test split, so the gate compares like with like (only models registered
    under the same name, i.e. trained on the same source, are ever compared)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_model_version_by_alias(name, tracking.CHAMPION)
        champion = load_bundle(f"models:/{name}@{tracking.CHAMPION}")
        X = to_matrix(test, champion.spec)
    except (MlflowException, ValueError, KeyError):
        return None
    return M.auc(test["label"].to_numpy(), champion.margin(X))


def register(bundle_dir: Path, metrics: dict[str, Any], figures: Path, plots_dir: Path, metrics_path: Path,
             test: pl.DataFrame, params: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Log test metrics and plots to the training run, the bundle as a pyfunc to the calibration run, register it
    under the source's own name (`tracking.model_name`), and move `champion` only if the gates pass."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    train_run = read_json(bundle_dir / "train_run.json")
    calib_run = read_json(bundle_dir / "calibrate_run.json")
    tracking.set_experiment()
    flat = tracking.numeric_metrics({k: v for k, v in metrics.items() if k in ("test", "explain")})
    with mlflow.start_run(run_id=train_run["run_id"]):
        mlflow.log_metrics(flat)
        mlflow.log_artifacts(str(figures), artifact_path="plots")
        mlflow.log_artifacts(str(plots_dir), artifact_path="plot_data")
        mlflow.log_artifact(str(metrics_path), artifact_path="reports")
    registered = tracking.model_name(spec.get("source"))
    champion_auc = champion_auc_on(test, registered)
    auc = metrics["test"]["auc"]
    legacy_auc = metrics["test"].get("legacy_auc")
    tol = float(params["auc_tolerance"])
    gates = {
        "beats_legacy": legacy_auc is None or auc > legacy_auc,
        "not_worse_than_champion": champion_auc is None or auc >= champion_auc - tol,
    }
    inputs = Schema(
        [ColSpec("string" if f["kind"] == "categorical" else "double", f["name"]) for f in spec["features"]]
    )
    outputs = Schema([ColSpec("double", "probability"), ColSpec("long", "score"), ColSpec("string", "decision")])
    with tempfile.TemporaryDirectory() as tmp:
        packed = Path(tmp) / "bundle"
        packed.mkdir()
        for name in BUNDLE_FILES.values():
            shutil.copy(bundle_dir / name, packed / name)
        with mlflow.start_run(run_id=calib_run["run_id"]):
            mlflow.log_metrics(
                tracking.numeric_metrics({"decision": metrics["decision"], "legacy": metrics.get("legacy", {})})
            )
            info = mlflow.pyfunc.log_model(
                name="leadlift",
                python_model=str(Path(__file__).with_name("mlflow_model.py")),
                artifacts={"bundle": str(packed)},
                signature=ModelSignature(inputs=inputs, outputs=outputs),
                code_paths=[str(Path(__file__).parents[1] / pkg) for pkg in ("features", "models", "pipelines")],
                pip_requirements=["lightgbm==4.7.0", "polars==2.1.0", "numpy", "pandas", "pyyaml", "scikit-learn"],
                registered_model_name=registered if params.get("register", True) else None,
            )
    out: dict[str, Any] = {"model_uri": info.model_uri, "gates": gates, "champion_auc_on_this_test": champion_auc,
                           "test_auc": auc, "promoted": False, "registered_model": registered}
    version = getattr(info, "registered_model_version", None)
    if version is not None:
        client = MlflowClient()
        out["version"] = int(version)
        for k, v in gates.items():
            client.set_model_version_tag(registered, str(version), f"gate.{k}", str(v))
        client.set_model_version_tag(registered, str(version), "training_run_id", train_run["run_id"])
        if all(gates.values()):
            client.set_registered_model_alias(registered, tracking.CHAMPION, str(version))
            out["promoted"] = True
    return out


@exit_codes
def main(argv: list[str] | None = None) -> None:
    args = stage_args(argv, __doc__, "features", "bundle", "interim", "notes", "metrics", "plots", "figures",
                      "registry")
    params = load_params("evaluate", args.params)
    calib_params = load_params("calibrate", args.params)
    frame = read_frame(args.features)
    test = frame.filter(pl.col(SPLIT) == "test")
    bundle = load_bundle(args.bundle)
    baseline_path = args.bundle / "baseline.json"
    baseline = LinearBaseline.from_dict(read_json(baseline_path)) if baseline_path.exists() else None
    source = read_json(args.interim / "source.json")
    truth = read_frame(source["truth"]) if source.get("truth") and Path(source["truth"]).exists() else None
    metrics = evaluate_frame(test, bundle, baseline, calib_params, truth)
    notes = [json.loads(line) for line in args.notes.read_text().splitlines() if line.strip()]
    metrics["explain"] = {
        "notes": len(notes),
        "sql_in_test": int((bundle.decide(bundle.probability(to_matrix(test, bundle.spec))) == SQL).sum()),
    }
    if truth is not None:
        metrics["explain"]["top_reason_in_true_top3"] = fidelity(notes, truth)
    write_json(args.metrics, metrics)
    write_plots(test, bundle, baseline, read_json(args.bundle / "importance.json"), metrics, calib_params,
                args.plots, args.figures, int(params["base"]["seed"]))
    registry = register(args.bundle, metrics, args.figures, args.plots, args.metrics, test, params, bundle.spec)
    write_json(args.registry, registry)
    t, d = metrics["test"], metrics["decision"]
    # Sources without a legacy score or a ground truth have no such AUC: leave them out rather than print "nan".
    beside = ", ".join(f"{name} {t[key]:.4f}" for name, key in
                       (("LR", "baseline_lr_auc"), ("legacy", "legacy_auc"), ("oracle", "oracle_auc")) if key in t)
    print(f"evaluate: test AUC {t['auc']:.4f} ({beside}), ECE {t['ece']:.4f}; "
          f"decision: {d['handoffs_per_week']:.1f}/week at precision {d['precision']:.3f}; "
          f"model {registry['registered_model']} version {registry.get('version')} promoted={registry['promoted']}")


if __name__ == "__main__":
    main()
