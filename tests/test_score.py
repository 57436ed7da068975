"""Batch scoring: bad rows are quarantined with a reason, rows reconcile, output is deterministic and round-trips."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


def leadlift(repo: Path, *args: str, ok: bool = True):  # type: ignore[no-untyped-def]
    import subprocess

    from tests.conftest import tool_env

    res = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=repo, env=tool_env(),
                         capture_output=True, text=True, timeout=600)
    if ok and res.returncode != 0:
        raise AssertionError(f"leadlift {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="module")
def batch(pipeline_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`leadlift generate --leads 3000 --seed 4242`, with duplicate and null ids mixed into the leads."""
    out = tmp_path_factory.mktemp("batch")
    leadlift(pipeline_repo, "generate", "--leads", "3000", "--seed", "4242", "--out", str(out))
    leads = pl.read_parquet(out / "leads.parquet")
    broken = pl.concat([
        leads,
        leads.head(5),  # five duplicated ids (both copies go to quarantine)
        leads.slice(10, 3).with_columns(pl.lit(None, dtype=pl.String).alias("lead_id")),  # three null ids
    ])
    broken.write_parquet(out / "leads_broken.parquet")
    return out


def test_scoring_with_duplicate_and_null_ids_reconciles_exactly(pipeline_repo: Path, batch: Path) -> None:
    out = batch / "scored.parquet"
    res = leadlift(pipeline_repo, "score", "--leads", str(batch / "leads_broken.parquet"), "--events",
                   str(batch / "events.parquet"), "--out", str(out))
    scored = pl.read_parquet(out)
    quarantine = pl.read_csv(batch / "scored.quarantine.csv")
    lead_rows = quarantine.filter(pl.col("table") == "leads")
    assert scored.height + lead_rows.height == 3000 + 5 + 3
    assert lead_rows.height == 10 + 3
    reasons = lead_rows.group_by("reason").len().sort("reason")
    assert dict(reasons.iter_rows()) == {"duplicate lead_id": 10, "missing lead_id": 3}
    assert f"rows in 3008 = scored {scored.height} + quarantined 13" in res.stderr.replace("\n", " ")
    assert scored["lead_id"].n_unique() == scored.height
    sql = scored.filter(pl.col("decision") == "SQL")
    assert sql.height > 0 and sql["note"].null_count() == 0
    # A lead without a reason worth a whole point says so in its headline instead.
    without = sql.filter(pl.col("reason_1").is_null())
    assert without.height < sql.height / 10 and without["headline"].str.contains("close to the average lead").all()
    assert scored.filter(pl.col("decision") == "nurture")["reason_1"].null_count() == scored.height - sql.height
    assert scored["score"].is_between(0, 100).all() and scored["percentile"].is_between(0, 100).all()


def test_scoring_the_same_batch_twice_gives_identical_bytes(pipeline_repo: Path, batch: Path) -> None:
    paths = []
    for i in (1, 2):
        out = batch / f"twice_{i}.csv"
        leadlift(pipeline_repo, "score", "--leads", str(batch / "leads.parquet"), "--events",
                 str(batch / "events.parquet"), "--out", str(out))
        paths.append(out)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_a_scored_csv_reads_back_with_the_same_values(pipeline_repo: Path, batch: Path) -> None:
    for ext in ("csv", "parquet"):
        leadlift(pipeline_repo, "score", "--leads", str(batch / "leads.parquet"), "--events",
                 str(batch / "events.parquet"), "--out", str(batch / f"rt.{ext}"))
    from pipelines.score import OUTPUT_SCHEMA

    csv = pl.read_csv(batch / "rt.csv", schema=OUTPUT_SCHEMA)
    parquet = pl.read_parquet(batch / "rt.parquet")
    assert csv.equals(parquet)
    note = json.loads(parquet.filter(pl.col("decision") == "SQL")["note"][0])
    assert len(note["reasons"]) >= 3 and all(r["text"] for r in note["reasons"])


def test_bad_rows_are_quarantined_with_a_reason_and_unseen_values_are_scored(
    pipeline_repo: Path, tmp_path: Path
) -> None:
    leads = pl.DataFrame({
        "lead_id": ["a", "b", "c", "d", "e"],
        "created_at": ["2026-03-01T10:00:00", "not a date", "2026-03-02", "2026-03-03T00:00:00", "2026-03-04"],
        "industry": ["software", "software", "quantum farming", None, "retail"],  # an unseen category
        "employee_band": ["51-200", "51-200", "51-200", "1-10", "201-500"],
        "region": ["North America"] * 5,
        "job_title": ["VP Sales", "CTO", "Student", None, "Head of IT"],
        "lead_source": ["referral"] * 5,
        "email_domain_kind": ["corporate"] * 5,
        # buying_timeline is missing entirely: an optional column
    })
    leads.write_csv(tmp_path / "leads.csv")
    args = ["score", "--leads", str(tmp_path / "leads.csv"), "--out", str(tmp_path / "s.csv"), "--as-of",
            "2026-03-10T00:00:00"]
    refused = leadlift(pipeline_repo, *args, ok=False)
    assert refused.returncode == 2 and "column 'buying_timeline'" in refused.stderr  # the absent column is not silent
    res = leadlift(pipeline_repo, *args, "--allow-missing")
    scored = pl.read_csv(tmp_path / "s.csv")
    q = pl.read_csv(tmp_path / "s.quarantine.csv")
    assert sorted(scored["lead_id"].to_list()) == ["a", "c", "d", "e"]
    assert q["lead_id"].to_list() == ["b"] and "created_at" in q["column"].to_list()
    assert "rows in 5 = scored 4 + quarantined 1" in res.stderr.replace("\n", " ")
    assert "warning: model input 'buying_timeline' absent from the file" in res.stderr


def test_a_bundle_is_refused_for_input_that_does_not_match_its_spec(pipeline_repo: Path, tmp_path: Path) -> None:
    pl.DataFrame({"lead_id": ["a"], "created_at": ["2026-01-01"], "age": [40], "job": ["admin"]}).write_csv(
        tmp_path / "x.csv"
    )
    res = leadlift(
        pipeline_repo, "score", "--leads", str(tmp_path / "x.csv"), "--out", str(tmp_path / "o.csv"), ok=False
    )
    assert res.returncode == 2
    assert "does not match the bundle's feature spec" in res.stderr and "industry" in res.stderr
    assert not (tmp_path / "o.csv").exists()


def test_a_file_level_problem_exits_2_naming_the_file_and_column(pipeline_repo: Path, tmp_path: Path) -> None:
    (tmp_path / "semi.csv").write_text("lead_id;created_at;industry\na;2026-01-01;software\n")
    res = leadlift(
        pipeline_repo, "score", "--leads", str(tmp_path / "semi.csv"), "--out", str(tmp_path / "o.csv"), ok=False
    )
    assert res.returncode == 2 and "semi.csv" in res.stderr
    (tmp_path / "empty.csv").write_text("")
    res = leadlift(
        pipeline_repo, "score", "--leads", str(tmp_path / "empty.csv"), "--out", str(tmp_path / "o.csv"), ok=False
    )
    assert res.returncode == 2 and "empty" in res.stderr


def test_scoring_from_the_registry_alias_matches_scoring_from_the_folder(pipeline_repo: Path, batch: Path) -> None:
    leadlift(pipeline_repo, "score", "--leads", str(batch / "leads.parquet"), "--events", str(batch / "events.parquet"),
             "--out", str(batch / "folder.parquet"))
    leadlift(pipeline_repo, "score", "--leads", str(batch / "leads.parquet"), "--events", str(batch / "events.parquet"),
             "--out", str(batch / "alias.parquet"), "--model", "models:/leadlift@champion")
    assert pl.read_parquet(batch / "folder.parquet").equals(pl.read_parquet(batch / "alias.parquet"))
