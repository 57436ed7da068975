"""Past one machine: score and featurize on Apache Spark with the single-machine code, bucket by bucket.

Wiring only. Leads and events are bucketed by `xxhash64(lead_id) % buckets` and each bucket runs, through
`cogroup().applyInArrow`, the very functions one machine runs on a whole file: `pipelines.score.check_part` (the data
contract) and `pipelines.score.score_part` (features, calibrated probability, decision, reason codes, handoff note),
or `pipelines.featurize.labeled_features` (features, scope, label). Every row of those depends only on its lead,
the lead's events and outcome, and every copy of an id (null included) lands in one bucket, so the two engines
cannot disagree. What does span buckets is done once, over all of them, with the same rules:

- the file-level contract checks (`features.contract.merge_facts`, `file_problems`) and the default as-of time (the
  newest clean timestamp of the whole batch) come from a first pass that runs the contract alone;
- quarantine rows keep their 1-based file row: `_row`, from Parquet's `_metadata.row_index`, is added before
  bucketing and each bucket is put back in file order;
- the time split ranks in-scope leads over all partitions (a range partitioning by t0, lead_id) and applies
  `features.build.split_expr`, the rule `time_split` applies on one machine.

The bundle reaches executors as files (`SparkContext.addFile`), never pickled; Arrow goes in and Arrow comes out
(no pandas). Training stays on one machine (README, "Past one machine").

    python -m pipelines.spark score --leads PATH --events PATH --out DIR [--model DIR] [--master URL] [--buckets N]
    python -m pipelines.spark featurize --interim DIR --out DIR --spec FILE --report FILE [--params params.yaml]

`leadlift score --engine spark` runs the first; `spark-submit` runs this file the same way on a cluster.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
from rich.console import Console

from features import contract as C
from features.build import SPLIT, split_expr, split_member
from features.schema import CONVERTED, CONVERTED_AT, CREATED_AT, EVENTS_SCHEMA, LEAD_ID, OCCURRED_AT, T0
from features.spec import input_gaps, merge_gaps
from features.timing import Conversions, conversions
from models.bundle import BUNDLE_FILES, SQL, Bundle
from pipelines.bundle import load_bundle_dir, resolve_bundle_dir
from pipelines.explain import load_catalog
from pipelines.featurize import (
    describe,
    frame_columns,
    labeled_features,
    snapshot_time,
    split_shares,
    target_timing,
)
from pipelines.ingest import DEFAULT_MAX_QUARANTINE_SHARE
from pipelines.io import BadInput, exit_codes, load_params, read_json, write_json
from pipelines.score import (
    OUTPUT_SCHEMA,
    Loaded,
    batch_problems,
    check_part,
    decision_time,
    score_part,
    source_of,
    warn_or_refuse,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

ROW = C.ROW
BUCKET = "_bucket"
TABLE = "_table"
#: Leads per bucket when `buckets` is not given: a bucket's leads and events are one Arrow table in one Python
#: worker, so this bounds a worker's memory whatever the size of the batch.
LEADS_PER_BUCKET = 200_000
QUARANTINE_COLUMNS = list(C.QUARANTINE_SCHEMA)
FACTS = "facts"


# ---------------------------------------------------------------- session and plumbing


def session(master: str | None = "local[*]", *, conf: Mapping[str, str] | None = None) -> SparkSession:
    """A SparkSession for leadlift: UTC session time, Parquet timestamps as microseconds, no web UI (no fixed port).

    `master` None keeps the one spark-submit set. On a local master the Python workers run this interpreter
    (`PYSPARK_PYTHON`): the system `python3` cannot import polars. On a cluster, spark-submit's settings decide.
    """
    from pyspark.sql import SparkSession

    local = master is not None and master.startswith("local")
    if local:
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    builder = SparkSession.builder.appName("leadlift")
    if master is not None:
        builder = builder.master(master)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        **({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
            "spark.driver.memory": "4g"} if local else {}),
        **(conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def default_buckets(n_leads: int) -> int:
    """About LEADS_PER_BUCKET leads per bucket, at least one."""
    return max(1, math.ceil(n_leads / LEADS_PER_BUCKET))


def bucket_expr(buckets: int) -> Column:
    """`xxhash64(lead_id) % buckets` (non-negative). The id is hashed as text, as the contract reads it, so every
    copy of an id lands in one bucket whatever its type in each table, and so does every null id."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(F.col(LEAD_ID).cast("string")), F.lit(buckets))


def with_file_rows(frame: DataFrame) -> DataFrame:
    """Add `_row`, each row's 1-based position in its file (files of a folder counted on in path order), as one
    machine numbers the rows it quarantines. A frame that already has `_row` keeps it."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    if ROW in frame.columns:
        return frame
    try:
        meta = frame.select("*", F.col("_metadata.file_path").alias("_file"),
                            F.col("_metadata.row_index").alias("_index"))
    except AnalysisException:
        raise ValueError("a frame needs a `_row` column, or must be read from Parquet files (for _metadata.row_index)"
                         ) from None
    offset: Column = F.lit(0)
    if len(frame.inputFiles()) > 1:
        counts = sorted((str(r["_file"]), int(r["count"])) for r in meta.groupBy("_file").count().collect())
        starts, total = [], 0
        for path, n in counts:
            starts += [F.lit(path), F.lit(total)]
            total += n
        offset = F.create_map(*starts)[F.col("_file")]
    return meta.select(*frame.columns, (offset + F.col("_index") + 1).cast("long").alias(ROW))


def to_polars(table: pa.Table | None) -> pl.DataFrame | None:
    """One bucket's rows as polars, in file order and without the bucket key."""
    if table is None:
        return None
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    frame = frame.drop(BUCKET, strict=False)
    return frame.sort(ROW) if ROW in frame.columns else frame


def arrow_schema(schema: Mapping[str, Any]) -> pa.Schema:
    """The Arrow schema Spark expects for a polars schema: polars' large strings as Spark's `string`."""
    fields = pl.DataFrame(schema=dict(schema)).to_arrow().schema
    return pa.schema([pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type) for f in fields])


def to_spark_arrow(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    """Cast a polars result to the declared schema (Spark refuses `large_string` for `string`)."""
    return frame.to_arrow().select(schema.names).cast(schema)


def spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema, prefer_timestamp_ntz=False)


def empty_like(frame: DataFrame | None) -> pl.DataFrame | None:
    """A zero-row polars frame with the columns a bucket of `frame` arrives with, for checks on the driver."""
    if frame is None:
        return None
    from pyspark.sql.pandas.types import to_arrow_schema

    out = pl.from_arrow(to_arrow_schema(frame.schema, timezone="UTC").empty_table())
    assert isinstance(out, pl.DataFrame)
    return out


def cogroup(left: DataFrame, right: DataFrame | None, fn: Callable[[pa.Table, pa.Table | None], pa.Table],
            schema: pa.Schema) -> DataFrame:
    """Run `fn(left rows, right rows)` once per bucket (`right` None: leads alone)."""
    if right is None:
        def one_side(table: pa.Table) -> pa.Table:  # a plain function: pyspark reads its type hints
            return fn(table, None)

        return left.groupBy(BUCKET).applyInArrow(one_side, spark_schema(schema))
    return left.groupBy(BUCKET).cogroup(right.groupBy(BUCKET)).applyInArrow(fn, spark_schema(schema))


# ---------------------------------------------------------------- the bundle, as files


def ship_bundle(spark: SparkSession, folder: Path) -> str:
    """Send the bundle's files to every executor; return the name `SparkFiles.get` finds them under.

    The name carries a hash of the files, so another bundle in the same session gets another name (Spark refuses
    to re-add a name with different content) and the same bundle is shipped once.
    """
    digest = hashlib.sha256()
    for key in sorted(BUNDLE_FILES):
        digest.update((folder / BUNDLE_FILES[key]).read_bytes())
    name = f"leadlift-bundle-{digest.hexdigest()[:16]}"
    staged = Path(tempfile.gettempdir()) / "leadlift-spark" / name
    if not staged.exists():
        staged.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=staged.parent))
        for file in BUNDLE_FILES.values():
            shutil.copyfile(folder / file, tmp / file)
        try:
            tmp.rename(staged)
        except OSError:  # another process staged it first
            shutil.rmtree(tmp, ignore_errors=True)
    spark.sparkContext.addFile(str(staged), recursive=True)
    return name


_LOADED: dict[str, tuple[Bundle, dict[str, Any]]] = {}


def shipped_bundle(name: str) -> tuple[Bundle, dict[str, Any]]:
    """The shipped bundle (verified against its manifest; its scorer keeps its explainer) and the reason catalog,
    loaded once per Python worker."""
    if name not in _LOADED:
        from pyspark import SparkFiles

        _LOADED[name] = (load_bundle_dir(SparkFiles.get(name)), load_catalog())
    return _LOADED[name]


# ---------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Job:
    """What every bucket of one scoring run shares: small, so it is all that is pickled besides the function."""

    bundle: str
    source: dict[str, Any]
    leads_file: str
    events_file: str | None
    as_of: datetime | None
    now: datetime
    chunk_size: int = 50000


CHECK_SCHEMA = arrow_schema({**C.QUARANTINE_SCHEMA, FACTS: pl.String})
SCORE_SCHEMA = arrow_schema(OUTPUT_SCHEMA)


def check_bucket(job: Job, leads: pa.Table, events: pa.Table | None) -> pa.Table:
    """Pass 1: the contract on one bucket: its quarantine rows, plus one row with what the driver's checks need (the
    facts of the file checks, the counts of the quarantine-share check and the missing model inputs)."""
    bundle, _ = shipped_bundle(job.bundle)
    raw, ev = to_polars(leads), to_polars(events)
    assert raw is not None
    part = check_part(raw, ev, job.source, leads_file=Path(job.leads_file),
                      events_file=Path(job.events_file) if job.events_file else None, as_of=job.as_of, now=job.now,
                      file_checks=False)
    found = {"facts": part.batch.facts, "counts": part.batch.counts,
             "gaps": input_gaps(part.batch.leads, bundle.spec, absent=part.missing_optional)}
    facts = pl.DataFrame({FACTS: [json.dumps(found, default=_iso)]})
    return to_spark_arrow(pl.concat([part.batch.quarantine, facts], how="diagonal_relaxed"), CHECK_SCHEMA)


def score_bucket(job: Job, at: datetime, leads: pa.Table, events: pa.Table | None) -> pa.Table:
    """Pass 2: one bucket scored exactly as `leadlift score` scores a file, with the whole batch's as-of time."""
    bundle, catalog = shipped_bundle(job.bundle)
    raw, ev = to_polars(leads), to_polars(events)
    assert raw is not None
    part = check_part(raw, ev, job.source, leads_file=Path(job.leads_file),
                      events_file=Path(job.events_file) if job.events_file else None, as_of=job.as_of, at=at,
                      now=job.now, file_checks=False)
    scored = list(score_part(bundle, part, catalog=catalog, chunk_size=job.chunk_size))
    out = pl.concat(scored) if scored else pl.DataFrame(schema=OUTPUT_SCHEMA)
    return to_spark_arrow(out, SCORE_SCHEMA)


def _iso(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@dataclass(frozen=True)
class Checked:
    """What pass 1 found in all buckets, merged as one machine's contract has it (`leadlift score` merges its
    partitions the same way): per table the file facts and the counts, and the missing model inputs."""

    facts: dict[str, dict[str, Any]]
    counts: dict[str, dict[str, Any]]
    gaps: list[dict[str, Any]]


def merged_checks(rows: list[str]) -> Checked:
    """`check_bucket`'s fact rows, merged (`features.contract.merge_table_facts`, `merge_counts`,
    `features.spec.merge_gaps`)."""
    parts = [json.loads(r) for r in rows]
    for part in parts:
        for facts in part["facts"].values():
            if facts["summary"].get("max_timestamp") is not None:
                facts["summary"]["max_timestamp"] = datetime.fromisoformat(facts["summary"]["max_timestamp"])
    counts = C.merge_counts([p["counts"] for p in parts])
    scored = int(counts.get("leads", {}).get("rows_out", 0))
    return Checked(C.merge_table_facts([p["facts"] for p in parts]), counts,
                   merge_gaps([p["gaps"] for p in parts], scored))


@dataclass(frozen=True)
class SparkScores:
    """`score_spark`'s result: lazy Spark frames with `leadlift score`'s columns, and what the run decided."""

    scores: DataFrame
    quarantine: DataFrame
    as_of: datetime
    buckets: int
    missing_optional: list[str]
    facts: dict[str, dict[str, Any]]
    #: Missing model inputs of the clean leads and the warning lines, as `leadlift score` reports them.
    gaps: list[dict[str, Any]]
    warnings: list[str]


def score_spark(spark: SparkSession, leads: DataFrame, events: DataFrame | None, *, model: str | Path,
                as_of: datetime | None = None, buckets: int | None = None, leads_file: str = "leads",
                events_file: str = "events", chunk_size: int = 50000, allow_missing: bool = False,
                max_missing_share: float = 0.5, max_quarantine_share: float = DEFAULT_MAX_QUARANTINE_SHARE,
                console: Console | None = None) -> SparkScores:
    """Score leads (and their events) on Spark exactly as `leadlift score` scores them on one machine.

    `leads` and `events` are read from Parquet (or carry `_row`); `buckets` defaults to about 200k leads each.
    Bad input raises BadInput on the driver before any scoring, naming the file (`leads_file`) as one machine does;
    so does a batch one machine would refuse (too many leads quarantined, model inputs missing far more often than
    in training unless `allow_missing`, events none of which can be used), with the same warnings.
    The quarantine frame is cached (it is small and read twice); unpersist it when done.
    """
    folder = resolve_bundle_dir(model)
    bundle = load_bundle_dir(folder)
    source = source_of(bundle)
    use_events = events is not None and bool(source.get("has_events", True))
    leads = with_file_rows(leads)
    ev = with_file_rows(events) if events is not None and use_events else None
    n = buckets or default_buckets(leads.count())
    job = Job(ship_bundle(spark, folder), source, leads_file, events_file if ev is not None else None,
              as_of, datetime.now(UTC), chunk_size)
    # Column-level checks on the driver, on zero rows: a missing column or a bundle mismatch exits 2 here.
    empty = empty_like(leads)
    assert empty is not None
    shape = check_part(empty.drop(ROW), empty_like(ev), source, leads_file=Path(leads_file),
                       events_file=Path(events_file) if ev is not None else None, as_of=as_of, now=job.now,
                       file_checks=False)
    leads_b = leads.withColumn(BUCKET, bucket_expr(n))
    ev_b = ev.withColumn(BUCKET, bucket_expr(n)) if ev is not None else None

    checked = cogroup(leads_b, ev_b, partial(check_bucket, job), CHECK_SCHEMA).cache()
    found = merged_checks([r[FACTS] for r in checked.filter(checked[FACTS].isNotNull()).select(FACTS).collect()])
    facts = found.facts
    for table, f in facts.items():
        C.file_problems(table, f["file"], f["parsed"], f["summary"])
    newest = [f["summary"].get("max_timestamp") for f in facts.values()]
    at = decision_time(as_of, max((t for t in newest if t is not None), default=None), job.now)
    leads_in = found.counts.get("leads", {"rows_in": 0, "rows_out": 0, "quarantined": 0, "by_reason": {}})
    loaded = Loaded([], C.empty_quarantine(), {**found.counts, "leads": leads_in}, at, shape.missing_optional, {},
                    events is not None, int(leads_in["rows_in"]), int(leads_in["rows_out"]), found.gaps)
    gaps, warnings, refusals = batch_problems(loaded, bundle, leads_file=Path(leads_file),
                                              events_file=Path(events_file) if events is not None else None,
                                              max_missing_share=max_missing_share,
                                              max_quarantine_share=max_quarantine_share)
    try:
        warn_or_refuse(warnings, refusals, allow_missing=allow_missing, console=console or Console(stderr=True))
    except BadInput:
        checked.unpersist()
        raise
    quarantine = checked.filter(checked["table"].isNotNull()).select(*QUARANTINE_COLUMNS)
    scores = cogroup(leads_b, ev_b, partial(score_bucket, job, at), SCORE_SCHEMA)
    return SparkScores(scores, quarantine, at, n, shape.missing_optional, facts, gaps, warnings)


def run_score(spark: SparkSession, leads: str, out: str, *, events: str | None = None, model: str | Path,
              as_of: datetime | None = None, buckets: int | None = None, chunk_size: int = 50000,
              allow_missing: bool = False, max_missing_share: float = 0.5,
              max_quarantine_share: float = DEFAULT_MAX_QUARANTINE_SHARE,
              console: Console | None = None) -> dict[str, Any]:
    """Read Parquet files or folders, score them on Spark, write `out`/scores and `out`/quarantine (Parquet
    datasets) and return the reconciliation, counted by Spark from what was written."""
    from pyspark.sql import functions as F

    for path in (leads, events):
        if path is not None and "://" not in path:
            if not Path(path).exists():
                raise BadInput(path, "file or folder not found")
            if Path(path).is_file() and Path(path).suffix.lower() != ".parquet":
                raise BadInput(path, "the spark engine reads Parquet files or folders of them")
    leads_df = spark.read.parquet(leads)
    events_df = spark.read.parquet(events) if events is not None else None
    result = score_spark(spark, leads_df, events_df, model=model, as_of=as_of, buckets=buckets, leads_file=leads,
                         events_file=events or "events", chunk_size=chunk_size, allow_missing=allow_missing,
                         max_missing_share=max_missing_share, max_quarantine_share=max_quarantine_share,
                         console=console)
    scores_path, quarantine_path = f"{out.rstrip('/')}/scores", f"{out.rstrip('/')}/quarantine"
    result.scores.write.mode("overwrite").parquet(scores_path)
    result.quarantine.orderBy("table", "row").write.mode("overwrite").parquet(quarantine_path)
    result.quarantine.unpersist()
    written = spark.read.parquet(scores_path)
    rejected = spark.read.parquet(quarantine_path)
    counts = rejected.groupBy("table").count().collect()
    by_table = {r["table"]: int(r["count"]) for r in counts}
    rows_in, scored, quarantined = leads_df.count(), written.count(), by_table.get("leads", 0)
    if rows_in != scored + quarantined:
        raise RuntimeError(f"reconciliation failed: {rows_in} rows in, {scored} scored, {quarantined} quarantined")
    return {
        "rows_in": rows_in,
        "scored": scored,
        "quarantined": quarantined,
        "sql": written.filter(F.col("decision") == SQL).count(),
        "events_quarantined": sum(n for table, n in by_table.items() if table.startswith("events")),
        "as_of": result.as_of.isoformat(),
        "missing_optional_columns": result.missing_optional,
        "missing_inputs": result.gaps,
        "warnings": result.warnings,
        "allow_missing": allow_missing,
        "max_missing_share": max_missing_share,
        "buckets": result.buckets,
        "scores": scores_path,
        "quarantine": quarantine_path,
    }


# ---------------------------------------------------------------- featurize


@dataclass(frozen=True)
class FeaturizeJob:
    source: dict[str, Any]
    params: dict[str, Any]
    snapshot_at: datetime
    leads_schema: dict[str, Any]
    schema: pa.Schema


def featurize_bucket(job: FeaturizeJob, leads: pa.Table, other: pa.Table | None) -> pa.Table:
    """One bucket's features, scope and label (`labeled_features`, as the featurize stage computes them)."""
    lf = to_polars(leads)
    assert lf is not None
    lf = lf.select(list(job.leads_schema))
    rest = to_polars(other)
    if rest is None:
        rest = pl.DataFrame(schema={TABLE: pl.String, LEAD_ID: pl.String})
    events = rest.filter(pl.col(TABLE) == "events").select(list(EVENTS_SCHEMA)) if OCCURRED_AT in rest.columns \
        else pl.DataFrame(schema=EVENTS_SCHEMA)
    outcomes = rest.filter(pl.col(TABLE) == "outcomes").select(LEAD_ID, CONVERTED, CONVERTED_AT)
    frame = labeled_features(lf.lazy(), events.lazy(), outcomes.lazy(), job.source, job.params,
                             snapshot_at=job.snapshot_at).collect()
    return to_spark_arrow(frame, job.schema)


def count_members(iterator: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The number of split members in this partition (`features.build.split_member`)."""
    from pyspark import TaskContext

    n = 0
    for batch in iterator:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        n += int(frame.select(split_member(frame.columns).cast(pl.Int64).sum()).item() or 0)
    ctx = TaskContext.get()
    yield pa.RecordBatch.from_pydict({"pid": [ctx.partitionId() if ctx else 0], "n": [n]},
                                     schema=pa.schema([("pid", pa.int64()), ("n", pa.int64())]))


def assign_split(offsets: dict[int, int], total: int, shares: dict[str, float], schema: pa.Schema,
                 iterator: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """`features.build.split_expr` with each member's position among all partitions' members in (t0, lead_id)
    order: this partition's offset plus the members before it here (rows arrive sorted)."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    seen = offsets.get(ctx.partitionId() if ctx else 0, 0)
    for batch in iterator:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        member = split_member(frame.columns)
        position = pl.lit(seen, dtype=pl.Int64) + member.cast(pl.Int64).cum_sum()
        out = frame.with_columns(split_expr(member, position, pl.lit(total, dtype=pl.Int64), **shares).alias(SPLIT))
        seen += int(frame.select(member.cast(pl.Int64).sum()).item() or 0)
        yield from to_spark_arrow(out, schema).to_batches()


def featurize_spark(spark: SparkSession, leads: DataFrame, events: DataFrame | None, outcomes: DataFrame, *,
                    source: dict[str, Any], params: dict[str, Any], out: str,
                    buckets: int | None = None) -> tuple[datetime, str, dict[str, Any]]:
    """Write the featurize stage's training frame (features, scope, label, split, sorted by t0 and lead_id) as a
    Parquet dataset at `out`; return (snapshot_at, how it was found, the target timing). Inputs are ingest's
    canonical tables. The target timing is checked first, as one machine checks it, from the converted leads only
    (collected to the driver: one row per conversion)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    def newest(frame: DataFrame | None, column: str) -> datetime | None:
        """Through Arrow, so the time keeps its zone (a collected Row would be in this process's local time)."""
        return None if frame is None else frame.agg(F.max(column).alias(column)).toArrow()[column][0].as_py()

    snapshot_at, basis = snapshot_time(source, lambda: [
        newest(leads, CREATED_AT), newest(events, OCCURRED_AT), newest(outcomes, CONVERTED_AT)])
    timing = target_timing(spark_conversions(leads, outcomes, snapshot_at)
                           if source.get("has_outcome_times", True) else None, params)
    n = buckets or default_buckets(leads.count())
    empty_leads = empty_like(leads)
    assert empty_leads is not None
    labeled_schema = labeled_features(empty_leads.lazy(), pl.LazyFrame(schema=EVENTS_SCHEMA),
                                      pl.LazyFrame(schema={LEAD_ID: pl.String, CONVERTED: pl.Boolean,
                                                           CONVERTED_AT: pl.Datetime("us", "UTC")}),
                                      source, params, snapshot_at=snapshot_at).collect_schema()
    job = FeaturizeJob(source, params, snapshot_at, dict(empty_leads.schema), arrow_schema(labeled_schema))
    tagged = [outcomes.select(LEAD_ID, CONVERTED, CONVERTED_AT).withColumn(TABLE, F.lit("outcomes"))]
    if events is not None:
        tagged.append(events.select(*EVENTS_SCHEMA).withColumn(TABLE, F.lit("events")))
    other = tagged[0] if len(tagged) == 1 else tagged[1].unionByName(tagged[0], allowMissingColumns=True)
    labeled = cogroup(leads.withColumn(BUCKET, bucket_expr(n)), other.withColumn(BUCKET, bucket_expr(n)),
                      partial(featurize_bucket, job), job.schema)

    ordered = labeled.repartitionByRange(n, T0, LEAD_ID).sortWithinPartitions(T0, LEAD_ID)
    ordered = ordered.persist(StorageLevel.MEMORY_AND_DISK)
    counted = ordered.mapInArrow(count_members, "pid long, n long").collect()
    members = dict(sorted((int(r["pid"]), int(r["n"])) for r in counted))
    offsets: dict[int, int] = {}
    total = 0
    for pid, k in members.items():
        offsets[pid] = total
        total += k
    none = pl.DataFrame(schema=labeled_schema)
    frame_schema = arrow_schema(none.with_columns(pl.lit(None, dtype=pl.String).alias(SPLIT))
                                .select(frame_columns(none)).schema)
    split = ordered.mapInArrow(partial(assign_split, offsets, total, split_shares(params), frame_schema),
                               spark_schema(frame_schema))
    split.write.mode("overwrite").parquet(out)
    ordered.unpersist()
    return snapshot_at, basis, timing


def spark_conversions(leads: DataFrame, outcomes: DataFrame, snapshot_at: datetime) -> Conversions:
    """`features.timing.conversions` on Spark: the converted leads' creation and conversion times, through Arrow."""
    from pyspark.sql import functions as F

    converted = (leads.select(LEAD_ID, CREATED_AT)
                 .join(outcomes.select(LEAD_ID, CONVERTED, CONVERTED_AT), on=LEAD_ID, how="inner")
                 .filter(F.coalesce(F.col(CONVERTED).cast("boolean"), F.lit(False)))
                 .select(CREATED_AT, CONVERTED_AT))
    table = pl.from_arrow(converted.toArrow())
    assert isinstance(table, pl.DataFrame)
    return conversions(table.with_row_index(LEAD_ID).with_columns(pl.col(LEAD_ID).cast(pl.String)).lazy(),
                       table.with_row_index(LEAD_ID).select(pl.col(LEAD_ID).cast(pl.String),
                                                             pl.lit(True).alias(CONVERTED), CONVERTED_AT).lazy(),
                       snapshot_at=snapshot_at)


def read_dataset(path: str | Path) -> pl.DataFrame:
    """A Parquet dataset Spark wrote, its part files in order (a sorted frame reads back sorted)."""
    return pl.read_parquet(sorted(str(p) for p in Path(path).glob("part-*.parquet")))


# ---------------------------------------------------------------- command line (spark-submit runs this file)


@exit_codes
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sc = sub.add_parser("score", help="score a batch of new leads")
    sc.add_argument("--leads", required=True)
    sc.add_argument("--events")
    sc.add_argument("--out", required=True)
    sc.add_argument("--model", default="data/artifacts")
    sc.add_argument("--as-of", type=datetime.fromisoformat)
    sc.add_argument("--chunk-size", type=int, default=50000)
    sc.add_argument("--allow-missing", action="store_true",
                    help="score even when model inputs are missing far more often than in training")
    sc.add_argument("--max-missing-share", type=float, default=0.5)
    sc.add_argument("--max-quarantine-share", type=float, default=DEFAULT_MAX_QUARANTINE_SHARE)
    fz = sub.add_parser("featurize", help="the featurize stage's outputs, features computed on Spark")
    fz.add_argument("--interim", type=Path, required=True)
    fz.add_argument("--out", type=Path, required=True)
    fz.add_argument("--spec", type=Path, required=True)
    fz.add_argument("--report", type=Path, required=True)
    fz.add_argument("--params", type=Path, default=Path("params.yaml"))
    for p in (sc, fz):
        p.add_argument("--master", default=None, help="default: local[*], or what spark-submit sets")
        p.add_argument("--buckets", type=int, default=None, help=f"default: about {LEADS_PER_BUCKET:,} leads each")
    args = ap.parse_args(argv)
    # Under spark-submit (it starts the JVM and hands this process its gateway) the master is spark-submit's.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    spark = session(args.master or (None if submitted else "local[*]"))
    if args.command == "score":
        report = run_score(spark, args.leads, args.out, events=args.events, model=args.model, as_of=args.as_of,
                           buckets=args.buckets, chunk_size=args.chunk_size, allow_missing=args.allow_missing,
                           max_missing_share=args.max_missing_share, max_quarantine_share=args.max_quarantine_share)
        print(f"score (spark, {report['buckets']} buckets): rows in {report['rows_in']} = scored {report['scored']} "
              f"+ quarantined {report['quarantined']}; {report['sql']} SQL -> {args.out}")
    else:
        run_featurize(spark, args.interim, args.out, spec=args.spec, report=args.report,
                      params=load_params("featurize", args.params), buckets=args.buckets)


def run_featurize(spark: SparkSession, interim: Path, out: Path, *, spec: Path, report: Path,
                  params: dict[str, Any], buckets: int | None = None) -> dict[str, Any]:
    """The featurize stage with features on Spark: the frame as a dataset at `out`, then the spec, report and leak
    guard on this machine from that frame (training reads it on one machine anyway)."""
    source = read_json(interim / "source.json")
    events_path = interim / "events.parquet"
    frames = {name: spark.read.parquet(str(interim / f"{name}.parquet")) for name in ("leads", "outcomes")}
    events = spark.read.parquet(str(events_path)) if events_path.exists() else None
    snapshot_at, basis, timing = featurize_spark(spark, frames["leads"], events, frames["outcomes"], source=source,
                                                 params=params, out=str(out), buckets=buckets)
    frame = read_dataset(out)
    spec_dict, rep = describe(frame, source, params, snapshot_at=snapshot_at, snapshot_basis=basis, timing=timing)
    write_json(spec, spec_dict)
    write_json(report, rep)
    print(f"featurize (spark): {rep['leads']:,} leads, {rep['features']} features -> {out}")
    return rep


if __name__ == "__main__":
    main()
