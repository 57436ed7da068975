"""The real DVC pipeline end to end on a small synthetic export, and what it leaves in MLflow."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import ROOT, copy_of, copy_repo, run, tool_env

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
    assessment = json.loads((pipeline_repo / "reports" / "assess.json").read_text())
    metrics = json.loads((pipeline_repo / "reports" / "metrics.json").read_text())
    for key in (
        "auc",
        "pr_auc",
        "log_loss",
        "brier",
        "ece",
        "lift_at_10pct",
        "baseline_lr_auc",
        "legacy_auc",
        "oracle_auc",
    ):
        assert key in assessment["test"], key
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
    assert "test_auc" in run_.data.metrics and "data_hash" in run_.data.tags
    assert "mlflow.source.git.commit" in run_.data.tags  # MLflow records the commit itself
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


def test_forced_retraining_gives_an_identical_model_and_metrics(pipeline_repo: Path, tmp_path: Path) -> None:
    repo = copy_of(pipeline_repo, tmp_path / "repo")
    model = repo / "data" / "artifacts" / "model.txt"
    first = (model.read_bytes(), (repo / "reports" / "train.json").read_bytes())
    for _ in range(2):
        run([sys.executable, "-m", "dvc", "repro", "-f", "-s", "train"], repo)
        assert (model.read_bytes(), (repo / "reports" / "train.json").read_bytes()) == first


def test_a_threshold_experiment_reruns_only_calibrate_and_what_follows(pipeline_repo: Path, tmp_path: Path) -> None:
    """Only the stages that use the threshold re-run: not the calibrator fit, and not assess, whose metrics and six
    figures stay as they were (byte for byte) while the sweep is redrawn. A handoff that costs more than a conversion
    is worth hands off nobody: every stage still succeeds (exit 0), and the notes and the reports say why they are
    empty."""
    repo = copy_of(pipeline_repo, tmp_path / "repo")
    figures = repo / "reports" / "figures"
    before = {p.name: p.read_bytes() for p in figures.iterdir()} | {
        "assess.json": (repo / "reports" / "assess.json").read_bytes()}
    out = run([sys.executable, "-m", "dvc", "exp", "run", "-S", "calibrate.cost_per_handoff=5000"],
              repo, timeout=900).stdout
    ran = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]
    skipped = {line.split("'")[1] for line in out.splitlines() if line.endswith("didn't change, skipping")}
    assert ran == ["calibrate", "explain", "evaluate", "score"], out
    assert skipped == {"generate", "ingest", "featurize", "train", "calibrator", "assess"}, out
    after = {p.name: p.read_bytes() for p in figures.iterdir()} | {
        "assess.json": (repo / "reports" / "assess.json").read_bytes()}
    assert {k for k in before if before[k] != after[k]} == {"threshold_sweep.png"}
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert metrics["decision"]["handoffs"] == metrics["explain"]["notes"] == 0
    assert "no handoff notes" in out and "0 handoff notes" in out
    assert "No lead recommended to sales" in (repo / "data" / "handoff" / "notes.md").read_text()
    assert (pl.read_parquet(repo / "data" / "scores" / "scores.parquet")["decision"] == "nurture").all()
    shown = run([sys.executable, "-m", "dvc", "exp", "show", "--json"], repo).stdout
    assert "5000" in shown and "handoffs_per_week" in shown
    c = client(repo)
    train_run = json.loads((repo / "data" / "artifacts" / "train_run.json").read_text())["run_id"]
    calib_runs = c.search_runs([c.get_experiment_by_name("leadlift").experiment_id],
                               filter_string=f"tags.`leadlift.training_run_id` = '{train_run}'")
    assert {r.data.params["calibrate.cost_per_handoff"] for r in calib_runs} >= {"500.0", "5000"}
    # The new version's gate compared it with the champion, the same model at another threshold, on the same AUC.
    registry = json.loads((repo / "data" / "artifacts" / "registry.json").read_text())
    assert registry["champion_auc_on_this_test"] == registry["test_auc"] and registry["promoted"]


@pytest.mark.server
def test_a_real_mlflow_server_receives_the_run_the_version_and_the_alias(pipeline_repo: Path, tmp_path: Path) -> None:
    repo = copy_of(pipeline_repo, tmp_path / "repo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "art"),
        ],
        cwd=tmp_path,
        env=tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError("mlflow server did not start") from None
                time.sleep(1)
        env = {**tool_env(), "MLFLOW_TRACKING_URI": uri}
        for stage in ("train", "assess", "evaluate"):  # the stages that write to MLflow
            subprocess.run([sys.executable, "-m", "dvc", "repro", "-f", "-s", stage], cwd=repo, env=env, check=True,
                           capture_output=True, text=True, timeout=600)
        from mlflow import MlflowClient

        c = MlflowClient(tracking_uri=uri)
        train_run = json.loads((repo / "data" / "artifacts" / "train_run.json").read_text())["run_id"]
        assert c.get_run(train_run).data.metrics["test_auc"] > 0.5
        version = c.get_model_version_by_alias("leadlift", "champion")
        assert version.tags["training_run_id"] == train_run
        assert {f.path for f in c.list_artifacts(train_run, "plots")} >= {"plots/roc.png"}
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_the_default_synthetic_run_keeps_lightgbm_and_its_calibrated_scores_keep_the_ranking(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full-size default `dvc repro` (40,000 leads): the figures issue 15 asks of calibration and model choice."""
    from pipelines.whatif import what_if

    repo = copy_repo(tmp_path / "repo", {})
    run([sys.executable, "-m", "dvc", "repro"], repo, timeout=1800)
    metrics = json.loads((repo / "reports" / "assess.json").read_text())
    train = json.loads((repo / "reports" / "train.json").read_text())
    t = metrics["test"]
    assert metrics["model"] == train["model"] == "lightgbm"
    assert t["distinct_scores"] >= 80
    assert abs(t["auc"] - t["auc_calibrated_score"]) <= 0.002 and t["auc_calibrated_probability"] == t["auc"]
    assert t["ece"] <= 0.02
    assert 0.0 < t["probability_min"] and t["probability_max"] < 1.0
    monkeypatch.chdir(repo)
    asked = 6 * 15  # reps x leads a rep works a week
    result = what_if(repo / "data" / "artifacts", repo / "data" / "features" / "features.parquet", policy="capacity",
                     overrides={"reps": 6, "leads_per_rep_per_week": 15})
    weekly = next(iter(result["rows"].values()))["handoffs_per_week"]
    assert abs(weekly - asked) <= 0.05 * asked, weekly
