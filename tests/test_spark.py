"""Spark scale-out: on the same data, the same rows as one machine (scores bit for bit, quarantine, training frame)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from features import contract as C
from features.errors import BadInput

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning",
                                        "ignore::ResourceWarning")

@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local[2] SparkSession for every Spark test (it takes about 10 s to start)."""
    if shutil.which("java") is None:
        pytest.skip("no `java` on PATH: the Spark engine needs a JDK 17+")
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -e '.[spark]')")
    from pipelines.spark import session

    s = session("local[2]", conf={"spark.sql.shuffle.partitions": "8", "spark.driver.memory": "2g"})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 generated leads with what real batches hold: duplicate and null ids, leads without events, events for
    unknown leads and with no id, all in shuffled file order."""
    from pipelines.generate import run

    out = tmp_path_factory.mktemp("messy")
    run(out / "gen", leads=3000, seed=4242, start="2026-01-01", months=3, observation_days=14, horizon_days=60,
        progress=False)
    leads = pl.read_parquet(out / "gen" / "leads.parquet")
    events = pl.read_parquet(out / "gen" / "events.parquet")
    quiet = leads.slice(100, 20).with_columns(pl.format("quiet-{}", pl.int_range(20)).alias("lead_id"))
    broken = pl.concat([
        leads,
        leads.slice(200, 5),  # five ids twice: both copies are quarantined, and so are their events
        leads.slice(10, 3).with_columns(pl.lit(None, dtype=pl.String).alias("lead_id")),
        quiet,  # leads without a single event
    ]).sample(fraction=1.0, shuffle=True, seed=7)
    ghosts = events.head(30).with_columns(pl.format("ghost-{}", pl.int_range(30)).alias("lead_id"))
    no_id = events.slice(40, 5).with_columns(pl.lit(None, dtype=pl.String).alias("lead_id"))
    pl.concat([events, ghosts, no_id]).sample(fraction=1.0, shuffle=True, seed=8).write_parquet(
        out / "events.parquet", row_group_size=20_000)
    broken.write_parquet(out / "leads.parquet", row_group_size=1000)
    return out


def one_machine(leads: Path, events: Path, model: Path, out: Path, as_of: datetime | None = None
                ) -> tuple[dict[str, Any], pl.DataFrame, pl.DataFrame]:
    from pipelines.score import score_file

    report = score_file(leads, out / "one.parquet", events=events, model=model, as_of=as_of)
    scores = pl.read_parquet(out / "one.parquet").sort("lead_id")
    quarantine = pl.read_csv(out / "one.quarantine.csv", schema=C.QUARANTINE_SCHEMA)
    return report, scores, quarantine


def assert_same_scores(one: pl.DataFrame, spark: pl.DataFrame) -> None:
    assert spark.schema == one.schema
    assert spark.height == one.height and spark["lead_id"].n_unique() == spark.height
    bits = one["probability"].to_numpy().view(np.int64), spark["probability"].to_numpy().view(np.int64)
    assert np.array_equal(*bits), "probabilities differ in their bits"
    assert spark.equals(one)


def test_spark_engine_scores_a_messy_batch_exactly_as_one_machine(spark: Any, pipeline_repo: Path, messy: Path,
                                                                  tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.spark import read_dataset

    model = pipeline_repo / "data" / "artifacts"
    report, one, one_q = one_machine(messy / "leads.parquet", messy / "events.parquet", model, tmp_path)
    res = CliRunner().invoke(app, ["score", "--engine", "spark", "--master", "local[2]", "--buckets", "5",
                                   "--leads", str(messy / "leads.parquet"), "--events", str(messy / "events.parquet"),
                                   "--model", str(model), "--out", str(tmp_path / "spark")])
    assert res.exit_code == 0, res.output
    scores = read_dataset(tmp_path / "spark" / "scores").sort("lead_id")
    quarantine = read_dataset(tmp_path / "spark" / "quarantine")

    assert_same_scores(one, scores)
    assert quarantine.equals(one_q)  # same rows, same 1-based file row numbers, same reasons, same order
    reasons = dict(quarantine.group_by("table", "reason").len().select(
        pl.concat_str("table", "reason", separator=": "), "len").iter_rows())
    assert reasons["leads: duplicate lead_id"] == 10 and reasons["leads: missing lead_id"] == 3
    assert reasons["events: unknown lead"] == 30 and reasons["events: missing lead_id"] == 5
    assert reasons["events: lead quarantined"] > 0
    assert scores.filter(pl.col("lead_id").str.starts_with("quiet-")).height == 20
    assert scores.filter(pl.col("decision") == "SQL").height == report["sql"] > 0
    line = f"rows in {report['rows_in']} = scored {report['scored']} + quarantined {report['quarantined']}"
    assert line in res.output.replace("\n", " ") and report["quarantined"] == 13


def test_spark_engine_on_the_sample_batch_matches_one_machine_with_an_explicit_as_of(
    spark: Any, pipeline_repo: Path, tmp_path: Path
) -> None:
    """An as-of time before some leads existed quarantines them (and their events), naming their file rows, on both
    engines."""
    from pipelines.spark import run_score

    new = pipeline_repo / "data" / "new"
    model = pipeline_repo / "data" / "artifacts"
    created = pl.read_parquet(new / "leads.parquet")["created_at"].sort()
    as_of = created[created.len() * 3 // 4]
    report, one, one_q = one_machine(new / "leads.parquet", new / "events.parquet", model, tmp_path, as_of=as_of)
    got = run_score(spark, str(new / "leads.parquet"), str(tmp_path / "spark"), events=str(new / "events.parquet"),
                    model=model, as_of=as_of, buckets=4)
    from pipelines.spark import read_dataset

    assert_same_scores(one, read_dataset(tmp_path / "spark" / "scores").sort("lead_id"))
    quarantine = read_dataset(tmp_path / "spark" / "quarantine")
    assert quarantine.equals(one_q) and quarantine.height > 0
    # The late leads, and their events with them (as any quarantined lead's), on both engines alike.
    assert set(quarantine.select("table", "reason").unique().rows()) == {
        ("leads", "created after the as-of time"), ("events", "lead quarantined")}
    assert {k: got[k] for k in report if k in got} == {k: report[k] for k in report if k in got}


def test_featurize_spark_writes_the_featurize_stages_frame_spec_and_report(
    spark: Any, pipeline_repo: Path, tmp_path: Path
) -> None:
    from pipelines.io import load_params
    from pipelines.spark import read_dataset, run_featurize

    run_featurize(spark, pipeline_repo / "data" / "interim", tmp_path / "features", spec=tmp_path / "spec.json",
                  report=tmp_path / "report.json", params=load_params("featurize", pipeline_repo / "params.yaml"),
                  buckets=5)
    stage = pl.read_parquet(pipeline_repo / "data" / "features" / "features.parquet")
    frame = read_dataset(tmp_path / "features")
    assert frame.schema == stage.schema and frame.equals(stage)  # same rows in the same (t0, lead_id) order
    assert frame["split"].value_counts().sort("split").equals(stage["split"].value_counts().sort("split"))
    assert json.loads((tmp_path / "spec.json").read_text()) == json.loads(
        (pipeline_repo / "data" / "artifacts" / "feature_spec.json").read_text())
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(
        (pipeline_repo / "reports" / "featurize.json").read_text())


def test_a_file_level_problem_is_the_same_bad_input_on_both_engines(spark: Any, pipeline_repo: Path,
                                                                     tmp_path: Path) -> None:
    """No created_at parses in any bucket: one machine's error, raised on the driver from the merged facts."""
    from pipelines.score import score_file
    from pipelines.spark import run_score

    new = pipeline_repo / "data" / "new"
    leads = pl.read_parquet(new / "leads.parquet").head(40).with_columns(
        pl.format("not a date {}", pl.int_range(40)).alias("created_at"))
    leads.write_parquet(tmp_path / "leads.parquet")
    model = pipeline_repo / "data" / "artifacts"
    with pytest.raises(BadInput) as single:
        score_file(tmp_path / "leads.parquet", tmp_path / "one.parquet", model=model)
    with pytest.raises(BadInput) as scaled:
        run_score(spark, str(tmp_path / "leads.parquet"), str(tmp_path / "spark"), model=model, buckets=4)
    assert str(scaled.value) == str(single.value) and "created_at" in str(single.value)


def test_a_batch_one_machine_refuses_for_a_missing_input_spark_refuses_alike(spark: Any, pipeline_repo: Path,
                                                                             tmp_path: Path) -> None:
    """A model input absent from the file: the same refusal on the driver, before any scoring; allowed, the same
    gaps and warnings in both reports."""
    from pipelines.score import score_file
    from pipelines.spark import run_score

    new = pipeline_repo / "data" / "new"
    pl.read_parquet(new / "leads.parquet").drop("buying_timeline").write_parquet(tmp_path / "leads.parquet")
    model, leads, events = pipeline_repo / "data" / "artifacts", tmp_path / "leads.parquet", new / "events.parquet"
    with pytest.raises(BadInput) as single:
        score_file(leads, tmp_path / "one.parquet", events=events, model=model)
    with pytest.raises(BadInput) as scaled:
        run_score(spark, str(leads), str(tmp_path / "spark"), events=str(events), model=model, buckets=3)
    assert str(scaled.value) == str(single.value) and "--allow-missing" in str(single.value)
    assert not (tmp_path / "spark").exists()

    report = score_file(leads, tmp_path / "one.parquet", events=events, model=model, allow_missing=True)
    got = run_score(spark, str(leads), str(tmp_path / "spark"), events=str(events), model=model, buckets=3,
                    allow_missing=True)
    gap = next(g for g in got["missing_inputs"] if g["column"] == "buying_timeline")
    assert gap["absent"] and gap["missing"] == report["scored"] and got["warnings"]
    for key in ("missing_inputs", "warnings", "allow_missing", "scored", "sql"):
        assert got[key] == report[key], key


def test_merged_facts_of_a_tables_parts_equal_the_facts_of_the_whole() -> None:
    leads = pl.DataFrame({
        "lead_id": ["a", "b", None, "d", "e", "a", "g", "h"],
        "created_at": ["2026-01-01", "garbage", "2026-01-03", None, "2026-01-05", "2026-01-06", "oops", "2026-01-08"],
        "seats": ["1", "x", "3", "4", None, "6", "7", "8"],
    }).with_row_index(C.ROW, offset=1)
    kw: dict[str, Any] = {"numeric": {"seats": {}}, "now": datetime(2026, 6, 1), "file_checks": False}
    whole = C.validate(leads, **kw).facts["leads"]["summary"]
    parts = [C.validate(part, **kw).facts["leads"]["summary"]
             for part in (leads.filter(pl.col("lead_id").is_in(["a", "d", "g"])),
                          leads.filter(~pl.col("lead_id").is_in(["a", "d", "g"]) | pl.col("lead_id").is_null()))]
    merged = C.merge_facts(parts)

    def normal(facts: dict[str, Any]) -> dict[str, Any]:  # value counts in any order
        return {k: {tuple(r.values()) for r in v} if isinstance(v, list) else v for k, v in facts.items()}

    assert C.counts(merged) == C.counts(whole)
    assert normal(merged) == normal(whole)
    assert merged["created_at:row"] == 2 and merged["created_at:value"] == "garbage"


def test_every_copy_of_an_id_and_every_null_id_lands_in_one_bucket(spark: Any) -> None:
    """Whatever the id's type in each table: a text id in leads and the same id as a number in events."""
    from pyspark.sql import functions as F

    from pipelines.spark import bucket_expr

    ids = [str(i) for i in range(50)] * 2 + [None] * 4
    leads = spark.createDataFrame([(i,) for i in ids], "lead_id string")
    events = spark.createDataFrame([(None if i is None else int(i),) for i in ids], "lead_id long")
    rows = [*leads.select(F.col("lead_id").alias("id"), bucket_expr(7).alias("b")).collect(),
            *events.select(F.col("lead_id").cast("string").alias("id"), bucket_expr(7).alias("b")).collect()]
    buckets: dict[str | None, set[int]] = {}
    for r in rows:
        buckets.setdefault(r["id"], set()).add(int(r["b"]))
    assert len(buckets) == 51 and all(len(b) == 1 for b in buckets.values())
    assert set().union(*buckets.values()) <= set(range(7)) and len(set().union(*buckets.values())) > 1


def test_rows_of_a_folder_are_numbered_on_across_its_files_in_path_order(spark: Any, tmp_path: Path) -> None:
    from pipelines.spark import with_file_rows

    (tmp_path / "in").mkdir()
    pl.DataFrame({"lead_id": ["c", "d", "e"]}).write_parquet(tmp_path / "in" / "part-2.parquet")
    pl.DataFrame({"lead_id": ["a", "b"]}).write_parquet(tmp_path / "in" / "part-1.parquet")
    rows = with_file_rows(spark.read.parquet(str(tmp_path / "in"))).collect()
    assert sorted((r["_row"], r["lead_id"]) for r in rows) == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]
    one = with_file_rows(spark.read.parquet(str(tmp_path / "in" / "part-2.parquet"))).collect()
    assert sorted((r["_row"], r["lead_id"]) for r in one) == [(1, "c"), (2, "d"), (3, "e")]
