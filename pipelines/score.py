"""Batch scoring of new leads with a trained bundle: the `leadlift score` command and the `score` stage.

read -> check -> features -> score -> write. The files are read exactly as `validate` and ingest read them
(`pipelines.ingest.read_table`); the contract quarantines bad rows; a batch the model would silently score worse
(inputs missing far more often than in training, events that match no lead) is refused before any work unless the
user allows it; the outputs (scores, quarantine and a score report JSON) are one transaction.

Rows in = scored + quarantined, always. The same input gives byte-identical output. Features, explanations and notes
are computed chunk by chunk and written to a temporary file that is renamed when complete.

Memory stays that of one partition, whatever the size of the batch. A batch of more than `PARTITION_LEADS` leads (or
`PARTITION_EVENTS` events) is split once into partitions of consecutive leads file rows (halves of that size on a
machine with two cores or more, where two partitions are checked and scored at a time, in chunks of half the size),
each with the events of its leads (`split_batch`: every copy of a lead id in one partition, so the contract sees
duplicates); each partition is checked by `check_part`, the function a Spark bucket runs. The partitions' facts are
merged as Spark merges its buckets' (`features.contract.merge_table_facts`): file-level problems, counts, missing
model inputs and the default as-of time (the newest clean timestamp) are those of the whole file. Partitions are
scored and handed on in file order, so the output is written as it comes, in input order, byte for byte what one pass
over the whole file writes.

Without `--as-of`, the as-of time is the newest clean timestamp of the whole file, so every partition is checked
first (its clean rows kept in a scratch folder beside the output), the batch is decided, then scored. With an
explicit as-of time, each partition is scored as soon as it is checked (`Partitioned.check_and_score`: its clean
rows never go to disk), and the batch is decided once every partition is: a refused batch then costs the time it
took to score, but its words are the same and nothing is written.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from features import contract as C
from features.build import build_features
from features.mapping import event_vocabulary
from features.schema import CREATED_AT, EVENT_TYPE, LEAD_ID, OCCURRED_AT, utc
from features.spec import input_gaps, merge_gaps, to_matrix
from models.bundle import MANIFEST, SQL, Bundle
from models.handoff import build_notes, note_values
from models.notes import NoteTemplates, compile_templates, notes_markdown, spread_index
from models.treeshap import kernel_threads
from pipelines.bundle import load_bundle, load_bundle_dir, resolve_bundle_dir
from pipelines.explain import load_catalog
from pipelines.ingest import DEFAULT_MAX_QUARANTINE_SHARE, canonical_spec, read_table
from pipelines.io import (
    BadInput,
    atomic_paths,
    csv_safe,
    exit_codes,
    frame_writer,
    json_text,
    load_params,
    safe_message,
    scratch_dir,
    stage_args,
)

T = TypeVar("T")
R = TypeVar("R")

OUTPUT_SCHEMA: dict[str, Any] = {
    LEAD_ID: pl.String, "probability": pl.Float64, "score": pl.Int64, "percentile": pl.Float64, "decision": pl.String,
    "headline": pl.String, "reason_1": pl.String, "reason_1_points": pl.Float64, "reason_2": pl.String,
    "reason_2_points": pl.Float64, "reason_3": pl.String, "reason_3_points": pl.Float64, "reason_against": pl.String,
    "who": pl.String, "urgency": pl.String, "what_happened": pl.String, "note": pl.String,
}
OUT_EXTENSIONS = (".parquet", ".csv")
#: Refuse a batch whose model input is missing (or holds values the model never saw) this much more often than in
#: training; `--allow-missing` scores it anyway. Warn from WARN_MISSING_EXCESS on.
DEFAULT_MAX_MISSING_SHARE = 0.5
WARN_MISSING_EXCESS = 0.05
#: Leads per partition of a big batch. The benchmark's 100k batch is one partition, so a 1M batch peaks where it does.
PARTITION_LEADS = 100_000
#: Events per partition: a batch with many events per lead is cut finer.
PARTITION_EVENTS = 1_000_000


def source_of(bundle: Bundle) -> dict[str, Any]:
    """The column roles the bundle was trained with (kept in its feature spec)."""
    return bundle.spec["source_roles"]


def expected_columns(source: dict[str, Any]) -> list[str]:
    return [*source.get("categorical", {}), *source.get("numeric", {})]


def check_compatible(leads: pl.DataFrame, source: dict[str, Any], file: Path) -> list[str]:
    """Refuse input unlike what the bundle was trained on; return the optional columns to fill as missing."""
    expected = expected_columns(source)
    missing = [c for c in expected if c not in leads.columns]
    if expected and len(missing) > len(expected) / 2:
        extra = [c for c in leads.columns if c not in expected and c not in (LEAD_ID, CREATED_AT)
                 and not c.startswith("_")]
        raise BadInput(file, f"does not match the bundle's feature spec: missing {missing}; "
                             f"columns the bundle does not know: {extra}; expected {expected}")
    return missing


# ---------------------------------------------------------------- outputs: checked first, written as one


@dataclass(frozen=True)
class Outputs:
    """Where a scoring run writes: the scores, the quarantine and the score report (beside the scores)."""

    out: Path
    quarantine: Path
    report: Path


def plan_outputs(out: Path, quarantine: Path | None, *, inputs: Sequence[Path | None] = ()) -> Outputs:
    """Check the output paths before any work: a known extension, a folder that exists (or can be made) and is
    writable, and no two outputs (or an output and an input) on the same file."""
    out = Path(out)
    planned = Outputs(out, Path(quarantine) if quarantine else out.with_name(f"{out.stem}.quarantine.csv"),
                      out.with_name(f"{out.stem}.report.json"))
    for path, option in ((planned.out, "--out"), (planned.quarantine, "--quarantine")):
        if path.suffix.lower() not in OUT_EXTENSIONS:
            raise BadInput(path, f"unsupported {option} extension {path.suffix!r}; expected .parquet or .csv")
    named = [(planned.out, "--out"), (planned.quarantine, "--quarantine"), (planned.report, "the score report"),
             *[(Path(p), "an input file") for p in inputs if p is not None]]
    for path, option in named[:3]:
        if path.is_dir():
            raise BadInput(path, f"{option} is a folder; give a file name")
        folder = next(p for p in [path.parent, *path.parent.parents] if p.exists())
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise BadInput(path, f"cannot write {option}: {folder} is not a writable folder")
    seen: dict[Path, str] = {}
    for path, option in named:
        key = path.resolve()
        if key in seen:
            raise BadInput(path, f"{option} and {seen[key]} are the same file; give each its own path")
        seen[key] = option
    return planned


class _Writer:
    """Append scored rows to a Parquet or CSV file at a temporary path, `rows` at a time: a Parquet row group holds
    `rows` rows however the batch was partitioned, so the file's bytes do not depend on it. Each row group is
    encoded and written on a background thread (Arrow releases the GIL) while the next chunk is scored; one at a
    time, in order, so memory holds at most one chunk in flight."""

    def __init__(self, path: Path, rows: int) -> None:
        self.path = path
        self.suffix = path.suffix.lower()
        if self.suffix not in OUT_EXTENSIONS:
            raise BadInput(path, f"unsupported output extension {self.suffix!r}; expected .parquet or .csv")
        self.rows = rows
        self._pq: pq.ParquetWriter | None = None
        self._first = True
        self._held: list[pl.DataFrame] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leadlift-writer")
        self._pending: Future[None] | None = None

    def _wait(self) -> None:
        """Wait for the row group in flight; its error, if any, is raised here."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def write(self, df: pl.DataFrame, tmp: Path) -> None:
        self._held.append(df)
        held = sum(f.height for f in self._held)
        if held < self.rows:
            return
        # One Arrow chunk per row group, as one pass writes it: Parquet's pages follow the chunks.
        rows = pl.concat(self._held, rechunk=True) if len(self._held) > 1 else self._held[0]
        cut = held - held % self.rows
        self._held = [rows.slice(cut)] if cut < held else []
        for start in range(0, cut, self.rows):
            self._wait()
            self._pending = self._pool.submit(self._write_handed, [rows.slice(start, self.rows)], tmp)

    def _write_handed(self, box: list[pl.DataFrame], tmp: Path) -> None:
        """`_write` of the one frame in `box`, taken out so that only this call holds it (the Arrow copy is made
        before Parquet encodes, and the frame can go meanwhile)."""
        self._write(box.pop(), tmp)

    def _write(self, df: pl.DataFrame, tmp: Path) -> None:
        if self.suffix == ".parquet":
            table = df.to_arrow()
            del df
            if self._pq is None:
                self._pq = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            self._pq.write_table(table)
        else:
            with tmp.open("a" if not self._first else "w") as fh:
                csv_safe(df).write_csv(fh, include_header=self._first)
        self._first = False

    def close(self, tmp: Path) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
        if self._held:
            self._write(pl.concat(self._held, rechunk=True), tmp)
            self._held = []
        if self._pq is not None:
            self._pq.close()
        elif self.suffix == ".parquet":
            pq.write_table(pa.Table.from_pylist([], schema=pl.DataFrame(schema=OUTPUT_SCHEMA).to_arrow().schema), tmp)
        elif self._first:
            pl.DataFrame(schema=OUTPUT_SCHEMA).write_csv(tmp)


# ---------------------------------------------------------------- read and check


@dataclass(frozen=True)
class Batch:
    """A checked batch: clean leads and events, the quarantine, per-table counts and the newest clean timestamp."""

    leads: pl.DataFrame
    events: pl.DataFrame | None
    quarantine: pl.DataFrame
    newest: datetime | None
    counts: dict[str, dict[str, Any]]
    #: The contract's facts per table (`features.contract.ContractResult.facts`): Spark merges those of its buckets.
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Clean:
    """The clean leads and events of one partition of a batch (of the whole batch when it is small): in memory, or
    Arrow IPC files in a scratch folder."""

    leads: pl.DataFrame | Path
    events: pl.DataFrame | Path | None

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        def read(kept: pl.DataFrame | Path | None) -> pl.DataFrame | None:
            return pl.read_ipc(kept) if isinstance(kept, Path) else kept

        leads = read(self.leads)
        assert leads is not None
        return leads, read(self.events)

    def part(self, missing_optional: list[str], as_of: datetime) -> Part:
        """The partition ready for `score_part`, features at `as_of` (the whole batch's)."""
        leads, events = self.frames()
        batch = Batch(leads, events, C.empty_quarantine(), None, {})
        return Part(batch, missing_optional, as_of, _events_lazy(events))


@dataclass(frozen=True)
class Loaded:
    """A batch read and checked, whole or partition by partition: its clean rows (`parts`, in file order), the
    quarantine, per-table counts, the as-of time, input columns the file lacks (filled as missing), how each file was
    read, and whether events were given."""

    parts: list[Clean]
    quarantine: pl.DataFrame
    counts: dict[str, dict[str, Any]]
    as_of: datetime
    absent: list[str]
    read: dict[str, dict[str, Any]]
    events_given: bool
    #: Rows of the leads file: the raw leads, or for a raw export the mapped rows (rows a mapping's filter skipped
    #: are not rows of the batch).
    rows_in: int
    #: Clean leads, to be scored.
    scored: int
    #: Missing model inputs of the clean leads (`features.spec.input_gaps`; empty when loaded without a spec).
    gaps: list[dict[str, Any]] = field(default_factory=list)


def scan_batch_table(table: str, path: Path, *, encoding: str | None = None) -> tuple[pl.LazyFrame, dict[str, Any]]:
    """A canonical leads or events file, read as validate reads it (`pipelines.ingest.read_table`), lazily."""
    facts: dict[str, Any] = {}
    return read_table(canonical_spec(table, path, encoding=encoding), facts=facts), facts


def read_batch_table(table: str, path: Path, *, encoding: str | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A canonical leads or events file, read as validate reads it (`pipelines.ingest.read_table`)."""
    frame, facts = scan_batch_table(table, path, encoding=encoding)
    return _collect(frame, path), facts


def _collect(frame: pl.LazyFrame, path: Path) -> pl.DataFrame:
    """Collect a query that reads `path`; what polars cannot read there is bad input naming the file."""
    try:
        return frame.collect()
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError, pl.exceptions.InvalidOperationError) as e:
        raise BadInput(path, f"cannot be read: {safe_message(e)}") from None


def check_batch(leads: pl.DataFrame, events: pl.DataFrame | None, *, source: dict[str, Any], leads_file: Path,
                events_file: Path | None, as_of: datetime | None, now: datetime | None = None,
                file_checks: bool = True) -> Batch:
    """Clean leads and events plus the quarantine (table, row, lead_id, column, reason); leads created after an
    explicit as-of time are quarantined too, since no decision can be made before a lead exists, and their events
    with them ("lead quarantined"), so events in = out + quarantined holds as for any quarantined lead.

    Rows are numbered by their position unless the frames carry `features.contract.ROW` (a part of a bigger file).
    `now` fixes the time after which a timestamp is in the future (default: the clock); `file_checks` as in
    `features.contract.validate`."""
    passthrough = [c for c in dict.fromkeys([*source.get("notes_allowed", []), *source.get("keep", [])])
                   if c in leads.columns]
    files = {"leads": str(leads_file), **({"events": str(events_file)} if events_file else {})}
    result = C.validate(leads, events, None, numeric=source.get("numeric") or {},
                        categorical=list(source.get("categorical") or {}), passthrough=passthrough, files=files,
                        event_types=event_vocabulary(source), now=now, file_checks=file_checks, as_of=as_of)
    counts = {t: dict(c) for t, c in result.counts.items()}
    return Batch(result.leads, result.events if events is not None else None, result.quarantine,
                 result.max_timestamp, counts, result.facts)


def load_batch(leads_path: Path, events: Path | None, source: dict[str, Any], as_of: datetime | None, *,
               encoding: str | None = None, spec: dict[str, Any] | None = None,
               scratch: Callable[[], Path] | None = None, partition_leads: int = PARTITION_LEADS) -> Loaded:
    """Read and check a batch (the read and check steps of scoring, shared with `leadlift explain`); the check is
    `check_part`, the same function a Spark bucket runs. Given a `scratch` folder, a batch of more than
    `partition_leads` leads (or ten times as many events) is split (`partition_batch`), checked partition by
    partition, and its clean rows are kept there (`scratch()` makes the folder, only then); otherwise it is read and
    checked whole, in memory. With the bundle's feature `spec`, the missing model inputs are counted as the rows go
    by."""
    opened = open_batch(leads_path, events, source, encoding=encoding)
    if scratch is not None:
        parted = partition_batch(opened, source, as_of, spec=spec, scratch=scratch, partition_leads=partition_leads)
        if parted is not None:
            return parted.check_all()
    return load_whole(opened, source, as_of, spec=spec)


def load_whole(opened: Opened, source: dict[str, Any], as_of: datetime | None, *, spec: dict[str, Any] | None
               ) -> Loaded:
    """An opened batch read and checked whole, in memory (`check_part`)."""
    leads_path, events_file = opened.leads_file, opened.events_file
    raw = _collect(opened.leads, leads_path)
    events_raw = _collect(opened.events, events_file) if opened.events is not None and events_file else None
    part = check_part(raw, events_raw, source, leads_file=leads_path, events_file=events_file, as_of=as_of)
    batch = part.batch
    return Loaded([Clean(batch.leads, batch.events)], batch.quarantine, batch.counts, part.as_of,
                  part.missing_optional, opened.read, opened.events is not None, raw.height, batch.leads.height,
                  _gaps(batch.leads, spec, part.missing_optional))


@dataclass(frozen=True)
class Opened:
    """A batch's files, opened lazily as validate reads them: the events only when given and used."""

    leads: pl.LazyFrame
    events: pl.LazyFrame | None
    #: How each file was read (`pipelines.ingest.read_table`'s facts; nothing for Parquet).
    read: dict[str, dict[str, Any]]
    leads_file: Path
    events_file: Path | None


def open_batch(leads_path: Path, events: Path | None, source: dict[str, Any], *, encoding: str | None = None
               ) -> Opened:
    leads, read_leads = scan_batch_table("leads", leads_path, encoding=encoding)
    read = {"leads": read_leads}
    scan = None
    if events is not None and source.get("has_events", True):
        scan, read["events"] = scan_batch_table("events", events, encoding=encoding)
    return Opened(leads, scan, {k: v for k, v in read.items() if v}, leads_path, events if scan is not None else None)


def _gaps(leads: pl.DataFrame, spec: dict[str, Any] | None, absent: list[str]) -> list[dict[str, Any]]:
    return input_gaps(leads, spec, absent=absent) if spec is not None else []


def _count(frame: pl.LazyFrame, path: Path) -> int:
    return int(_collect(frame.select(pl.len()), path).item())


# ---------------------------------------------------------------- a big batch, partition by partition

_PART = "_part"
_ID = "_id"
_KEY = "_key"


def partition_batch(opened: Opened, source: dict[str, Any], as_of: datetime | None, *, spec: dict[str, Any] | None,
                    scratch: Callable[[], Path], partition_leads: int = PARTITION_LEADS) -> Partitioned | None:
    """A batch of more than `partition_leads` leads (or ten times as many events) split into partitions of
    consecutive leads (`split_batch`) in a `scratch()` folder, ready to check; None for a smaller batch (read whole).
    On a machine with two cores, twice as many partitions, checked and scored two at a time: the same memory."""
    leads, events, leads_path, events_file = opened.leads, opened.events, opened.leads_file, opened.events_file
    n_leads = _count(leads, leads_path)
    n_events = _count(events, events_file) if events is not None and events_file is not None else 0
    partitions = max(1, math.ceil(n_leads / partition_leads),
                     math.ceil(n_events / (partition_leads * PARTITION_EVENTS // PARTITION_LEADS)))
    if partitions <= 1 or not n_leads:
        return None
    partitions *= score_workers()
    now = datetime.now(UTC)  # every partition is checked against the same clock
    # Column-level problems (a missing column, a file unlike the bundle's) on zero rows, before any work, as Spark.
    shape = check_part(_collect(leads.head(0), leads_path),
                       _collect(events.head(0), events_file) if events is not None and events_file else None,
                       source, leads_file=leads_path, events_file=events_file, as_of=as_of, now=now,
                       file_checks=False)
    folder = scratch()
    raw = split_batch(leads, events, partitions=partitions, rows=(n_leads, n_events), scratch=folder,
                      leads_file=leads_path, events_file=events_file)
    return Partitioned(raw, partitions, source, leads_path, events_file, as_of, now, shape.missing_optional, spec,
                       opened.read, n_leads)


@dataclass(frozen=True)
class Checked:
    """What checking one partition found, without its rows: its quarantine, counts, the contract's facts and the
    missing model inputs of its clean leads."""

    quarantine: pl.DataFrame
    counts: dict[str, dict[str, Any]]
    facts: dict[str, dict[str, Any]]
    gaps: list[dict[str, Any]]


@dataclass(frozen=True)
class Partitioned:
    """A big batch split into partitions (`partition_batch`), to be checked partition by partition with `check_part`
    (the file-level checks left to the merged facts): kept for scoring later (`check_all`), or each scored as soon
    as it is checked (`check_and_score`)."""

    raw: RawParts
    partitions: int
    source: dict[str, Any]
    leads_file: Path
    events_file: Path | None
    as_of: datetime | None
    #: The clock every partition is checked against.
    now: datetime
    absent: list[str]
    spec: dict[str, Any] | None
    read: dict[str, dict[str, Any]]
    rows_in: int

    def check(self, k: int) -> tuple[Checked, Batch]:
        """Partition k checked; its raw rows are removed from scratch."""
        lead_rows, event_rows = self.raw.read(k)
        batch = check_part(lead_rows, event_rows, self.source, leads_file=self.leads_file,
                           events_file=self.events_file, as_of=self.as_of, now=self.now, file_checks=False).batch
        self.raw.remove(k)
        return Checked(batch.quarantine, batch.counts, batch.facts, _gaps(batch.leads, self.spec, self.absent)), batch

    def check_all(self) -> Loaded:
        """Every partition checked, as many at a time as are scored at a time, its clean rows kept in scratch."""
        def kept(k: int) -> tuple[Checked, Clean]:
            checked, batch = self.check(k)
            leads = self.raw.folder / f"clean-leads-{k}.arrow"
            batch.leads.write_ipc(leads)
            events = None
            if batch.events is not None:
                events = self.raw.folder / f"clean-events-{k}.arrow"
                batch.events.write_ipc(events)
            return checked, Clean(leads, events)

        done = list(in_order(kept, range(self.partitions), score_workers()))
        return self.loaded([checked for checked, _ in done], [clean for _, clean in done])

    def check_and_score(self, score: Callable[[Part], list[pl.DataFrame]]
                        ) -> Iterator[tuple[Checked, list[pl.DataFrame]]]:
        """Each partition checked, then scored by `score` at once in the same task, two at a time on two cores,
        handed on in file order: its clean rows are never written out and read back. Only for an explicit as-of
        time (the default one is the newest clean timestamp of the whole batch, known after every check)."""
        if self.as_of is None:
            raise ValueError("check_and_score needs the as-of time: use check_all without one")
        at = utc(self.as_of)

        def scored(k: int) -> tuple[Checked, list[pl.DataFrame]]:
            checked, batch = self.check(k)
            return checked, score(Part(batch, self.absent, at, _events_lazy(batch.events)))

        yield from in_order(scored, range(self.partitions), score_workers())

    def loaded(self, checks: list[Checked], parts: list[Clean]) -> Loaded:
        """What the partitions found merged into what the whole file holds (`features.contract.merge_table_facts`):
        file-level problems raise here, as for a whole file; `parts` are the clean rows still to score."""
        merged = C.merge_table_facts([c.facts for c in checks])
        for table, f in merged.items():
            C.file_problems(table, f["file"], f["parsed"], f["summary"])
        newest = max((f["summary"]["max_timestamp"] for f in merged.values()
                      if f["summary"].get("max_timestamp") is not None), default=None)
        total = C.merge_counts([c.counts for c in checks])
        scored = int(total["leads"]["rows_out"])
        return Loaded(parts, pl.concat([c.quarantine for c in checks]), total,
                      decision_time(self.as_of, newest, self.now), self.absent, self.read, self.events_file is not None,
                      self.rows_in, scored, merge_gaps([c.gaps for c in checks], scored))


@dataclass(frozen=True)
class RawParts:
    """The raw rows of a batch split into partitions: Arrow IPC files `<table>-<k>-<run>.arrow` in a scratch folder
    (each run of consecutive slices of a file appends its rows of partition k to one file, `_route_file`), every row
    with its 1-based file row (`features.contract.ROW`). Runs are numbered in file order, so a partition's files read
    in name order give its rows in file order."""

    folder: Path
    leads_schema: pl.Schema
    events_schema: pl.Schema | None

    def read(self, k: int) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """Partition k's leads and events, each in file order."""
        leads = self._read("leads", k, self.leads_schema)
        assert leads is not None
        return leads, self._read("events", k, self.events_schema)

    def remove(self, k: int) -> None:
        for table in ("leads", "events"):
            for path in self._files(table, k):
                path.unlink(missing_ok=True)

    def _files(self, table: str, k: int) -> list[Path]:
        return sorted(self.folder.glob(f"{table}-{k}-*.arrow"))

    def _read(self, table: str, k: int, schema: pl.Schema | None) -> pl.DataFrame | None:
        if schema is None:
            return None
        files = self._files(table, k)
        if not files:
            return pl.DataFrame(schema=schema)
        return pl.concat([pl.read_ipc(f) for f in files], rechunk=False)


class _PartWriters:
    """Append rows to the partition files `<table>-<k>-<run>.arrow` of one run of consecutive slices of a file, one
    Arrow IPC writer per partition."""

    def __init__(self, folder: Path, table: str, run: int) -> None:
        self.folder, self.table, self.run = folder, table, run
        self._open: dict[int, pa.ipc.RecordBatchFileWriter] = {}

    def write(self, frame: pl.DataFrame) -> None:
        """Rows of `frame` to the partition in its `_PART` column."""
        for (k,), rows in frame.partition_by(_PART, as_dict=True, include_key=False).items():
            arrow = rows.to_arrow()
            writer = self._open.get(int(k))
            if writer is None:
                path = self.folder / f"{self.table}-{k}-{self.run:04d}.arrow"
                writer = self._open[int(k)] = pa.ipc.new_file(str(path), arrow.schema)
            writer.write_table(arrow)

    def close(self) -> None:
        for writer in self._open.values():
            writer.close()
        self._open.clear()


def _route_file(frame: pl.LazyFrame, step: int, table: str, path: Path,
                route: Callable[[pl.DataFrame], pl.DataFrame], scratch: Path) -> None:
    """Every slice of a file, `route`d (given its `_PART` column) to its partitions' files in `scratch`. A Parquet
    file's slices are cut in as many runs of consecutive slices as there are workers, each run read, routed and
    appended by a thread of its own to files of its own (a partition's files in run order hold its rows in file
    order; the files stay as many as partitions x workers, however big the batch); a CSV is read as one stream."""
    slices = _parquet_slices(frame, step, table, path)
    if slices is None:
        runs: list[Iterable[pl.DataFrame]] = [_batches(frame, step, path)]
    else:
        workers = max(1, min(score_workers(), len(slices)))
        runs = [(read() for read in slices[i * len(slices) // workers:(i + 1) * len(slices) // workers])
                for i in range(workers)]  # each run's slices read by the thread that iterates it

    def run(i: int) -> None:
        writers = _PartWriters(scratch, table, i)
        try:
            for rows in runs[i]:
                writers.write(route(rows))
        finally:
            writers.close()

    for _ in in_order(run, range(len(runs)), len(runs)):
        pass


def split_batch(leads: pl.LazyFrame, events: pl.LazyFrame | None, *, partitions: int, rows: tuple[int, int],
                scratch: Path, leads_file: Path, events_file: Path | None) -> RawParts:
    """Split a batch into `partitions` partitions of consecutive leads file rows, each with its leads' events; every
    row keeps its file row. Each file is read once, a slice at a time (`_route_file`).

    All copies of a lead id go to one partition, so the contract finds duplicates as it does in a whole file: the
    partition of the id's first copy not already set aside by the reader (a ragged CSV row), else of its first copy.
    A clean lead is therefore always in the partition of its own row, and scoring the partitions in order writes the
    leads in file order. Events go to their lead's partition (looked up by a 64-bit hash of the id, or by the id when
    two ids of the file share a hash); an event whose lead is not in the file, or that has no id, goes to the
    partition of its own position in the events file, where the contract quarantines it as one machine would.
    """
    numbered = _numbered(leads)
    schema = numbered.collect_schema()
    n_leads, n_events = rows
    size = math.ceil(n_leads / partitions)
    own = ((pl.col(C.ROW) - 1) // size).cast(pl.UInt32)
    pending = pl.col(C.REASON).is_null() if C.REASON in schema else pl.lit(True)
    lead_id = C.lead_id_expr(schema[LEAD_ID])

    def keyed(key: pl.Expr) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(rows whose key repeats, the others): file row, key, own partition, whether the reader kept the row."""
        ids = _collect(numbered.filter(lead_id.is_not_null()).select(
            C.ROW, key.alias(_KEY), own.alias(_PART), pending.alias("_pending")), leads_file)
        return _repeated(ids)

    # The ids are hashed as they are read (the strings are never held: a batch of millions of leads); only the rows
    # whose hash repeats are read again, to tell duplicates from two ids that share a hash.
    repeated, single = keyed(_id_hash(lead_id))
    by_hash = True
    if repeated.height:
        again = numbered.filter(pl.col(C.ROW).is_in(repeated[C.ROW].implode()))
        texts = _collect(again.select(lead_id.alias(_ID)), leads_file)
        by_hash = texts[_ID].n_unique() == repeated[_KEY].n_unique()  # no two ids of the file share a hash
    if not by_hash:  # then route by the ids themselves
        repeated, single = keyed(lead_id)
    home = repeated.group_by(_KEY).agg(pl.coalesce(pl.col(_PART).filter(pl.col("_pending")).min(), pl.col(_PART).min()))
    homes = pl.concat([single.select(_KEY, _PART), home])
    moved = repeated.join(home, on=_KEY, suffix="_home").filter(pl.col(_PART) != pl.col(f"{_PART}_home")).select(
        C.ROW, pl.col(f"{_PART}_home").alias("_moved"))
    del repeated, single, home

    def leads_parts(frame: pl.DataFrame) -> pl.DataFrame:
        frame = frame.with_columns(own.alias(_PART))
        if moved.height:
            frame = frame.join(moved, on=C.ROW, how="left", maintain_order="left").with_columns(
                pl.coalesce("_moved", _PART).alias(_PART)).drop("_moved")
        return frame

    _route_file(leads, size, "leads", leads_file, leads_parts, scratch)
    events_schema = None
    if events is not None and events_file is not None:
        events_schema = _numbered(events).collect_schema()
        lead_id = C.lead_id_expr(events_schema[LEAD_ID])
        key = pl.when(lead_id.is_not_null()).then(_id_hash(lead_id)) if by_hash else lead_id
        step = max(1, math.ceil(n_events / partitions))
        by_position = ((pl.col(C.ROW) - 1) // step).cast(pl.UInt32)

        def events_parts(frame: pl.DataFrame) -> pl.DataFrame:
            # An inner join is built on its smaller side, the slice: a left join would build a hash table of every
            # lead of the file for every slice (at 5M leads, 200 ms and 350 MB a slice, against 70 ms and 60 MB).
            found = frame.select(key.alias(_KEY)).with_row_index("_at").join(homes, on=_KEY, how="inner")
            part = np.zeros(frame.height, dtype=np.uint32)
            known = np.zeros(frame.height, dtype=bool)
            at = found["_at"].to_numpy()
            part[at], known[at] = found[_PART].to_numpy(), True
            return frame.with_columns(pl.when(pl.lit(known)).then(pl.lit(part)).otherwise(by_position).alias(_PART))

        _route_file(events, step, "events", events_file, events_parts, scratch)
    return RawParts(scratch, schema, events_schema)


def _id_hash(lead_id: pl.Expr) -> pl.Expr:
    """The 64-bit key a lead id is routed by (two ids that share one are routed by the ids themselves)."""
    return lead_id.hash()


def _repeated(ids: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows whose `_KEY` repeats, and the others. The repeated keys are found by sorting (a hash table with a
    slot per key, as `is_duplicated` builds, holds several times the ids' own size: 400 MB for 5M leads)."""
    keys = ids[_KEY].sort()
    twice = keys.filter(keys == keys.shift(1)).unique()
    repeats = ids[_KEY].is_in(twice.implode())
    return ids.filter(repeats), ids.filter(~repeats)


def _numbered(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Rows with their 1-based file row (a reader that marked ragged CSV rows has numbered them already)."""
    return frame if C.ROW in frame.collect_schema() else frame.with_row_index(C.ROW, offset=1)


def _parquet_slices(frame: pl.LazyFrame, step: int, table: str, path: Path) -> list[Callable[[], pl.DataFrame]] | None:
    """A plain Parquet file's rows in file order with their file row, about `step` at a time, each slice a function
    that reads it (so slices can be read on several threads): polars reads only their pages, where its streaming
    reader would decode every row group at once; numbered after slicing, which polars cannot push a slice through.
    None for any other file (`_batches`)."""
    if canonical_spec(table, path).format != "parquet" or C.ROW in frame.collect_schema():
        return None
    return [functools.partial(_read_slice, frame, start, length, path)
            for start, length in _slices([g.num_rows for g in _row_groups(path)], step)]


def _batches(frame: pl.LazyFrame, step: int, path: Path) -> Iterator[pl.DataFrame]:
    """A file's rows in file order with their file row (`_numbered`), about `step` at a time, as polars' streaming
    batches, read one after another."""
    try:
        yield from _numbered(frame).collect_batches(chunk_size=step)
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError, pl.exceptions.InvalidOperationError) as e:
        raise BadInput(path, f"cannot be read: {safe_message(e)}") from None


def _read_slice(frame: pl.LazyFrame, start: int, length: int, path: Path) -> pl.DataFrame:
    return _collect(frame.slice(start, length), path).with_row_index(C.ROW, offset=start + 1)


def _row_groups(path: Path) -> list[pq.RowGroupMetaData]:
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(i) for i in range(meta.num_row_groups)]


def _slices(groups: Sequence[int], step: int) -> list[tuple[int, int]]:
    """(start, rows) of consecutive slices of a Parquet file whose row groups hold `groups` rows: about `step` rows
    each, cut at row-group boundaries (a slice across a boundary decodes both groups), small groups taken together
    and big ones cut in equal pieces.

    >>> _slices([5, 5, 5, 5], 8)
    [(0, 5), (5, 5), (10, 5), (15, 5)]
    >>> _slices([3, 3, 3, 20], 8)
    [(0, 6), (6, 3), (9, 10), (19, 10)]
    """
    out: list[tuple[int, int]] = []
    start = taken = 0
    for rows in groups:
        if taken and taken + rows > step:
            out.append((start, taken))
            start, taken = start + taken, 0
        if rows <= step:
            taken += rows
            continue
        cut = math.ceil(rows / max(1, round(rows / step)))
        out += [(start + offset, min(cut, rows - offset)) for offset in range(0, rows, cut)]
        start += rows
    if taken:
        out.append((start, taken))
    return out


def _events_lazy(events: pl.DataFrame | None) -> pl.LazyFrame:
    """Clean events as `score_part` takes them (none given: an empty table)."""
    return events.lazy() if events is not None else pl.LazyFrame(
        schema={LEAD_ID: pl.String, OCCURRED_AT: pl.Datetime("us", "UTC"), EVENT_TYPE: pl.String})


def batch_problems(loaded: Loaded, bundle: Bundle, *, leads_file: Path, events_file: Path | None,
                   max_missing_share: float, max_quarantine_share: float
                   ) -> tuple[list[dict[str, Any]], list[str], list[BadInput]]:
    """What a batch would silently lose: (missing model inputs per column, warning lines, refusals). Refusals are
    raised unless the user allows missing inputs; a quarantined share above the maximum is always refused."""
    source = source_of(bundle)
    counts = loaded.counts
    gaps = loaded.gaps
    warnings: list[str] = []
    refusals: list[BadInput] = []
    leads = counts["leads"]
    if leads["rows_in"] and leads["quarantined"] / leads["rows_in"] > max_quarantine_share:
        top = dict(sorted(leads["by_reason"].items(), key=lambda kv: -kv[1])[:3])
        raise BadInput(leads_file, f"{leads['quarantined']} of {leads['rows_in']} leads "
                                   f"({leads['quarantined'] / leads['rows_in']:.1%}) would be quarantined, more than "
                                   f"the maximum share {max_quarantine_share}; top reasons: {top}")
    for g in gaps:
        excess = g["share"] - g["train_share"]
        if not g["absent"] and excess < WARN_MISSING_EXCESS:
            continue
        n = loaded.scored
        what = (f"absent from the file (missing for all {n} leads)" if g["absent"] else
                ", ".join(part for part in (f"missing for {g['missing']} of {n} leads" if g["missing"] else "",
                                            f"{g['unseen']} of {n} values the model never saw" if g["unseen"] else "")
                          if part))
        line = f"model input {g['column']!r} {what}; {g['train_share']:.1%} missing in training"
        warnings.append(line)
        if excess > max_missing_share:
            refusals.append(BadInput(leads_file, f"{line}: the model would score these leads as if it knew nothing "
                                                 f"about {g['column']!r}", column=g["column"]))
    missing_roles = loaded.read.get("leads", {}).get("columns_not_in_file")
    if missing_roles:
        warnings.append(f"{', '.join(map(repr, missing_roles))} named by the mapping (PII, keep, after_outcome or the "
                        "legacy score) not in the leads file: not needed to score; notes go without them")
    if bundle.spec.get("has_events", source.get("has_events", True)):
        if not loaded.events_given:
            warnings.append("the model uses events, but no --events file was given: every lead is scored as if it "
                            "had no tracked activity")
        else:
            ev = counts.get("events", {})
            if ev.get("rows_in") and not ev.get("rows_out"):
                ids = C.UNKNOWN_LEAD in ev["by_reason"]
                line = (f"not one of the {ev['rows_in']} events can be used "
                        f"({', '.join(f'{k}: {v}' for k, v in ev['by_reason'].items())})"
                        + ("; do lead ids have the same form in both files?" if ids else ""))
                warnings.append(line)
                refusals.append(BadInput(events_file, line, column=LEAD_ID if ids else None))
    return gaps, warnings, refusals


def warn_or_refuse(warnings: list[str], refusals: list[BadInput], *, allow_missing: bool, console: Console) -> None:
    """Print `batch_problems`' warnings, then raise its first refusal unless missing inputs are allowed (both
    engines: what one machine refuses, Spark refuses on its driver before scoring)."""
    refused = refusals and not allow_missing
    for line in warnings:
        if not (refused and any(r.what.startswith(line) for r in refusals)):  # the refusal itself says it
            console.print(f"[yellow]warning:[/] {line}", highlight=False)
    if refused:
        first = refusals[0]
        more = f" (and {len(refusals) - 1} more, see the warnings)" if len(refusals) > 1 else ""
        raise BadInput(first.file, f"{first.what}{more}; fix the input, or pass --allow-missing to score anyway",
                       column=first.column)


def score_workers() -> int:
    """Partitions checked and scored at a time: two where this process may use two cores or more, else one (also when
    polars is held to one thread, `POLARS_MAX_THREADS=1`: one thread in all)."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere every core counts
    cores = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    return max(1, min(2, cores, pl.thread_pool_size()))


def in_order(work: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """work(item) for each item, on `workers` threads, handed on in the items' order; at most `workers` results are
    held at a time (one thread: in this thread, one after another). The work must release the GIL to gain: polars,
    numpy, Arrow and numba do."""
    if workers <= 1:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="leadlift") as pool:
        waiting: deque[Future[R]] = deque()
        try:
            for item in items:
                waiting.append(pool.submit(work, item))
                if len(waiting) >= workers:
                    yield waiting.popleft().result()
            while waiting:
                yield waiting.popleft().result()
        finally:
            for future in waiting:
                future.cancel()


def scored_parts(bundle: Bundle, loaded: Loaded, *, catalog: dict[str, Any], chunk_size: int
                 ) -> Iterator[pl.DataFrame]:
    """Every part of a loaded batch scored (`score_part`), chunk by chunk, in file order. Partitions are scored two
    at a time on a machine with two cores or more (features, predictor, TreeSHAP and much of the notes run in
    polars, numpy and numba, which release the GIL), and handed on in order; one at a time otherwise."""
    workers = max(1, min(score_workers(), len(loaded.parts)))
    if workers == 1:
        for clean in loaded.parts:
            yield from score_part(bundle, clean.part(loaded.absent, loaded.as_of), catalog=catalog,
                                  chunk_size=chunk_size)
        return
    score = partition_scorer(bundle, catalog=catalog, chunk_size=chunk_size, workers=workers)
    for frames in in_order(lambda clean: score(clean.part(loaded.absent, loaded.as_of)), loaded.parts, workers):
        yield from _handed_on(frames)


def partition_scorer(bundle: Bundle, *, catalog: dict[str, Any], chunk_size: int, workers: int
                     ) -> Callable[[Part], list[pl.DataFrame]]:
    """A part scored whole (`score_part`) by one of `workers` threads that score parts at a time: in chunks
    1/workers the size (the same memory in all), the kernels on one thread each (the parts are the threads)."""
    size = max(1, chunk_size // workers)

    def score(part: Part) -> list[pl.DataFrame]:
        with kernel_threads(1 if workers > 1 else None):
            return list(score_part(bundle, part, catalog=catalog, chunk_size=size))

    return score


def _handed_on(frames: list[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    """The frames of a list, each let go of as it is handed on: a scored partition's chunks are not all held until
    the next partition comes."""
    frames.reverse()
    while frames:
        yield frames.pop()


# ---------------------------------------------------------------- features, score, notes


def chunks(frame: pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    for start in range(0, frame.height, size):
        yield frame.slice(start, size)


def lead_features(bundle: Bundle, leads: pl.DataFrame, events: pl.LazyFrame, *, as_of: datetime) -> pl.DataFrame:
    """The bundle's features of checked leads (unique ids) at `as_of`: one row per lead, in the leads' order, which
    `build_features` keeps (checked here, a comparison of the ids, rather than paid for with a join)."""
    source = source_of(bundle)
    feats = build_features(leads.lazy(), events, source, observation_days=int(bundle.spec["observation_days"]),
                           windows=bundle.spec["windows"], as_of=as_of).collect()
    if not feats[LEAD_ID].equals(leads[LEAD_ID]):
        raise RuntimeError("features are not in the order of the leads they describe")
    return feats


@dataclass(frozen=True)
class Unwritten:
    """A chunk scored whose SQL rows' notes are still to write (`score_rows` finds it, `noted` completes it)."""

    #: lead_id, probability, score, percentile and decision of every lead of the chunk.
    out: pl.DataFrame
    #: Positions of the SQL rows, and their note values, model matrix and the contact fields notes may carry.
    sql: np.ndarray
    values: pl.DataFrame
    X: np.ndarray
    contact: pl.DataFrame


def score_rows(bundle: Bundle, leads: pl.DataFrame, events: pl.LazyFrame, *, as_of: datetime) -> Unwritten:
    """Features at as_of, calibrated probability, score, percentile and decision, and what the notes of the SQLs
    need."""
    source = source_of(bundle)
    feats = lead_features(bundle, leads, events, as_of=as_of)
    X = to_matrix(feats, bundle.spec)
    p = bundle.probability(X)
    decision = bundle.decide(p)
    sql = np.flatnonzero(decision == SQL)
    firmo = [c for c in [*source.get("categorical", {}), *source.get("keep", [])] if c in leads.columns]
    allowed = [c for c in source.get("notes_allowed", []) if c in leads.columns]
    picked = leads[sql]
    out = pl.DataFrame({LEAD_ID: feats[LEAD_ID].cast(pl.String), "probability": p.astype(np.float64),
                        "score": bundle.score(p).astype(np.int64),
                        "percentile": bundle.percentile(p).astype(np.float64), "decision": decision.astype(str)})
    return Unwritten(out, sql, note_values(feats[sql], picked.select(firmo)), X[sql], picked.select(allowed))


def noted(bundle: Bundle, scored: list[Unwritten], templates: NoteTemplates) -> Iterator[pl.DataFrame]:
    """The scored chunks with their notes, rendered for all their SQL rows at once: a render costs about 25 ms
    however few its rows (some 180 polars calls), so fewer, bigger renders save that much a chunk."""
    notes = build_notes(bundle, pl.concat([c.values for c in scored]), np.concatenate([c.X for c in scored]),
                        templates, contact=pl.concat([c.contact for c in scored]))
    padded = notes.select([(pl.col(c) if c in notes.columns else pl.lit(None)).cast(dtype).alias(c)
                           for c, dtype in OUTPUT_SCHEMA.items() if c not in scored[0].out.columns])
    start = 0
    for chunk in scored:
        mine = padded.slice(start, len(chunk.sql))
        start += len(chunk.sql)
        spread = mine.select(pl.all().gather(pl.lit(spread_index(chunk.out.height, chunk.sql))))  # null off SQL rows
        yield pl.concat([chunk.out, spread], how="horizontal").select(list(OUTPUT_SCHEMA))


def score_chunk(bundle: Bundle, leads: pl.DataFrame, events: pl.LazyFrame, *, as_of: datetime,
                catalog: dict[str, Any] | NoteTemplates) -> pl.DataFrame:
    """Features at as_of, calibrated probability, score, percentile, decision, and notes for the SQLs. `catalog` is
    the reason catalog, or the templates compiled from it for this bundle (`compile_templates`, once per run)."""
    templates = catalog if isinstance(catalog, NoteTemplates) else compile_templates(catalog, bundle.spec)
    return next(noted(bundle, [score_rows(bundle, leads, events, as_of=as_of)], templates))


@dataclass(frozen=True)
class Part:
    """A checked batch (or one bucket of a bigger one) ready to score: `check_part` makes it, `score_part` scores it."""

    batch: Batch
    missing_optional: list[str]
    as_of: datetime
    events: pl.LazyFrame


def decision_time(as_of: datetime | None, newest: datetime | None, now: datetime | None = None) -> datetime:
    """The as-of time features are built at: the given one, else the newest clean timestamp, else now."""
    return utc(as_of) if as_of else (newest or now or datetime.now(UTC))


def check_part(raw: pl.DataFrame, events: pl.DataFrame | None, source: dict[str, Any], *, leads_file: Path,
               events_file: Path | None, as_of: datetime | None, at: datetime | None = None,
               now: datetime | None = None, file_checks: bool = True) -> Part:
    """The contract on leads (and their events): clean rows, quarantine, and the decision time.

    One machine checks a whole file; Spark checks one bucket of it with `at` (the whole batch's decision time),
    `now` fixed by the driver and the file-level checks done once over all buckets.
    """
    missing_optional = check_compatible(raw, source, leads_file)
    raw = raw.with_columns([pl.lit(None, dtype=pl.String).alias(c) for c in missing_optional])
    batch = check_batch(raw, events, source=source, leads_file=leads_file, events_file=events_file,
                        as_of=utc(as_of) if as_of else None, now=now, file_checks=file_checks)
    return Part(batch, missing_optional, at or decision_time(as_of, batch.newest, now), _events_lazy(batch.events))


def score_part(bundle: Bundle, part: Part, *, catalog: dict[str, Any], chunk_size: int,
               notes_rows: int | None = None) -> Iterator[pl.DataFrame]:
    """Scored leads of a checked part, chunk by chunk, in input order (one machine's whole batch, or a Spark bucket).
    The note templates are compiled once for the part, and the notes of consecutive chunks written together
    (`noted`: a render costs ~25 ms however few its rows) as long as their SQL rows stay within `notes_rows`, by
    default a chunk's worth of leads, so a render's memory is bounded as a chunk's is (a chunk with more SQL rows is
    written alone). A partition's two chunks on one of two threads share a render, as do two of one thread's."""
    templates = compile_templates(catalog, bundle.spec)
    budget = chunk_size if notes_rows is None else notes_rows
    pending: list[Unwritten] = []
    rows = 0
    for leads in chunks(part.batch.leads, chunk_size):
        events = part.events.filter(pl.col(LEAD_ID).is_in(leads[LEAD_ID].implode()))
        scored = score_rows(bundle, leads, events, as_of=part.as_of)
        if pending and rows + len(scored.sql) > budget:
            yield from noted(bundle, pending, templates)
            pending, rows = [], 0
        pending.append(scored)
        rows += len(scored.sql)
    if pending:
        yield from noted(bundle, pending, templates)


# ---------------------------------------------------------------- the run


def load_mapped_batch(mapping: Path, leads_path: Path, events: Path | None, source: dict[str, Any],
                      as_of: datetime | None, event_sources: dict[str, Path] | None = None, *,
                      encoding: str | None = None, spec: dict[str, Any] | None = None) -> Loaded:
    """`load_batch` for raw export files: the mapping's leads and events sections first (`ingest.map_batch`: its
    reasons for bad rows, no target needed), then the same checks as a canonical batch. Row numbers and rows in
    stay those of the raw leads file."""
    from pipelines.ingest import map_batch

    mapped = map_batch(mapping, leads=leads_path, events=events, event_sources=event_sources, encoding=encoding)
    absent = check_compatible(mapped.leads, source, leads_path)
    raw = mapped.leads.with_columns([pl.lit(None, dtype=pl.String).alias(c) for c in absent])
    use_events = mapped.events is not None and source.get("has_events", True)
    batch = check_batch(raw, mapped.events if use_events else None, source=source, leads_file=leads_path,
                        events_file=events or (Path(str(mapping)) if use_events else None),
                        as_of=utc(as_of) if as_of else None)
    bad = pl.concat([mapped.quarantine, batch.quarantine.cast(mapped.quarantine.schema)])  # type: ignore[arg-type]
    rows_in = int(mapped.report["leads"]["rows_in"])
    counts = {"leads": _counts(bad, "leads", rows_in)}
    if use_events:
        counts["events"] = _counts(bad, "events", int(mapped.report["events"]["rows_in"]))
    for table, entry in counts.items():  # rows a mapping's filter skipped: not rows of the batch, but counted
        skipped = (mapped.report.get(table) or {}).get("skipped_by_filter") or {}
        if sum(skipped.values()):
            entry["skipped_by_filter"] = skipped
    at = utc(as_of) if as_of else (batch.newest or datetime.now(UTC))
    read = {t: mapped.report[t]["read"] for t in ("leads", "events")
            if isinstance(mapped.report.get(t), dict) and mapped.report[t].get("read")}
    not_in_file = mapped.report["leads"].get("dropped_columns", {}).get("not_in_file")
    if not_in_file:  # PII, keep, after_outcome, the legacy score: named in the report, never required to score
        read["leads"] = {**read.get("leads", {}), "columns_not_in_file": not_in_file}
    return Loaded([Clean(batch.leads, batch.events)], bad, counts, at, absent, read, use_events, rows_in,
                  batch.leads.height, _gaps(batch.leads, spec, absent))


def _counts(quarantine: pl.DataFrame, table: str, rows_in: int) -> dict[str, Any]:
    """rows_in, rows_out, quarantined and by reason for one table of a quarantine (event sources of a list are
    tables "events:<name>")."""
    mine = quarantine.filter((pl.col("table") == table) | pl.col("table").str.starts_with(f"{table}:"))
    by_reason = dict(sorted((str(r), int(n)) for r, n in mine.group_by("reason").len().iter_rows()))
    return {"rows_in": rows_in, "rows_out": rows_in - mine.height, "quarantined": mine.height, "by_reason": by_reason}


def score_file(leads_path: Path, out: Path, *, events: Path | None = None, as_of: datetime | None = None,
               quarantine: Path | None = None, model: str | Path = "data/artifacts", chunk_size: int = 50000,
               console: Console | None = None, encoding: str | None = None, allow_missing: bool = False,
               max_missing_share: float = DEFAULT_MAX_MISSING_SHARE,
               max_quarantine_share: float = DEFAULT_MAX_QUARANTINE_SHARE, mapping: Path | None = None,
               event_sources: dict[str, Path] | None = None, partition_leads: int = PARTITION_LEADS
               ) -> dict[str, Any]:
    """Score a batch file; write scores, the quarantine and the score report as one; return the report. With
    `mapping`, the files are a raw export that the source mapping brings into the canonical form first. A batch of
    more than `partition_leads` leads is checked and scored partition by partition (the module docstring)."""
    console = console or Console(stderr=True)
    outputs = plan_outputs(out, quarantine, inputs=[leads_path, events, *(event_sources or {}).values()])
    bundle_dir = resolve_bundle_dir(model)
    bundle = load_bundle_dir(bundle_dir)
    with ExitStack() as scratch_space:
        def scratch() -> Path:
            return scratch_space.enter_context(scratch_dir(outputs.out))

        return _score(bundle, bundle_dir, outputs, leads_path=leads_path, events=events, as_of=as_of, model=model,
                      chunk_size=chunk_size, console=console, encoding=encoding, allow_missing=allow_missing,
                      max_missing_share=max_missing_share, max_quarantine_share=max_quarantine_share,
                      mapping=mapping, event_sources=event_sources, scratch=scratch, partition_leads=partition_leads)


def _score(bundle: Bundle, bundle_dir: Path, outputs: Outputs, *, leads_path: Path, events: Path | None,
           as_of: datetime | None, model: str | Path, chunk_size: int, console: Console, encoding: str | None,
           allow_missing: bool, max_missing_share: float, max_quarantine_share: float, mapping: Path | None,
           event_sources: dict[str, Path] | None, scratch: Callable[[], Path], partition_leads: int
           ) -> dict[str, Any]:
    """`score_file` once the outputs are planned and the bundle is loaded: read -> check -> decide -> score, or for a
    big batch with an explicit as-of time, read -> (check -> score) per partition -> decide: the scores are written
    to the temporary output as they come and kept only if the batch is not refused."""
    source = source_of(bundle)
    parted = None
    if mapping is not None:
        loaded = load_mapped_batch(mapping, leads_path, events, source, as_of, event_sources,
                                   encoding=encoding, spec=bundle.spec)
    else:
        opened = open_batch(leads_path, events, source, encoding=encoding)
        parted = partition_batch(opened, source, as_of, spec=bundle.spec, scratch=scratch,
                                 partition_leads=partition_leads)
        if parted is None:
            loaded = load_whole(opened, source, as_of, spec=bundle.spec)
        elif as_of is None:
            loaded = parted.check_all()  # the as-of time is the newest clean timestamp: every check first
    # A big batch with an explicit as-of time: each partition scored as it is checked, the batch decided after.
    fused = parted if parted is not None and as_of is not None else None
    catalog = load_catalog()
    writer = _Writer(outputs.out, chunk_size)
    tally = {"sql": 0, "scored": 0}

    def write(scored: pl.DataFrame, out_tmp: Path, progress: Progress, task: TaskID) -> None:
        tally["sql"] += int((scored["decision"] == SQL).sum())
        tally["scored"] += scored.height
        writer.write(scored, out_tmp)
        progress.advance(task, scored.height)

    def decide(loaded: Loaded) -> tuple[list[dict[str, Any]], list[str]]:
        gaps, warnings, refusals = batch_problems(loaded, bundle, leads_file=leads_path, events_file=events,
                                                  max_missing_share=max_missing_share,
                                                  max_quarantine_share=max_quarantine_share)
        if not (bundle_dir / MANIFEST).exists():
            warnings.append(f"the bundle {bundle_dir} has no {MANIFEST}: its files cannot be checked for truncation "
                            "or change (re-run calibrate to seal it)")
        warn_or_refuse(warnings, refusals, allow_missing=allow_missing, console=console)
        return gaps, warnings

    if fused is None:
        gaps, warnings = decide(loaded)
    # features -> score -> write, as one transaction; partitions in file order, so rows come out in input order
    with atomic_paths(outputs.quarantine, outputs.report, outputs.out) as (q_tmp, report_tmp, out_tmp), Progress(
            TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
            transient=True) as progress:
        if fused is not None:
            task = progress.add_task("score", total=fused.rows_in)
            score = partition_scorer(bundle, catalog=catalog, chunk_size=chunk_size, workers=score_workers())
            checks: list[Checked] = []
            for checked, frames in fused.check_and_score(score):
                checks.append(checked)
                for scored in _handed_on(frames):
                    write(scored, out_tmp, progress, task)
                progress.advance(task, int(checked.counts["leads"]["quarantined"]))
            writer.close(out_tmp)
            loaded = fused.loaded(checks, [])
            gaps, warnings = decide(loaded)  # refused: nothing is written, the temporary output goes
        else:
            task = progress.add_task("score", total=loaded.scored)
            for scored in scored_parts(bundle, loaded, catalog=catalog, chunk_size=chunk_size):
                write(scored, out_tmp, progress, task)
            writer.close(out_tmp)
        n_sql, n_scored = tally["sql"], tally["scored"]
        rejected = loaded.quarantine.sort("table", "row")
        frame_writer(outputs.quarantine)(rejected, q_tmp)
        n_quarantined = int((rejected["table"] == "leads").sum())
        if loaded.rows_in != n_scored + n_quarantined or n_scored != loaded.scored:
            raise RuntimeError(f"reconciliation failed: {loaded.rows_in} rows in, {n_scored} scored, "
                               f"{n_quarantined} quarantined")
        report = _report(loaded, outputs, n_sql=n_sql, n_quarantined=n_quarantined, gaps=gaps, warnings=warnings,
                         leads_file=leads_path, events_file=events, model=model, bundle_dir=bundle_dir,
                         allow_missing=allow_missing, max_missing_share=max_missing_share)
        report_tmp.write_text(json_text(report))
    return report


def _report(loaded: Loaded, outputs: Outputs, *, n_sql: int, n_quarantined: int, gaps: list[dict[str, Any]],
            warnings: list[str], leads_file: Path, events_file: Path | None, model: str | Path, bundle_dir: Path,
            allow_missing: bool, max_missing_share: float) -> dict[str, Any]:
    """The score report (`<out stem>.report.json`): the reconciliation, quarantined rows by reason for each table,
    missing model inputs, the warnings printed, and how each file was read."""
    counts = loaded.counts
    events = counts.get("events")
    return {
        "rows_in": loaded.rows_in,
        "scored": loaded.scored,
        "quarantined": n_quarantined,
        "sql": n_sql,
        "leads": {"file": str(leads_file), **counts["leads"], **_read_facts(loaded, "leads")},
        "events": ({"file": str(events_file), "given": True, **events, **_read_facts(loaded, "events")}
                   if events is not None else {"file": str(events_file) if events_file else None, "given": False}),
        "events_quarantined": int(events["quarantined"]) if events else 0,
        "as_of": loaded.as_of.isoformat(),
        "missing_optional_columns": loaded.absent,
        "missing_inputs": gaps,
        "allow_missing": allow_missing,
        "max_missing_share": max_missing_share,
        "warnings": warnings,
        "model": str(model),
        "bundle_manifest": (bundle_dir / MANIFEST).exists(),
        "out": str(outputs.out),
        "quarantine_file": str(outputs.quarantine),
        "report_file": str(outputs.report),
    }


def _read_facts(loaded: Loaded, table: str) -> dict[str, Any]:
    """How a CSV was read (encoding, separator, ragged rows); nothing for Parquet."""
    return {"read": loaded.read[table]} if table in loaded.read else {}


def summary_line(report: dict[str, Any]) -> str:
    """"rows in 400 = scored 398 + quarantined 2; events: 3684 in, 3 quarantined (unknown lead: 3); 17 SQL"."""
    line = f"rows in {report['rows_in']} = scored {report['scored']} + quarantined {report['quarantined']}"
    events = report.get("events") or {}
    if events.get("given"):
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(events["by_reason"].items(), key=lambda kv: -kv[1]))
        line += f"; events: {events['rows_in']} in, {events['quarantined']} quarantined" + (
            f" ({reasons})" if reasons else "")
        skipped = sum((events.get("skipped_by_filter") or {}).values())
        if skipped:
            line += f", {skipped} more skipped by the mapping's filter"
    else:
        line += "; no events"
    return f"{line}; {report['sql']} SQL"


def explain_file(leads_path: Path, *, events: Path | None, as_of: datetime | None, lead_ids: list[str] | None,
                 model: str | Path, encoding: str | None = None) -> Iterator[str]:
    """Markdown handoff notes for the given leads (all by default), whatever their decision."""
    bundle = load_bundle(model)
    loaded = load_batch(leads_path, events, source_of(bundle), as_of, encoding=encoding)
    (clean,) = loaded.parts  # read and checked whole
    leads, checked_events = clean.frames()
    if lead_ids:
        leads = leads.filter(pl.col(LEAD_ID).is_in(lead_ids))
    notes = note_frame_for_leads(bundle, leads, _events_lazy(checked_events), as_of=loaded.as_of,
                                 catalog=load_catalog())
    yield from notes_markdown(notes)


def note_frame_for_leads(bundle: Bundle, leads: pl.DataFrame, events: pl.LazyFrame, *, as_of: datetime,
                         catalog: dict[str, Any]) -> pl.DataFrame:
    """Handoff notes (a notes frame) for every given lead (SQL or not), in input order, with features at as_of."""
    source = source_of(bundle)
    feats = lead_features(bundle, leads, events, as_of=as_of)
    firmo = [c for c in [*source.get("categorical", {}), *source.get("keep", [])] if c in leads.columns]
    return build_notes(bundle, note_values(feats, leads.select(firmo)), to_matrix(feats, bundle.spec),
                       compile_templates(catalog, bundle.spec))


def notes_for_leads(bundle: Bundle, leads: pl.DataFrame, events: pl.LazyFrame, *, as_of: datetime,
                    catalog: dict[str, Any]) -> list[dict[str, Any]]:
    """`note_frame_for_leads` as dicts (each note's JSON read back)."""
    return [json.loads(note) for note in
            note_frame_for_leads(bundle, leads, events, as_of=as_of, catalog=catalog)["note"]]


@exit_codes
def main(argv: list[str] | None = None) -> None:
    """The `score` stage: the sample batch of new leads, scored as sales ops would with `leadlift score`."""
    args = stage_args(argv, __doc__, "leads", "events", "model", "out", "quarantine")
    params = load_params("score", args.params)
    report = score_file(args.leads, args.out, events=args.events, quarantine=args.quarantine, model=args.model,
                        allow_missing=bool(params.get("allow_missing", False)),
                        max_missing_share=float(params.get("max_missing_share", DEFAULT_MAX_MISSING_SHARE)),
                        max_quarantine_share=float(params.get("max_quarantine_share", DEFAULT_MAX_QUARANTINE_SHARE)))
    print(f"score: {summary_line(report)} -> {args.out}")


if __name__ == "__main__":
    main()
