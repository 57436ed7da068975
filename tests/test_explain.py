"""Reason codes on a trained bundle: additivity, fidelity to the generator's true drivers, and behaviour."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.spec import to_matrix
from models.baseline import LinearBaseline
from models.bundle import GbmScorer
from models.treeshap import TreeShap
from pipelines.bundle import load_bundle
from pipelines.explain import load_catalog
from pipelines.score import notes_for_leads

AS_OF = datetime(2026, 3, 20, 12, tzinfo=UTC)


def lead() -> pl.DataFrame:
    return pl.DataFrame({
        "lead_id": ["x"], "created_at": [AS_OF - timedelta(days=10)], "industry": ["software"],
        "employee_band": ["51-200"], "region": ["North America"], "job_title": ["VP of Engineering"],
        "lead_source": ["organic search"], "email_domain_kind": ["corporate"], "buying_timeline": ["3-6 months"],
    })


def events(*kinds_days: tuple[str, float]) -> pl.LazyFrame:
    return pl.DataFrame({
        "lead_id": ["x"] * len(kinds_days),
        "occurred_at": [AS_OF - timedelta(days=d) for _, d in kinds_days],
        "event_type": [k for k, _ in kinds_days],
    }, schema={"lead_id": pl.String, "occurred_at": pl.Datetime("us", "UTC"), "event_type": pl.String}).lazy()


ACTIVE = (("page_pricing", 1.0), ("page_pricing", 2.0), ("page_pricing", 3.5), ("page_product", 4.0),
          ("email_open", 5.0), ("email_click", 5.0))


def note_for(repo: Path, *kinds_days: tuple[str, float]) -> dict:  # type: ignore[type-arg]
    bundle = load_bundle(repo if (repo / "model.txt").exists() else repo / "data" / "artifacts")
    return notes_for_leads(bundle, lead(), events(*kinds_days), as_of=AS_OF, catalog=load_catalog())[0]


def test_contributions_plus_expected_value_equal_the_raw_score(pipeline_repo: Path) -> None:
    bundle = load_bundle(pipeline_repo / "data" / "artifacts")
    test = pl.read_parquet(pipeline_repo / "data" / "features" / "features.parquet").filter(pl.col("split") == "test")
    X = to_matrix(test, bundle.spec)
    explainer = TreeShap.from_booster(bundle.booster)
    contrib = explainer.contributions(X)
    gbm = GbmScorer(bundle.booster).margin(X)
    np.testing.assert_allclose(contrib[:, :-1].sum(axis=1) + explainer.expected_value, gbm, atol=1e-9)
    np.testing.assert_allclose(contrib, bundle.booster.predict(X, pred_contrib=True), atol=1e-6)
    # Whichever model was chosen, its reason codes add up to its own margin.
    np.testing.assert_allclose(bundle.scorer.contributions(X).sum(axis=1), bundle.margin(X), atol=1e-9)


def test_top_reason_names_a_true_driver_for_most_recommended_leads(pipeline_repo: Path) -> None:
    metrics = json.loads((pipeline_repo / "reports" / "metrics.json").read_text())
    assert metrics["explain"]["notes"] > 50
    assert metrics["explain"]["top_reason_in_true_top3"] >= 0.8


def test_adding_a_recent_demo_request_raises_the_score_and_names_it(pipeline_repo: Path) -> None:
    before = note_for(pipeline_repo, *ACTIVE)
    after = note_for(pipeline_repo, *ACTIVE, ("demo_request", 1.0))
    assert after["probability"] > before["probability"]
    named = [r for r in after["reasons"] if r["points"] > 0 and "demo" in r["text"].lower()]
    assert named, after["reasons"]
    assert not [r for r in before["reasons"] if "demo" in r["text"].lower()]


def test_removing_pricing_visits_removes_the_pricing_reason(pipeline_repo: Path) -> None:
    with_pricing = note_for(pipeline_repo, *ACTIVE)
    assert any(r["group"] == "pricing_interest" and r["points"] > 0 for r in with_pricing["reasons"])
    without = note_for(pipeline_repo, *[e for e in ACTIVE if e[0] != "page_pricing"])
    assert not any(r["group"] == "pricing_interest" and r["points"] > 0 for r in without["reasons"])
    assert without["probability"] < with_pricing["probability"]


def test_handoff_notes_read_as_plain_language(pipeline_repo: Path) -> None:
    spec = json.loads((pipeline_repo / "data" / "artifacts" / "feature_spec.json").read_text())
    names = {f["name"] for f in spec["features"]} | {"lead_id", "created_at"}
    notes = [json.loads(line) for line in (pipeline_repo / "data" / "handoff" / "notes.jsonl").read_text().splitlines()]
    assert notes
    # The highest-scoring leads (notes are sorted by probability) have three reasons of at least a point each.
    assert sum(len(n["reasons"]) >= 3 for n in notes[:200]) >= 180
    for note in notes[:200]:
        assert note["reasons"] and all(r["points"] >= 1.0 for r in note["reasons"][1:])
        texts = [r["text"] for r in note["reasons"]] + [note["who"], note["urgency"]["text"], note["what_happened"]]
        texts += [note["against"]["text"]] if note["against"] else []
        for text in texts:
            assert text and "{" not in text and not any(n in text.split() for n in names if "_" in n), text
        assert "@" not in json.dumps(note)  # no email addresses: they are PII and not allowed in notes


def test_every_handoff_note_keeps_the_note_rules(pipeline_repo: Path) -> None:
    """Reasons for add a whole point each; none cites a count of zero; urgency covers every event a reason cites."""
    notes = [json.loads(line) for line in (pipeline_repo / "data" / "handoff" / "notes.jsonl").read_text().splitlines()]
    assert notes
    zero_count = re.compile(r"(?<![\d.])0 (?!days?\b)[a-z]")
    cited_any = 0
    for note in notes:
        assert all(r["points"] >= 1.0 for r in note["reasons"]), note["reasons"]
        said = [*note["reasons"], *([note["against"]] if note["against"] else [])]
        assert not [r["text"] for r in said if zero_count.search(r["text"])]
        events = {k for r in said for k in r["events"]}
        urgency = note["urgency"]
        if events:
            cited_any += 1
            assert not urgency["text"].startswith("No buying signal"), note
            assert urgency["days_since_last_signal"] is not None
        if note["reasons"] and not any(r["events"] for r in note["reasons"]):
            assert note["headline"].endswith(note["reasons"][0]["text"])
    assert cited_any > len(notes) / 2


@pytest.mark.parametrize("kind", ["logistic", "blend"])
def test_a_bundle_whose_chosen_model_is_not_the_gbm_scores_and_explains_exactly(
        kind: str, pipeline_repo: Path, tmp_path: Path) -> None:
    """score, explain, evaluate and the MLflow pyfunc all go through the bundle's scorer, whatever model won."""
    from models.bundle import scorer_dict
    from models.choice import BLEND_WEIGHTS
    from pipelines.bundle import write_manifest
    from pipelines.mlflow_model import LeadliftModel

    bundle_dir = tmp_path / "bundle"
    shutil.copytree(pipeline_repo / "data" / "artifacts", bundle_dir)
    baseline = json.loads((bundle_dir / "baseline.json").read_text())
    (bundle_dir / "scorer.json").write_text(json.dumps(scorer_dict(kind, baseline, weights=BLEND_WEIGHTS)))
    write_manifest(bundle_dir)  # as calibrate would seal a bundle whose chosen model this is
    bundle = load_bundle(bundle_dir)
    assert bundle.scorer.kind == kind
    test = pl.read_parquet(pipeline_repo / "data" / "features" / "features.parquet").filter(pl.col("split") == "test")
    X = to_matrix(test.head(300), bundle.spec)
    contrib = bundle.scorer.contributions(X)
    np.testing.assert_allclose(contrib.sum(axis=1), bundle.margin(X), atol=1e-9)
    lr = LinearBaseline.from_dict(baseline).margin(X)
    assert not np.allclose(bundle.margin(X), GbmScorer(bundle.booster).margin(X))
    if kind == "logistic":
        np.testing.assert_allclose(bundle.margin(X), lr)
    note = note_for(bundle_dir, *ACTIVE)
    assert note["reasons"] and abs(sum(r["points"] for r in note["reasons"])) > 0
    model = LeadliftModel()
    model.load_context(type("Context", (), {"artifacts": {"bundle": str(bundle_dir)}})())
    names = [f["name"] for f in bundle.spec["features"]]
    out = model.predict(None, test.head(300).select(names).to_pandas())
    np.testing.assert_allclose(out["probability"].to_numpy(), bundle.probability(X))
