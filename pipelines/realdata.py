"""`leadlift run-source`: the whole pipeline on an export, by its source mapping alone, without DVC.

ingest -> featurize -> train -> calibrator -> calibrate -> assess and evaluate -> explain, in a work folder (the
handoff notes for the test period's SQL recommendations land in <workdir>/handoff when a workdir is given), with a
report in the structure of reports/assess.json and reports/metrics.json together, plus drift (does the test period
convert differently?) and, optionally, recalibration on the most recent window before the test period.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from rich.console import Console

from features.spec import to_matrix
from features.timing import timing_lines
from models import metrics as M
from models.baseline import LinearBaseline
from models.bundle import scorer_from_dict
from models.calibration import choose_calibrator
from models.threshold import choose_threshold, period_weeks, policy_inputs
from pipelines import assess, calibrate, calibrator, evaluate, explain, ingest, train
from pipelines.bundle import load_bundle, write_manifest
from pipelines.featurize import featurize
from pipelines.io import load_params, params_file, read_json, write_frame, write_json, write_text


def mapping_overrides(source: Path) -> dict[str, Any]:
    """The mapping's own `params:` section (section -> values), empty when it has none. A missing or broken mapping
    is bad input naming it (the first thing run-source and source-params read)."""
    raw = ingest.read_mapping_yaml(source)
    return (raw.get("params") if isinstance(raw, dict) else None) or {}


def source_params(source: Path, params_path: Path | None = None) -> dict[str, Any]:
    """The params (`params_file`: params.yaml) with the mapping's own `params:` overrides (e.g. a business value per
    conversion) on top."""
    params = copy.deepcopy(load_params(path=params_path))
    for section, values in mapping_overrides(source).items():
        params.setdefault(section, {}).update(values)
    params["base"]["source"] = str(source)
    return params


def source_flags(source: Path, params_path: Path | None = None) -> list[str]:
    """`dvc exp run` flags for `source`: base.source plus every `params:` override as `-S section.key=value`.

    Nested values (a split) become one flag per leaf, and values are written as YAML so DVC parses them back."""
    overrides = mapping_overrides(source)

    def leaves(prefix: str, value: Any) -> list[tuple[str, Any]]:
        if isinstance(value, dict):
            return [leaf for k, v in value.items() for leaf in leaves(f"{prefix}.{k}", v)]
        return [(prefix, value)]

    known = load_params(path=params_path)

    def exists(key: str) -> bool:
        node: Any = known
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    flags = ["-S", f"base.source={source}"]
    for section_name, values in overrides.items():
        for key, value in leaves(section_name, values):
            text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
            # "+key" adds a key params.yaml does not have (Hydra's override grammar, which `dvc exp run -S` uses).
            flags += ["-S", f"{'' if exists(key) else '+'}{key}={text}"]
    return flags


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    return {"base": params["base"], **params.get(name, {})}


def psi(expected: np.ndarray, actual: np.ndarray, *, bins: int = 10) -> float:
    """Population stability index of a score between two periods (> 0.25 is usually called a major shift)."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    e = np.histogram(np.clip(expected, edges[0], edges[-1]), edges)[0] / len(expected)
    a = np.histogram(np.clip(actual, edges[0], edges[-1]), edges)[0] / len(actual)
    e, a = np.clip(e, 1e-6, None), np.clip(a, 1e-6, None)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(frame: pl.DataFrame, bundle: Any) -> dict[str, Any]:
    rates = {s: float(frame.filter(pl.col("split") == s)["label"].cast(pl.Float64).mean() or 0.0)  # type: ignore[arg-type]
             for s in ("train", "valid", "test")}
    p = {s: bundle.probability(to_matrix(frame.filter(pl.col("split") == s), bundle.spec)) for s in ("train", "test")}
    ratio = rates["test"] / rates["train"] if rates["train"] else None
    return {
        "conversion_rate": rates,
        "test_vs_train_rate_ratio": ratio,
        "score_psi_test_vs_train": psi(p["train"], p["test"]),
        "shift_detected": bool(ratio is not None and (ratio > 1.25 or ratio < 0.8)),
    }


def recalibration(frame: pl.DataFrame, bundle: Any, params: dict[str, Any], share: float,
                  valid_margins: pl.DataFrame, calibrator_params: dict[str, Any]) -> dict[str, Any]:
    """Refit the calibrator on the newest `share` of the pre-test (train + valid) period and re-choose the threshold;
    report test ECE and the threshold's test precision before and after.

    Window rows in valid use their held-out margins (as the main calibrator does); any older rows use the final
    booster's own, in-sample margins, and their count is reported.
    """
    pre = frame.filter(pl.col("split").is_in(["train", "valid"])).sort("t0", "lead_id")
    recent = pre.tail(max(1, int(round(share * pre.height))))
    test = frame.filter(pl.col("split") == "test")
    y_r, y_t = recent["label"].to_numpy().astype(float), test["label"].to_numpy().astype(float)
    own = bundle.margin(to_matrix(recent, bundle.spec))
    held = recent.select("lead_id").join(valid_margins, on="lead_id", how="left", maintain_order="left")["margin"]
    m_r = np.where(held.is_null().to_numpy(), own, held.fill_null(0.0).to_numpy())
    m_t = bundle.margin(to_matrix(test, bundle.spec))
    cal, _ = choose_calibrator(m_r, y_r, method=calibrator_params["method"],
                               min_positives_isotonic=int(calibrator_params["min_positives_isotonic"]))
    p_before, p_after = bundle.calibrator.predict(m_t), cal.predict(m_r)
    weeks = period_weeks(recent["t0"])
    t_after = float(choose_threshold(y_r, p_after, policy=params["policy"], weeks=weeks, legacy_handoffs=None,
                                     **policy_inputs(params)))
    p_test_after = cal.predict(m_t)
    t_before = bundle.threshold_probability

    def precision(p: np.ndarray, t: float) -> float | None:
        sel = p >= t
        return float(y_t[sel].mean()) if sel.any() else None

    return {
        "window_share_of_pre_test": share,
        "window_leads": int(recent.height),
        "window_leads_in_sample": int(held.null_count()),
        "method": cal.method,
        "test_ece_before": M.ece(y_t, p_before),
        "test_ece_after": M.ece(y_t, p_test_after),
        "threshold_probability_before": t_before,
        "threshold_probability_after": t_after,
        "test_precision_before": precision(p_before, t_before),
        "test_precision_after": precision(p_test_after, t_after),
        "test_handoffs_before": int((p_before >= t_before).sum()),
        "test_handoffs_after": int((p_test_after >= t_after).sum()),
    }


def run_source(source: Path, report: Path, *, workdir: Path | None = None, recalibrate_recent: float | None = None,
               console: Console | None = None, root: Path | None = None, track: bool = True,
               params_path: Path | None = None) -> dict[str, Any]:
    """The whole pipeline on `source`'s export, logged to MLflow as the DVC stages log it (same store resolution:
    MLFLOW_TRACKING_URI, else MLflow's default), and registered under the source's own model name.

    `root` is the folder the mapping's relative paths start from (default: the working directory); `track=False`
    skips MLflow (the report is the same); `params_path` the params file (default `params_file()`)."""
    console = console or Console(stderr=True)
    params = source_params(source, params_path)
    overrides = mapping_overrides(source)
    console.print(f"[bold]{source}[/]: effective params = {params_file(params_path)} + the mapping's overrides "
                  f"{_flat_overrides(overrides) or '(none)'}")
    base = Path(root) if root is not None else Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir or tmp)
        interim, art = work / "interim", work / "artifacts"
        console.print("ingest")
        ingest_report = ingest.run(source, interim, report=work / "ingest.json", params=section(params, "ingest"),
                                   root=root)
        console.print("featurize")
        src = read_json(interim / "source.json")
        frame, spec, feat_report = featurize(
            pl.scan_parquet(interim / "leads.parquet"), pl.scan_parquet(interim / "events.parquet"),
            pl.scan_parquet(interim / "outcomes.parquet"), src, section(params, "featurize"))
        for line in timing_lines(feat_report["target_timing"]):
            console.print(line)
        write_frame(frame, work / "features.parquet")
        write_json(art / "feature_spec.json", spec)
        console.print("train")
        train_params = section(params, "train")
        trained = train.run(work / "features.parquet", art / "feature_spec.json", params=train_params)
        write_text(art / "model.txt", trained.model_text)
        write_json(art / "baseline.json", trained.baseline)
        write_json(art / "importance.json", trained.importance)
        write_json(art / "scorer.json", trained.scorer)
        console.print(train.train_summary(trained.report))
        console.print("calibrator")
        calib_params = section(params, "calibrate")
        calibrate.check_moved_params(calib_params, source)
        scorer = scorer_from_dict(trained.scorer, trained.model_text)
        calib = calibrator.fit(frame, scorer, spec, section(params, "calibrator"), trained.valid_margins)
        console.print("calibrate")
        threshold = calibrate.run(frame, calib, calib_params, trained.valid_margins, model=scorer.kind)
        console.print(calibrate.calibrate_summary(calib, threshold))
        write_json(art / "calibrator.json", calib)
        write_json(art / "threshold.json", threshold)
        write_manifest(art)
        bundle = load_bundle(art)
        console.print("assess, evaluate")
        test = frame.filter(pl.col("split") == "test")
        truth_path = base / src["truth"] if src.get("truth") else None
        truth = pl.read_parquet(truth_path) if truth_path is not None and truth_path.exists() else None
        model = assess.Model(bundle.model_text, bundle.scorer, bundle.calibrator, bundle.spec)
        result = assess.assess_frame(test, model, LinearBaseline.from_dict(trained.baseline), truth)
        result.update(evaluate.decision_frame(test, bundle, calib_params))
        y_test = test["label"].to_numpy().astype(float)
        seed = int(params["base"]["seed"])
        result["test"]["auc_interval_90"] = list(
            M.auc_interval(y_test, bundle.margin(to_matrix(test, spec)), seed=seed)
        )
        if "oracle_auc" in result["test"]:
            result["test"]["auc_vs_oracle"] = result["test"]["auc"] / result["test"]["oracle_auc"]
        result["source"] = src.get("name")
        result["threshold"] = threshold
        result["calibration"] = calib["choice"]
        result["train"] = trained.report
        result["featurize"] = feat_report
        result["ingest"] = ingest_report
        result["drift"] = drift_report(frame, bundle)
        result["params"] = {"overrides_from_mapping": overrides, "effective": params,
                            "note": "params.yaml plus the mapping's `params:`; `leadlift source-params` turns the "
                                    "overrides into `dvc exp run -S` flags, which DVC writes into params.yaml in the "
                                    "workspace (its convention: the experiment's params live there)"}
        console.print("explain")
        top = int(params["explain"]["top_reasons"])
        notes = explain.notes_for(test, bundle, explain.load_catalog(), all_leads=False, top=top, interim=interim)
        why = "" if notes.height else explain.none_recommended(test, bundle)
        explain.write_notes(notes, work / "handoff", top=top, none_because=why)
        result["handoff_summary"] = evaluate.handoff_lines(result, section(params, "calibrate"),
                                                           synthetic=bool(src.get("truth")))
        for line in result["handoff_summary"] + ([f"  no handoff notes: {why}"] if why else []):
            console.print(line)
        result["explain"] = {"notes": notes.height, "sql_leads": int(result["decision"]["handoffs"]),
                             "example_note": json.loads(notes["note"][0]) if notes.height else None,
                             "none_because": why or None}
        share = recalibrate_recent if recalibrate_recent is not None else params["calibrate"].get("recalibrate_recent")
        if share:
            result["recalibration"] = recalibration(frame, bundle, calib_params, float(share), trained.valid_margins,
                                                  section(params, "calibrator"))
        write_json(report, result)
        if track:
            result["registry"] = _track(work, art, params, trained, bundle, result, report, test)
            write_json(report, result)
    out = {"source": result["source"], "test_auc": result["test"]["auc"],
           "baseline_lr_auc": result["test"]["baseline_lr_auc"], "ece": result["test"]["ece"], "report": str(report)}
    if "auc_vs_oracle" in result["test"]:
        out["auc_vs_oracle"] = result["test"]["auc_vs_oracle"]
    if "registry" in result:
        out["registered_model"] = result["registry"]["registered_model"]
        out["model_version"] = result["registry"].get("version")
    return out


def _track(work: Path, art: Path, params: dict[str, Any], trained: Any, bundle: Any, metrics: dict[str, Any],
           report: Path, test: pl.DataFrame) -> dict[str, Any]:
    """The MLflow runs the DVC stages write: a training run with the test metrics and figures (assess), then the
    experiment's run nested under it with the decision, the sweep and the registered pyfunc (evaluate; gated
    `champion` within the source's own model name)."""
    train_run = train.log_training(section(params, "train"), trained.report, {"model": art / "model.txt",
                                   "spec": art / "feature_spec.json", "baseline": art / "baseline.json"},
                                   [work / "features.parquet", art / "feature_spec.json"])
    write_json(art / "train_run.json", train_run)
    plots_dir, figures = work / "plots", work / "figures"
    model = assess.Model(bundle.model_text, bundle.scorer, bundle.calibrator, bundle.spec)
    assess.write_figures(test, model, LinearBaseline.from_dict(trained.baseline), trained.importance, plots_dir,
                         figures, seed=int(params["base"]["seed"]),
                         shap_sample=int(section(params, "assess")["shap_sample"]))
    assess.log_assessment(train_run, metrics, report, plots_dir, figures)
    calib_params = section(params, "calibrate")
    evaluate.write_sweep(test, bundle, calib_params, metrics["test"]["weeks"], plots_dir, figures)
    return evaluate.register(art, train_run=train_run, calib_params=calib_params, params=section(params, "evaluate"),
                             assessment=metrics, metrics=metrics, test=test,
                             artifacts={"plots": [figures / "threshold_sweep.png"],
                                        "plot_data": [plots_dir / "threshold_sweep.csv"], "reports": [report]})


def _flat_overrides(overrides: dict[str, Any]) -> str:
    from pipelines.tracking import flatten

    return ", ".join(f"{k}={v}" for k, v in flatten(overrides).items())
