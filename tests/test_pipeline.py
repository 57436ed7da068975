"""The real DVC pipeline end to end on a small synthetic export, and what it leaves in MLflow."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import ROOT, run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


def client(repo: Path):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def test_ci_runs_the_readme_test_command_exactly() -> None:
    readme = (ROOT / "README.md").read_text()
    command = "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && pytest"
    assert command in readme
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_repro_writes_every_stage_output(pipeline_repo: Path) -> None:
    metrics = json.loads((pipeline_repo / "reports" / "metrics.json").read_text())
    for key in ("auc", "pr_auc", "log_loss", "brier", "ece", "lift_at_10pct", "baseline_lr_auc", "legacy_auc", "oracle_auc"):
        assert key in metrics["test"], key
    for part in ("decision", "legacy"):
        assert "handoffs_per_week" in metrics[part] or "cutoff_70" in metrics[part]
    notes = (pipeline_repo / "data" / "handoff" / "notes.jsonl").read_text().splitlines()
    assert len(notes) == metrics["explain"]["notes"] > 0
    scores = pl.read_parquet(pipeline_repo / "data" / "scores" / "scores.parquet")
    assert scores.height > 0
    for fig in ("roc", "precision_recall", "calibration", "gains", "importance", "shap_summary", "threshold_sweep"):
        assert (pipeline_repo / "reports" / "figures" / f"{fig}.png").stat().st_size > 1000, fig


def test_second_repro_reruns_nothing(pipeline_repo: Path) -> None:
    out = run([sys.executable, "-m", "dvc", "repro"], pipeline_repo).stdout
    assert "Running stage" not in out, out
    status = run([sys.executable, "-m", "dvc", "status"], pipeline_repo).stdout
    assert "changed" not in status, status


def test_mlflow_holds_the_run_its_plots_and_the_champion(pipeline_repo: Path) -> None:
    c = client(pipeline_repo)
    version = c.get_model_version_by_alias("leadlift", "champion")
    train_run_id = json.loads((pipeline_repo / "data" / "artifacts" / "train_run.json").read_text())["run_id"]
    run_ = c.get_run(train_run_id)
    assert "test_auc" in run_.data.metrics and "git_commit" in run_.data.tags and "data_hash" in run_.data.tags
    plots = {f.path for f in c.list_artifacts(train_run_id, "plots")}
    assert {"plots/roc.png", "plots/calibration.png", "plots/shap_summary.png"} <= plots
    assert version.tags.get("training_run_id") == train_run_id


def test_no_pii_reaches_mlflow_params_tags_or_artifacts(pipeline_repo: Path) -> None:
    leads = pl.read_parquet(pipeline_repo / "data" / "raw" / "leads.parquet")
    secrets = set(leads["email"].drop_nulls().to_list()) | set(leads["name"].drop_nulls().to_list())
    store = [p for d in ("mlruns", "mlartifacts") for p in (pipeline_repo / d).rglob("*") if p.is_file()]
    assert store, "no MLflow artifacts found"
    blob = "\n".join(p.read_text(errors="ignore") for p in store if p.stat().st_size < 5_000_000)
    c = client(pipeline_repo)
    for r in c.search_runs([c.get_experiment_by_name("leadlift").experiment_id]):
        blob += json.dumps(r.data.params) + json.dumps(r.data.tags)
    emails = [s for s in secrets if "@" in s]
    assert emails and not [s for s in emails if s in blob]
    assert not [s for s in secrets if "@" not in s and len(s) > 6 and f'"{s}"' in blob]
