"""A big batch is scored partition by partition (flat memory), and writes the bytes of one pass over the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from features import contract as C
from pipelines.io import TEMP_SUFFIX, remove_stale_temps, scratch_dir
from tests import test_spark

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

#: Spark's messy batch, as a fixture here too: duplicate and null ids, leads without events, events for unknown leads
#: and without an id, all in shuffled file order.
messy = test_spark.messy


@pytest.fixture(scope="module")
def messy_csv(messy: Path) -> Path:
    """The messy batch's leads as CSV text, with a ragged row (one field too many) at data row 40 carrying the id of
    a row further down, which is whole."""
    lines = pl.read_parquet(messy / "leads.parquet").with_columns(
        pl.col("created_at").dt.strftime("%Y-%m-%dT%H:%M:%S")).write_csv().splitlines()
    lines.insert(40, lines[2501] + ",one field too many")
    (messy / "leads.csv").write_text("\n".join(lines) + "\n")
    return messy / "leads.csv"


def score(repo: Path, leads: Path, events: Path, out: Path, **kw: Any) -> dict[str, Any]:
    from pipelines.score import score_file

    return score_file(leads, out, events=events, model=repo / "data" / "artifacts", **kw)


def same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two score reports agree on everything but where they were written."""
    paths = ("out", "quarantine_file", "report_file")
    return {k: v for k, v in a.items() if k not in paths} == {k: v for k, v in b.items() if k not in paths}


@pytest.mark.parametrize("as_of", [None, datetime(2026, 3, 20)], ids=["newest-event", "explicit"])
def test_scoring_in_partitions_writes_the_bytes_of_one_pass(pipeline_repo: Path, messy: Path, tmp_path: Path,
                                                            as_of: datetime | None) -> None:
    """Scores, quarantine (same 1-based file rows, same order) and report are the bytes of a pass over the whole file,
    with duplicates split across partitions, unknown and id-less events, and an explicit as-of time that quarantines
    the leads created after it."""
    leads, events = messy / "leads.parquet", messy / "events.parquet"
    runs = {name: score(pipeline_repo, leads, events, tmp_path / f"{name}.parquet", as_of=as_of, **kw) for name, kw in {
        "whole": {}, "parts": {"partition_leads": 400},  # 9 partitions (18 of 200 leads, two at a time, on 2 cores)
        "whole_250": {"chunk_size": 250}, "parts_250": {"chunk_size": 250, "partition_leads": 400}}.items()}
    for a, b in (("parts", "whole"), ("parts_250", "whole_250")):  # row groups of chunk_size rows, however split
        assert (tmp_path / f"{a}.parquet").read_bytes() == (tmp_path / f"{b}.parquet").read_bytes()
        assert (tmp_path / f"{a}.quarantine.csv").read_bytes() == (tmp_path / f"{b}.quarantine.csv").read_bytes()
        assert same_run(runs[a], runs[b])
    quarantine = pl.read_csv(tmp_path / "parts.quarantine.csv")
    copies = quarantine.filter(pl.col("reason") == C.DUPLICATE_LEAD_ID).group_by("lead_id").agg(
        ((pl.col("row") - 1) // 400).n_unique().alias("partitions"))
    assert copies["partitions"].max() > 1  # some id has copies in different partitions of 400 rows
    reasons = quarantine.group_by("table", "reason").len()
    found = {f"{t}: {r}": n for t, r, n in reasons.iter_rows()}
    assert found["leads: duplicate lead_id"] == 10 and found["leads: missing lead_id"] == 3
    assert found["events: unknown lead"] == 30 and found["events: missing lead_id"] == 5
    assert (found.get("leads: created after the as-of time", 0) > 0) == (as_of is not None)
    # The events of a lead created after the as-of time go with it, as those of any quarantined lead: every event in
    # is out or quarantined.
    late = quarantine.filter(pl.col("reason") == C.CREATED_AFTER_AS_OF)["lead_id"]
    all_events = pl.read_parquet(events).with_columns(pl.col("lead_id").cast(pl.String))
    late_events = quarantine.filter((pl.col("table") == "events") & pl.col("lead_id").is_in(late.implode()))
    assert late_events.height == all_events.filter(pl.col("lead_id").is_in(late.implode())).height
    assert set(late_events["reason"]) == ({C.LEAD_QUARANTINED} if as_of is not None else set())
    ev = runs["parts"]["events"]
    assert ev["rows_in"] == ev["rows_out"] + ev["quarantined"] == all_events.height
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)] == []  # the scratch folder is gone


def test_notes_written_for_several_chunks_at_once_are_those_of_one_chunk_at_a_time(
    pipeline_repo: Path, messy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`score_part` renders the notes of consecutive chunks in one call while their SQL rows fit `notes_rows` (a
    render has a fixed cost): every scored row, note and reason is what scoring each chunk alone (`score_chunk`)
    gives, in the same order."""
    import pipelines.score as S
    from pipelines.bundle import load_bundle_dir
    from pipelines.explain import load_catalog

    bundle = load_bundle_dir(pipeline_repo / "data" / "artifacts")
    leads, events = messy / "leads.parquet", messy / "events.parquet"
    part = S.check_part(pl.read_parquet(leads), pl.read_parquet(events), S.source_of(bundle), leads_file=leads,
                        events_file=events, as_of=datetime(2026, 3, 20))
    catalog, size = load_catalog(), 250
    renders: list[int] = []
    build = S.build_notes
    monkeypatch.setattr(S, "build_notes", lambda *a, **k: renders.append(a[1].height) or build(*a, **k))
    together = pl.concat(list(S.score_part(bundle, part, catalog=catalog, chunk_size=size, notes_rows=size)))
    chunks = list(S.chunks(part.batch.leads, size))
    assert 1 < len(renders) < len(chunks) and max(renders) <= size  # some renders hold several chunks, none too many
    assert together.height == part.batch.leads.height and together["note"].drop_nulls().len() == sum(renders)
    mine = [part.events.filter(pl.col("lead_id").is_in(rows["lead_id"].implode())) for rows in chunks]
    alone = pl.concat([S.score_chunk(bundle, rows, events, as_of=part.as_of, catalog=catalog)
                       for rows, events in zip(chunks, mine, strict=True)])
    assert together.equals(alone)


def test_partitions_scored_one_at_a_time_write_the_bytes_of_two_at_a_time(pipeline_repo: Path, messy: Path,
                                                                          tmp_path: Path) -> None:
    """Held to one thread (POLARS_MAX_THREADS=1), `leadlift score` checks and scores one partition at a time; the
    output is the same as where two run at once (this machine's default when it has two cores)."""
    from pipelines.score import score_workers

    leads, events = messy / "leads.parquet", messy / "events.parquet"
    model = pipeline_repo / "data" / "artifacts"
    code = ("import sys; from pipelines.score import score_workers; assert score_workers() == 1; "
            "from pipelines.cli import app; app()")
    single = subprocess.run([sys.executable, "-c", code, "score", "--leads", str(leads), "--events", str(events),
                             "--model", str(model), "--partition-leads", "400", "--out", str(tmp_path / "one.parquet")],
                            env={**os.environ, "POLARS_MAX_THREADS": "1"}, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    score(pipeline_repo, leads, events, tmp_path / "two.parquet", partition_leads=400)
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "two.parquet").read_bytes()
    assert (tmp_path / "one.quarantine.csv").read_bytes() == (tmp_path / "two.quarantine.csv").read_bytes()
    assert same_run(json.loads((tmp_path / "one.report.json").read_text()),
                    json.loads((tmp_path / "two.report.json").read_text()))
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2 and pl.thread_pool_size() >= 2:
        assert score_workers() == 2  # so the in-process run above scored two partitions at a time


def test_a_big_batch_scored_as_it_is_checked_is_refused_and_warned_as_a_whole_one(
    pipeline_repo: Path, messy: Path, tmp_path: Path
) -> None:
    """With an explicit as-of time, partitions are scored as soon as they are checked, before the batch's refusals
    can be decided: a batch that lacks a model input is still refused with the whole file's words, and the output
    already there is left as it was, with no temporary behind; allowed, it gets the whole file's warnings and
    report."""
    from pipelines.io import BadInput

    pl.read_parquet(messy / "leads.parquet").drop("buying_timeline").write_parquet(tmp_path / "leads.parquet")
    leads, events, as_of = tmp_path / "leads.parquet", messy / "events.parquet", datetime(2026, 3, 20)
    out = tmp_path / "out"
    out.mkdir()
    (out / "parts.parquet").write_bytes(b"old scores")
    refusals = {}
    for name, kw in {"whole": {}, "parts": {"partition_leads": 400}}.items():
        with pytest.raises(BadInput) as refused:
            score(pipeline_repo, leads, events, out / f"{name}.parquet", as_of=as_of, **kw)
        refusals[name] = str(refused.value)
    assert refusals["parts"] == refusals["whole"] and "buying_timeline" in refusals["parts"]
    assert sorted(p.name for p in out.iterdir()) == ["parts.parquet"]
    assert (out / "parts.parquet").read_bytes() == b"old scores"

    allowed = {name: score(pipeline_repo, leads, events, out / f"{name}.parquet", as_of=as_of, allow_missing=True,
                           **kw) for name, kw in {"whole": {}, "parts": {"partition_leads": 400}}.items()}
    assert allowed["parts"]["warnings"] and same_run(allowed["parts"], allowed["whole"])
    assert (out / "parts.parquet").read_bytes() == (out / "whole.parquet").read_bytes()


@pytest.mark.parametrize("as_of", [None, datetime(2026, 3, 20)], ids=["newest-event", "explicit"])
def test_a_ragged_csv_row_does_not_take_its_ids_later_whole_copy_out_of_file_order(
    pipeline_repo: Path, messy: Path, messy_csv: Path, tmp_path: Path, as_of: datetime | None
) -> None:
    """The ragged row is quarantined by the reader; the id's other copy is then not a duplicate and is scored where
    it stands in the file, in whichever partition the id's copies were put (a CSV is split as one stream; with an
    explicit as-of time each partition is scored as it is checked)."""
    leads, events = messy_csv, messy / "events.parquet"
    whole = score(pipeline_repo, leads, events, tmp_path / "whole.csv", as_of=as_of)
    parts = score(pipeline_repo, leads, events, tmp_path / "parts.csv", partition_leads=300, as_of=as_of)
    assert (tmp_path / "parts.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert (tmp_path / "parts.quarantine.csv").read_bytes() == (tmp_path / "whole.quarantine.csv").read_bytes()
    assert same_run(parts, whole)
    quarantine = pl.read_csv(tmp_path / "parts.quarantine.csv")
    ragged = quarantine.filter(pl.col("reason") == C.MORE_FIELDS)
    assert ragged["row"].to_list() == [40]
    assert ragged["lead_id"][0] in pl.read_csv(tmp_path / "parts.csv")["lead_id"].to_list()


@pytest.mark.parametrize("hashed", ["distinct", "colliding"])
def test_split_puts_every_copy_of_an_id_with_its_only_scorable_copy(tmp_path: Path, hashed: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Partitions of 2 rows. 'a' (rows 1, 6) and 'b' (rows 2, 3, 7) are duplicates: partition of the first copy.
    'c' (rows 4, 8): row 4 was set aside by the reader, so row 8, which can be scored, decides. Events follow their
    lead; the unknown id and the missing one go by their own position (partitions of 2 events). The same where every
    id shares one hash: the split then routes by the ids themselves."""
    from pipelines import score
    from pipelines.score import split_batch

    if hashed == "colliding":
        monkeypatch.setattr(score, "_id_hash", lambda lead_id: lead_id.str.len_bytes().cast(pl.UInt64))

    pl.DataFrame({
        "lead_id": ["a", "b", "b", "c", "d", "a", "b", "c"],
        C.REASON: [None, None, None, C.MORE_FIELDS, None, None, None, None],
    }, schema_overrides={C.REASON: pl.String}).write_parquet(tmp_path / "leads.parquet", row_group_size=3)
    pl.DataFrame({"lead_id": ["c", "zz", "a", "d", None, "b"]}).write_parquet(tmp_path / "events.parquet",
                                                                              row_group_size=4)
    (tmp_path / "scratch").mkdir()
    parts = split_batch(pl.scan_parquet(tmp_path / "leads.parquet"), pl.scan_parquet(tmp_path / "events.parquet"),
                        partitions=4, rows=(8, 6), scratch=tmp_path / "scratch", leads_file=tmp_path / "leads.parquet",
                        events_file=tmp_path / "events.parquet")
    found = {k: parts.read(k) for k in range(4)}
    lead_rows = {k: frames[0][C.ROW].to_list() for k, frames in found.items()}
    event_ids = {k: frames[1]["lead_id"].to_list() for k, frames in found.items() if frames[1] is not None}
    assert lead_rows == {0: [1, 2, 3, 6, 7], 1: [], 2: [5], 3: [4, 8]}
    assert event_ids == {0: ["zz", "a", "b"], 1: [], 2: ["d", None], 3: ["c"]}
    assert {tuple(frames[0].columns) for frames in found.values()} == {(C.ROW, "lead_id", C.REASON)}  # empty too
    parts.remove(0)
    assert parts.read(0)[0].height == 0


def test_a_scratch_folder_goes_when_its_run_ends_or_is_killed(tmp_path: Path) -> None:
    """Removed at the end of the block, even on an exception; one left by a killed run (its pid is gone) is swept
    up by the next run writing the same output, as a stray temporary file is; a live run's is kept."""
    out = tmp_path / "s.parquet"
    with pytest.raises(RuntimeError), scratch_dir(out) as folder:
        (folder / "part.arrow").write_text("x")
        raise RuntimeError("boom")
    assert not folder.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    stale = tmp_path / f".s.parquet.{dead}.abc{TEMP_SUFFIX}"
    (stale / "leads").mkdir(parents=True)
    (stale / "leads" / "0-0.arrow").write_text("left by a SIGKILL")
    live = tmp_path / f".s.parquet.{os.getpid()}.def{TEMP_SUFFIX}"
    live.mkdir()
    assert remove_stale_temps(out) == [stale]
    assert not stale.exists() and live.exists()


def test_merged_counts_of_a_tables_parts_equal_the_counts_of_the_whole() -> None:
    leads = pl.DataFrame({
        "lead_id": ["a", "b", None, "d", "e", "a", "g", "h"],
        "created_at": ["2026-01-01", "garbage", "2026-01-03", None, "2026-01-05", "2026-01-06", "oops", "2026-01-08"],
    }).with_row_index(C.ROW, offset=1)
    kw: dict[str, Any] = {"now": datetime(2026, 6, 1), "file_checks": False}
    whole = C.validate(leads, **kw).counts
    ids = ["a", "d", "g"]
    parts = [C.validate(part, **kw).counts for part in (
        leads.filter(pl.col("lead_id").is_in(ids)), leads.filter(~pl.col("lead_id").is_in(ids) | pl.col("lead_id")
                                                                 .is_null()))]
    assert C.merge_counts(parts) == whole
    assert json.dumps(C.merge_counts(parts)) == json.dumps(whole)  # same keys in the same order
