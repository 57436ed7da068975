"""The pipeline on two real public exports, by their source mappings alone (skipped without ../shared/data)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from features.leakguard import LeakError
from pipelines.realdata import run_source, source_flags
from tests.conftest import ROOT, SHARED_DATA, copy_repo, needs_shared_data, run

pytestmark = [needs_shared_data, pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")]

LEAKY = {
    "x_education": {"Tags": "categorical", "Lead Quality": "categorical"},
    "bank_marketing": {"duration": "numeric"},
}


def run_quietly(source: Path, report: Path, workdir: Path | None = None) -> dict:  # type: ignore[type-arg]
    with contextlib.redirect_stdout(io.StringIO()):
        run_source(source, report, workdir=workdir, track=False)  # MLflow logging: tests/test_crm_exports.py
    return json.loads(report.read_text())


def test_source_flags_turn_a_mappings_overrides_into_dvc_set_flags(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    mapping = tmp_path / "mine.yaml"
    mapping.write_text(yaml.safe_dump({"name": "mine", "params": {
        "featurize": {"split": {"train": 0.5, "valid": 0.2, "test": 0.3}}, "train": {"refit_on_train_and_valid": True},
        "calibrate": {"recalibrate_recent": 0.1}}}, sort_keys=False))
    assert source_flags(mapping) == [
        "-S", f"base.source={mapping}", "-S", "featurize.split.train=0.5", "-S", "featurize.split.valid=0.2",
        "-S", "featurize.split.test=0.3", "-S", "train.refit_on_train_and_valid=true",
        "-S", "+calibrate.recalibrate_recent=0.1"]


def test_dvc_runs_a_real_export_end_to_end_with_the_mappings_params(tmp_path: Path) -> None:
    """`dvc exp run $(leadlift source-params ...)` gives the same model as run-source, and `score` scores the
    export's newest leads (there is no synthetic batch to score for a real export)."""
    repo = copy_repo(tmp_path / "repo", {})
    source = repo / "sources" / "x_education.yaml"
    mapping = yaml.safe_load(source.read_text())
    mapping["leads"]["path"] = str(SHARED_DATA / "x-education-leads" / "Leads.csv")
    source.write_text(yaml.safe_dump(mapping, sort_keys=False))
    run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qam", "absolute path"], repo)
    flags = run(["leadlift", "source-params", "sources/x_education.yaml"], repo).stdout.split()
    run([sys.executable, "-m", "dvc", "exp", "run", *flags], repo, timeout=900)
    metrics = json.loads((repo / "reports" / "assess.json").read_text())
    committed = json.loads((ROOT / "reports" / "real" / "x_education.json").read_text())
    assert metrics["test"]["auc"] == pytest.approx(committed["test"]["auc"], abs=1e-9)
    assert metrics["test"]["baseline_lr_auc"] == pytest.approx(committed["test"]["baseline_lr_auc"], abs=1e-9)
    scores = pl.read_parquet(repo / "data" / "scores" / "scores.parquet")
    assert scores.height == 2000 and not (repo / "data" / "raw" / "leads.parquet").exists()


@pytest.mark.parametrize("name", sorted(LEAKY))
def test_every_feature_of_a_real_mapping_has_its_own_reason_in_both_directions(name: str) -> None:
    """Without them a real source's notes fall back to the catalog's generic sentences, written for CRM events."""
    leads = yaml.safe_load((ROOT / "sources" / f"{name}.yaml").read_text())["leads"]
    features = {**leads["categorical"], **leads["numeric"]}
    missing = sorted(c for c, meta in features.items() if set((meta.get("reason") or {})) != {"for", "against"})
    assert not missing, f"{name}: no reason template for {missing}"
    assert leads["who"] and leads["what_happened"]


@pytest.mark.parametrize("name", sorted(LEAKY))
def test_real_handoff_notes_are_plain_words_for_every_recommended_lead(name: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SQL of the test period gets a note; no note shows a column name, a placeholder or a missing value."""
    monkeypatch.chdir(ROOT)
    report = run_quietly(ROOT / "sources" / f"{name}.yaml", tmp_path / "report.json", workdir=tmp_path / "work")
    notes = [json.loads(line) for line in (tmp_path / "work" / "handoff" / "notes.jsonl").read_text().splitlines()]
    assert len(notes) == report["explain"]["notes"] == report["decision"]["handoffs"] > 0
    mapping = yaml.safe_load((ROOT / "sources" / f"{name}.yaml").read_text())["leads"]
    columns = {*mapping["categorical"], *mapping["numeric"], *mapping.get("rename", {}),
               *mapping.get("rename", {}).values()}
    # Column names that are also plain words ("age", "job", "loan", "contact"...) cannot be told apart from prose.
    technical = {c for c in columns if "_" in c or "." in c or " " in c}
    for note in notes:
        texts = [note["headline"], note["who"], note["what_happened"], note["urgency"]["text"],
                 *(r["text"] for r in note["reasons"]), *([note["against"]["text"]] if note["against"] else [])]
        for text in texts:
            assert text and "{" not in text and "None" not in text and "nan" not in text.split(), (
                note["lead_id"],
                text,
            )
            assert not [c for c in technical if c in text], (note["lead_id"], text)
        assert all(r["points"] >= 1.0 for r in note["reasons"][1:])


@pytest.mark.parametrize("name", sorted(LEAKY))
def test_the_leak_guard_catches_the_leaky_columns_by_itself(name: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the mapping's drops of the known leaks and declare them as features: featurize must refuse them."""
    monkeypatch.chdir(ROOT)
    mapping = yaml.safe_load((ROOT / "sources" / f"{name}.yaml").read_text())
    mapping["leads"]["drop_leaky"] = [c for c in mapping["leads"]["drop_leaky"] if c not in LEAKY[name]]
    for column, kind in LEAKY[name].items():
        mapping["leads"][kind][column] = {"group": "engagement", "description": f"{column}, declared as a feature"}
    source = tmp_path / f"{name}.yaml"
    source.write_text(yaml.safe_dump(mapping, sort_keys=False))
    with pytest.raises(LeakError) as caught:
        run_quietly(source, tmp_path / "report.json")
    refused = {f.column for f in caught.value.findings if not f.allowed}
    assert refused == set(LEAKY[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LEAKY))
def test_real_reports_regenerate_identically_and_meet_their_floors(name: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    report = run_quietly(ROOT / "sources" / f"{name}.yaml", tmp_path / "report.json")
    committed = json.loads((ROOT / "reports" / "real" / f"{name}.json").read_text())
    assert report["test"] == committed["test"] and report["decision"] == committed["decision"]
    test = report["test"]
    assert test["auc"] >= test["baseline_lr_auc"]
    assert report["drift"]["conversion_rate"]["test"] > 0
    assert "test_ece_before" in report["recalibration"] and "test_ece_after" in report["recalibration"]
    assert report["train"]["refit_on_train_and_valid"] and report["recalibration"]["window_leads_in_sample"] == 0
    if name == "x_education":
        assert test["auc"] >= 0.89
    else:
        assert report["drift"]["shift_detected"] and test["auc"] >= 0.67
