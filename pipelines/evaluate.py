"""`evaluate` stage: the hand-off at the chosen threshold on the test period, side by side with the legacy 70 and 80
point cutoffs, the threshold sweep, reason-code fidelity, and the experiment's record in MLflow: a run nested under
the training run (the calibrate params, the threshold, these metrics), the bundle logged to it as a pyfunc and
registered, and `champion` moved only if the gates pass.

Everything here depends on the threshold, so a threshold experiment re-runs it. The threshold-free test metrics and
figures are `assess`'s (reports/assess.json, which the gates read), so they are not recomputed or redrawn here, and
neither LightGBM nor scikit-learn is loaded (the champion's AUC is only recomputed when the champion is a different
model). This is the one stage of an experiment that imports MLflow.

Paths come from dvc.yaml (`python -m pipelines.evaluate --features ... --bundle ... --interim ... --notes ...
--assessment ... --train-run ... --metrics ... --plots ... --figures ... --registry ...`); params from the
`evaluate` and `calibrate` sections and `base`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.build import SPLIT
from features.schema import GROUPS, LEAD_ID, LEGACY_SCORE, T0, has_legacy_score
from features.spec import to_matrix
from models import metrics as M
from models.bundle import SQL, Bundle, bundle_file_names
from models.threshold import (
    DEFAULT_COST_PER_HANDOFF,
    DEFAULT_VALUE_PER_CONVERSION,
    LEGACY_CUTOFFS,
    period_weeks,
    sweep,
)
from pipelines import plots, tracking
from pipelines.bundle import load_bundle, load_bundle_dir, resolve_bundle_dir, same_margins, write_manifest
from pipelines.io import BadInput, exit_codes, load_params, read_frame, read_json, stage_args, write_frame, write_json

#: What the logged pyfunc imports to load a bundle and predict (pipelines/mlflow_model.py): no LightGBM, no
#: scikit-learn.
PYFUNC_REQUIREMENTS = ["numba==0.68.1", "numpy", "pandas", "polars==2.1.0", "pyarrow", "pyyaml", "scipy"]


def decision_metrics(y: np.ndarray, selected: np.ndarray, *, weeks: float, value: float, cost: float) -> dict[str, Any]:
    """decision_table plus the share of all leads handed off."""
    out = M.decision_table(y, selected, weeks=weeks, value_per_conversion=value, cost_per_handoff=cost)
    out["share_of_leads"] = out["handoffs"] / len(y) if len(y) else 0.0
    return out


def decision_frame(test: pl.DataFrame, bundle: Bundle, calib_params: dict[str, Any]) -> dict[str, Any]:
    """The bundle's decision on the test period beside the legacy cutoffs (and what the model catches at the legacy
    rule's own volume), from one dict that goes to both DVC and MLflow."""
    y = test["label"].to_numpy().astype(np.float64)
    margin = bundle.margin(to_matrix(test, bundle.spec))
    p = bundle.calibrator.predict(margin)
    weeks = period_weeks(test[T0])
    value, cost = float(calib_params["value_per_conversion"]), float(calib_params["cost_per_handoff"])
    decision = decision_metrics(y, bundle.decide(p) == SQL, weeks=weeks, value=value, cost=cost)
    decision.update(policy=bundle.threshold["policy"], threshold_score=int(bundle.threshold["threshold_score"]),
                    threshold_probability=float(bundle.threshold["threshold_probability"]))
    out: dict[str, Any] = {"decision": decision}
    if has_legacy_score(test):
        legacy = test[LEGACY_SCORE].fill_null(0).to_numpy().astype(np.float64)
        out["legacy"] = {
            f"cutoff_{c}": decision_metrics(y, legacy >= c, weeks=weeks, value=value, cost=cost) for c in LEGACY_CUTOFFS
        }
        n70 = int((legacy >= LEGACY_CUTOFFS[0]).sum())
        captured = M.conversions_at_volume(y, margin, n70)
        legacy70 = out["legacy"]["cutoff_70"]["conversions"]
        decision["conversions_at_legacy70_volume"] = captured
        decision["legacy70_conversions"] = legacy70
        decision["uplift_at_legacy70_volume"] = (captured / legacy70 - 1.0) if legacy70 else None
    return out


def fidelity(notes: list[dict[str, Any]], truth: pl.DataFrame) -> float | None:
    """Share of recommended leads whose top reason's group is among their top-3 true drivers (centred terms)."""
    drivers = [g for g in GROUPS if g in truth.columns]
    notes = [n for n in notes if n["reasons"]]  # a note close to the average lead names no reason
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


def write_sweep(test: pl.DataFrame, bundle: Bundle, calib_params: dict[str, Any], weeks: float, plots_dir: Path,
                figures: Path) -> None:
    """threshold_sweep.csv (the model's decision at every 0-100 cutoff) and its figure: precision, recall, handoffs a
    week and expected value against the cutoff, the model beside the legacy points, with the chosen threshold."""
    y = test["label"].to_numpy().astype(np.float64)
    p = bundle.probability(to_matrix(test, bundle.spec))
    value, cost = float(calib_params["value_per_conversion"]), float(calib_params["cost_per_handoff"])
    model_sweep = sweep(y, p, weeks=weeks, value_per_conversion=value, cost_per_handoff=cost)
    write_frame(model_sweep, plots_dir / "threshold_sweep.csv")
    has_legacy = has_legacy_score(test)
    legacy_sweep = (sweep(y, test[LEGACY_SCORE].fill_null(0).to_numpy() / 100.0, weeks=weeks,
                          value_per_conversion=value, cost_per_handoff=cost) if has_legacy else model_sweep.clear())
    plots.threshold_sweep(figures / "threshold_sweep.png", model_sweep, legacy_sweep,
                          chosen=int(bundle.threshold["threshold_score"]),
                          legacy_cutoffs=LEGACY_CUTOFFS if has_legacy else ())


def handoff_lines(metrics: dict[str, Any], calib_params: dict[str, Any], *, synthetic: bool) -> list[str]:
    """The hand-off in plain words: leads per week, share of all leads, precision and recall, beside the legacy rule
    where the source has one; and a warning when a real source still runs on leadlift's placeholder economics."""
    t, d = metrics["test"], metrics["decision"]

    def line(name: str, row: dict[str, Any]) -> str:
        share = row.get("share_of_leads", row["handoffs"] / t["leads"] if t["leads"] else 0.0)
        return (f"  {name}: {row['handoffs_per_week']:,.1f} leads/week ({share:.1%} of all leads); "
                f"{row['precision']:.1%} of them convert (precision), and they hold {row['recall']:.1%} of all "
                "conversions (recall)")

    lines = [f"hand-off on the test period ({t['weeks']:g} weeks, {t['leads']:,} leads, {t['conversions']:,} "
             f"conversions, {t['base_rate']:.1%} convert):",
             line(f"leadlift ({d['policy']} policy, score >= {d['threshold_score']})", d)]
    for key, row in (metrics.get("legacy") or {}).items():
        lines.append(line(f"legacy rule, {key.removeprefix('cutoff_')}+ points", row))
    if not metrics.get("legacy"):
        lines.append("  (no legacy score in this source to compare with)")
    value, cost = float(calib_params["value_per_conversion"]), float(calib_params["cost_per_handoff"])
    if not synthetic and (value, cost) == (DEFAULT_VALUE_PER_CONVERSION, DEFAULT_COST_PER_HANDOFF):
        effect = (f"the {d['policy']} policy hands off every lead above {cost / value:.1%} "
                  f"(here {d.get('share_of_leads', 0.0):.1%} of all leads)" if d["policy"] == "expected_value"
                  else "the expected values in the reports rest on them")
        lines.append(
            f"warning: calibrate.value_per_conversion ({value:,.0f}) and calibrate.cost_per_handoff ({cost:,.0f}) are "
            f"still leadlift's defaults, not this business's figures: {effect}. Set them to your own value of a "
            "conversion and cost of a handoff (params.yaml, or the mapping's params: calibrate:), or use the capacity "
            "policy with your team's size.")
    return lines


def read_notes(path: Path) -> list[dict[str, Any]]:
    """The handoff notes explain wrote (JSON lines); missing or broken is bad input naming the file and line."""
    if not path.is_file():
        raise BadInput(path, "not found (run the explain stage first: dvc repro)")
    notes = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                notes.append(json.loads(line))
            except json.JSONDecodeError:
                raise BadInput(path, "not valid JSON lines", row=i) from None
    return notes


def champion_auc_on(test: pl.DataFrame, bundle_dir: Path, auc: float, name: str = tracking.MODEL_NAME
                    ) -> float | None:
    """The current champion's AUC on *this* test split, so the gate compares like with like (only models registered
    under the same name, i.e. trained on the same source, are ever compared). A champion with the same margin files
    as this bundle (a threshold experiment on the same training) ranks every lead alike: its AUC is this bundle's
    `auc`, with no need to load it or recompute."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_model_version_by_alias(name, tracking.CHAMPION)
        folder = resolve_bundle_dir(f"models:/{name}@{tracking.CHAMPION}")
        if same_margins(folder, bundle_dir):
            return auc
        champion = load_bundle_dir(folder)
        X = to_matrix(test, champion.spec)
    except (MlflowException, ValueError, KeyError, BadInput):
        return None
    return M.auc(test["label"].to_numpy(), champion.margin(X))


def register(bundle_dir: Path, *, train_run: dict[str, str], calib_params: dict[str, Any], params: dict[str, Any],
             assessment: dict[str, Any], metrics: dict[str, Any], artifacts: dict[str, list[Path]],
             test: pl.DataFrame) -> dict[str, Any]:
    """The experiment's MLflow run, nested under its training run: the calibrate params, the calibrator and threshold,
    the decision metrics and `artifacts` ({artifact folder: files}), and the bundle as a pyfunc; registered under the
    source's own name (`tracking.model_name`), with `champion` moved only if the gates pass."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    spec = read_json(bundle_dir / "feature_spec.json")
    calib = read_json(bundle_dir / "calibrator.json")
    threshold = read_json(bundle_dir / "threshold.json")
    registered = tracking.model_name(spec.get("source"))
    tracking.set_experiment()
    auc = assessment["test"]["auc"]
    champion_auc = champion_auc_on(test, bundle_dir, auc, registered)
    legacy_auc = assessment["test"].get("legacy_auc")
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
        for name in bundle_file_names({p.name for p in bundle_dir.iterdir()}):
            shutil.copy(bundle_dir / name, packed / name)
        write_manifest(packed)  # the logged bundle is checked like a folder one when it is loaded back
        with mlflow.start_run(run_name=f"calibrate-{threshold['policy']}", parent_run_id=train_run["run_id"],
                              tags={"leadlift.training_run_id": train_run["run_id"],
                                    "leadlift.stage": "calibrate"}) as run:
            mlflow.log_params(tracking.flatten({"calibrate": {k: v for k, v in calib_params.items() if k != "base"}}))
            mlflow.set_tag("leadlift.calibration", calib["calibrator"]["method"])
            mlflow.log_metrics({
                "threshold_probability": threshold["threshold_probability"],
                "threshold_score": threshold["threshold_score"],
                "expected_handoffs_per_week": threshold["expected_handoffs_per_week"],
                **tracking.numeric_metrics({"valid_held_out": calib["choice"]["held_out"]}),
                **tracking.numeric_metrics({k: v for k, v in metrics.items()
                                            if k in ("decision", "legacy", "explain")}),
            })
            for name in ("calibrator.json", "threshold.json"):
                mlflow.log_artifact(str(bundle_dir / name), artifact_path="calibration")
            for folder, files in artifacts.items():
                for f in files:
                    mlflow.log_artifact(str(f), artifact_path=folder)
            info = mlflow.pyfunc.log_model(
                name="leadlift",
                python_model=str(Path(__file__).with_name("mlflow_model.py")),
                artifacts={"bundle": str(packed)},
                signature=ModelSignature(inputs=inputs, outputs=outputs),
                code_paths=[str(Path(__file__).parents[1] / pkg) for pkg in ("features", "models", "pipelines")],
                pip_requirements=PYFUNC_REQUIREMENTS,
                registered_model_name=registered if params.get("register", True) else None,
            )
    out: dict[str, Any] = {"model_uri": info.model_uri, "gates": gates, "champion_auc_on_this_test": champion_auc,
                           "test_auc": auc, "promoted": False, "registered_model": registered,
                           "calibration_run_id": run.info.run_id, "training_run_id": train_run["run_id"]}
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
    args = stage_args(argv, __doc__, "features", "bundle", "interim", "notes", "assessment", "train-run", "metrics",
                      "plots", "figures", "registry")
    params = load_params("evaluate", args.params)
    calib_params = load_params("calibrate", args.params)
    test = read_frame(args.features).filter(pl.col(SPLIT) == "test")
    bundle = load_bundle(args.bundle)
    source = read_json(args.interim / "source.json")
    truth = read_frame(source["truth"]) if source.get("truth") and Path(source["truth"]).exists() else None
    notes = read_notes(args.notes)
    assessment = read_json(args.assessment)
    metrics = decision_frame(test, bundle, calib_params)
    metrics["explain"] = {"notes": len(notes), "sql_in_test": metrics["decision"]["handoffs"]}
    if truth is not None:
        metrics["explain"]["top_reason_in_true_top3"] = fidelity(notes, truth)
    write_json(args.metrics, metrics)
    write_sweep(test, bundle, calib_params, assessment["test"]["weeks"], args.plots, args.figures)
    registry = register(args.bundle, train_run=read_json(args.train_run), calib_params=calib_params, params=params,
                        assessment=assessment, metrics=metrics, test=test,
                        artifacts={"plots": [args.figures / "threshold_sweep.png"],
                                   "plot_data": [args.plots / "threshold_sweep.csv"], "reports": [args.metrics]})
    write_json(args.registry, registry)
    d = metrics["decision"]
    print(f"evaluate: policy {d['policy']}, hand off at score >= {d['threshold_score']}: "
          f"{d['handoffs_per_week']:.1f}/week at precision {d['precision']:.3f}; model {registry['registered_model']} "
          f"version {registry.get('version')} promoted={registry['promoted']}")
    for line in handoff_lines({**assessment, **metrics}, calib_params, synthetic=truth is not None):
        print(line)
    if not notes:
        print(f"  no handoff notes: {d['handoffs']} test-period leads reached the threshold score "
              f"{d['threshold_score']}")


if __name__ == "__main__":
    main()
