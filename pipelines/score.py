"""Batch scoring of new leads with a trained bundle: the `leadlift score` command and the `score` stage.

Rows in = scored + quarantined, always. The same input gives byte-identical output. Features, explanations and notes
are computed chunk by chunk and written to a temporary file that is renamed when complete; the input files are still
read and checked whole, so memory grows with the batch (0.85 GB at 100k leads, 1.5 GB at 1M: benchmarks/bench_score.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from features.build import build_features
from features.schema import CREATED_AT, EVENT_TYPE, LEAD_ID, OCCURRED_AT, utc
from features.spec import to_matrix
from models.bundle import SQL, Bundle
from models.handoff import build_notes, note_markdown, note_row
from models.treeshap import TreeShap
from pipelines.bundle import load_bundle
from pipelines.explain import load_catalog
from pipelines.io import BadInput, atomic_path, exit_codes, stage_args, write_frame
from pipelines.rows import Batch, check_batch, read_batch_file

OUTPUT_SCHEMA: dict[str, Any] = {
    LEAD_ID: pl.String, "probability": pl.Float64, "score": pl.Int64, "percentile": pl.Float64, "decision": pl.String,
    "headline": pl.String, "reason_1": pl.String, "reason_1_points": pl.Float64, "reason_2": pl.String,
    "reason_2_points": pl.Float64, "reason_3": pl.String, "reason_3_points": pl.Float64, "reason_against": pl.String,
    "who": pl.String, "urgency": pl.String, "what_happened": pl.String, "note": pl.String,
}


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
        extra = [c for c in leads.columns if c not in expected and c not in (LEAD_ID, CREATED_AT)]
        raise BadInput(file, f"does not match the bundle's feature spec: missing {missing}; "
                             f"columns the bundle does not know: {extra}; expected {expected}")
    return missing


def chunks(frame: pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    for start in range(0, frame.height, size):
        yield frame.slice(start, size)


def score_chunk(bundle: Bundle, explainer: TreeShap, leads: pl.DataFrame, events: pl.LazyFrame, *, as_of: datetime,
                catalog: dict[str, Any]) -> pl.DataFrame:
    """Features at as_of, calibrated probability, score, percentile, decision, and notes for the SQLs."""
    source = source_of(bundle)
    feats = build_features(leads.lazy(), events, source, observation_days=int(bundle.spec["observation_days"]),
                           windows=bundle.spec["windows"], as_of=as_of).collect()
    feats = leads.select(LEAD_ID).join(feats, on=LEAD_ID, how="left", maintain_order="left")
    X = to_matrix(feats, bundle.spec)
    p = bundle.probability(X)
    decision = bundle.decide(p)
    sql = np.flatnonzero(decision == SQL)
    rows = feats[sql].to_dicts()
    firmo = [c for c in [*source.get("categorical", {}), *source.get("keep", [])] if c in leads.columns]
    allowed = [c for c in source.get("notes_allowed", []) if c in leads.columns]
    picked = leads[sql]
    notes = build_notes(bundle, rows, X[sql], catalog, who=picked.select(firmo).to_dicts(),
                        contact=picked.select(allowed).to_dicts(), explainer=explainer)
    by_id = {n["lead_id"]: n for n in notes}
    out = []
    for lead_id, prob, s, pct, d in zip(feats[LEAD_ID].to_list(), p, bundle.score(p), bundle.percentile(p), decision,
                                       strict=True):
        row: dict[str, Any] = {LEAD_ID: lead_id, "probability": float(prob), "score": int(s),
                               "percentile": float(pct), "decision": str(d)}
        note = by_id.get(lead_id)
        if note is not None:
            flat = note_row(note)
            row.update({k: flat[k] for k in OUTPUT_SCHEMA if k in flat and k not in row})
            row["note"] = json.dumps(note, sort_keys=True)
        out.append(row)
    return pl.DataFrame(out, schema=OUTPUT_SCHEMA)


class _Writer:
    """Append chunks to a Parquet or CSV file at a temporary path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.suffix = path.suffix.lower()
        if self.suffix not in (".parquet", ".csv"):
            raise BadInput(path, f"unsupported output extension {self.suffix!r}; expected .parquet or .csv")
        self._pq: pq.ParquetWriter | None = None
        self._first = True

    def write(self, df: pl.DataFrame, tmp: Path) -> None:
        if self.suffix == ".parquet":
            table = df.to_arrow()
            if self._pq is None:
                self._pq = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            self._pq.write_table(table)
        else:
            with tmp.open("a" if not self._first else "w") as fh:
                df.write_csv(fh, include_header=self._first)
        self._first = False

    def close(self, tmp: Path) -> None:
        if self._pq is not None:
            self._pq.close()
        elif self.suffix == ".parquet":
            pq.write_table(pa.Table.from_pylist([], schema=pl.DataFrame(schema=OUTPUT_SCHEMA).to_arrow().schema), tmp)
        elif self._first:
            pl.DataFrame(schema=OUTPUT_SCHEMA).write_csv(tmp)


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
    ev = batch.events.lazy() if batch.events is not None else pl.LazyFrame(
        schema={LEAD_ID: pl.String, OCCURRED_AT: pl.Datetime("us", "UTC"), EVENT_TYPE: pl.String})
    return Part(batch, missing_optional, at or decision_time(as_of, batch.newest, now), ev)


def score_part(bundle: Bundle, part: Part, *, explainer: TreeShap, catalog: dict[str, Any],
               chunk_size: int) -> Iterator[pl.DataFrame]:
    """Scored leads of a checked part, chunk by chunk, in input order."""
    for leads in chunks(part.batch.leads, chunk_size):
        events = part.events.filter(pl.col(LEAD_ID).is_in(leads[LEAD_ID].implode()))
        yield score_chunk(bundle, explainer, leads, events, as_of=part.as_of, catalog=catalog)


def load_batch(leads_path: Path, events: Path | None, source: dict[str, Any], as_of: datetime | None
               ) -> tuple[pl.DataFrame, list[str], Batch, datetime, pl.LazyFrame]:
    """Read and check a batch: (raw leads, optional columns filled as missing, checked batch, as-of time, events)."""
    raw, part = read_part(leads_path, events, source, as_of)
    return raw, part.missing_optional, part.batch, part.as_of, part.events


def read_part(leads_path: Path, events: Path | None, source: dict[str, Any], as_of: datetime | None
              ) -> tuple[pl.DataFrame, Part]:
    """Read a batch's files and check them whole: (raw leads, checked part)."""
    raw = read_batch_file(leads_path)
    use_events = events is not None and source.get("has_events", True)
    part = check_part(raw, read_batch_file(events) if events is not None and use_events else None, source,
                      leads_file=leads_path, events_file=events if use_events else None, as_of=as_of)
    return raw, part


def load_mapped_batch(mapping: Path, leads_path: Path, events: Path | None, source: dict[str, Any],
                      as_of: datetime | None, event_sources: dict[str, Path] | None = None
                      ) -> tuple[pl.DataFrame, list[str], Batch, datetime, pl.LazyFrame]:
    """`load_batch` for raw export files: the mapping's leads and events sections first (`ingest.map_batch`: its
    reasons for bad rows, no target needed), then the same checks as a canonical batch. Row numbers and rows in
    stay those of the raw leads file."""
    from pipelines.ingest import map_batch

    mapped = map_batch(mapping, leads=leads_path, events=events, event_sources=event_sources)
    missing_optional = check_compatible(mapped.leads, source, leads_path)
    raw = mapped.leads.with_columns([pl.lit(None, dtype=pl.String).alias(c) for c in missing_optional])
    use_events = mapped.events is not None and source.get("has_events", True)
    batch = check_batch(raw, mapped.events if use_events else None, source=source, leads_file=leads_path,
                        events_file=events or (Path(str(mapping)) if use_events else None),
                        as_of=utc(as_of) if as_of else None)
    bad = pl.concat([mapped.quarantine, batch.quarantine.cast(mapped.quarantine.schema)])  # type: ignore[arg-type]
    batch = Batch(batch.leads, batch.events, bad, batch.newest, rows_in=int(mapped.report["leads"]["rows_in"]))
    at = utc(as_of) if as_of else (batch.newest or datetime.now(UTC))
    ev = batch.events.lazy() if batch.events is not None else pl.LazyFrame(
        schema={LEAD_ID: pl.String, OCCURRED_AT: pl.Datetime("us", "UTC"), EVENT_TYPE: pl.String})
    return raw, missing_optional, batch, at, ev


def score_file(leads_path: Path, out: Path, *, events: Path | None = None, as_of: datetime | None = None,
               quarantine: Path | None = None, model: str | Path = "data/artifacts", chunk_size: int = 50000,
               console: Console | None = None, mapping: Path | None = None,
               event_sources: dict[str, Path] | None = None) -> dict[str, Any]:
    """Score a batch file; write scores and a quarantine file; return the reconciliation. With `mapping`, the files
    are a raw export that the source mapping brings into the canonical form first."""
    console = console or Console(stderr=True)
    bundle = load_bundle(model)
    source = source_of(bundle)
    quarantine = quarantine or out.with_name(f"{out.stem}.quarantine.csv")
    if mapping is not None:
        raw, missing_optional, mapped, at, ev = load_mapped_batch(mapping, leads_path, events, source, as_of,
                                                                  event_sources)
        part = Part(mapped, missing_optional, at, ev)
    else:
        raw, part = read_part(leads_path, events, source, as_of)
    batch, missing_optional, as_of = part.batch, part.missing_optional, part.as_of
    leads = batch.leads
    explainer = TreeShap.from_booster(bundle.booster)
    catalog = load_catalog()
    writer = _Writer(out)
    n_sql = 0
    with atomic_path(out) as tmp, Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
                                           TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("score", total=leads.height)
        for scored in score_part(bundle, part, explainer=explainer, catalog=catalog, chunk_size=chunk_size):
            n_sql += int((scored["decision"] == SQL).sum())
            writer.write(scored, tmp)
            progress.advance(task, scored.height)
        writer.close(tmp)
    rejected = batch.quarantine.sort("table", "row")
    write_frame(rejected, quarantine)
    n_quarantined = int((rejected["table"] == "leads").sum())
    rows_in = batch.rows_in if batch.rows_in is not None else raw.height
    if rows_in != leads.height + n_quarantined:
        raise RuntimeError(
            f"reconciliation failed: {rows_in} rows in, {leads.height} scored, {n_quarantined} quarantined"
        )
    report = {
        "rows_in": rows_in,
        "scored": leads.height,
        "quarantined": n_quarantined,
        "sql": n_sql,
        "events_quarantined": int(rejected["table"].str.starts_with("events").sum()),
        "as_of": as_of.isoformat(),
        "missing_optional_columns": missing_optional,
        "quarantine_file": str(quarantine),
    }
    return report


def explain_file(leads_path: Path, *, events: Path | None, as_of: datetime | None, lead_ids: list[str] | None,
                 model: str | Path) -> Iterator[str]:
    """Markdown handoff notes for the given leads (all by default), whatever their decision."""
    bundle = load_bundle(model)
    source = source_of(bundle)
    _, _, batch, as_of, ev = load_batch(leads_path, events, source, as_of)
    leads = batch.leads
    if lead_ids:
        leads = leads.filter(pl.col(LEAD_ID).is_in(lead_ids))
    for note in notes_for_leads(bundle, leads, ev, as_of=as_of, catalog=load_catalog()):
        yield note_markdown(note)


def notes_for_leads(bundle: Bundle, leads: pl.DataFrame, events: pl.LazyFrame, *, as_of: datetime,
                    catalog: dict[str, Any]) -> list[dict[str, Any]]:
    """Handoff notes for every given lead (SQL or not), in input order, with features built at as_of."""
    source = source_of(bundle)
    feats = build_features(leads.lazy(), events, source, observation_days=int(bundle.spec["observation_days"]),
                           windows=bundle.spec["windows"], as_of=as_of).collect()
    feats = leads.select(LEAD_ID).join(feats, on=LEAD_ID, how="left", maintain_order="left")
    firmo = [c for c in [*source.get("categorical", {}), *source.get("keep", [])] if c in leads.columns]
    return build_notes(bundle, feats.to_dicts(), to_matrix(feats, bundle.spec), catalog,
                       who=leads.select(firmo).to_dicts())


@exit_codes
def main(argv: list[str] | None = None) -> None:
    """The `score` stage: the sample batch of new leads, scored as sales ops would with `leadlift score`."""
    args = stage_args(argv, __doc__, "leads", "events", "model", "out", "quarantine")
    report = score_file(args.leads, args.out, events=args.events, quarantine=args.quarantine, model=args.model)
    print(f"score: rows in {report['rows_in']} = scored {report['scored']} + quarantined {report['quarantined']}; "
          f"{report['sql']} SQL -> {args.out}")


if __name__ == "__main__":
    main()
