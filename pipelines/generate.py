"""`generate` stage: write the synthetic CRM export (features/synthetic.py) as canonical Parquet files.

    python -m pipelines.generate --out data/raw --new-out data/new

reads params `generate` + `base` and writes DIR/{leads,events,outcomes,truth}.parquet + DIR/manifest.json, and a
batch of new leads to score (NEW/{leads,events}.parquet + NEW/manifest.json, as_of = the snapshot). Chunks stream
into one ParquetWriter per table, each writing a temporary file that replaces the target only when all succeeded,
so memory stays flat at 1M leads and a failed run leaves the old files in place. Same params, same bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from features.schema import CONVERTED, EVENT_TYPE
from features.synthetic import generate_chunks, generate_new_batch, snapshot_at
from pipelines.io import BadInput, atomic_path, exit_codes, load_params, stage_args, write_json, write_text

TABLES: tuple[str, ...] = ("leads", "events", "outcomes", "truth")
#: Leads per chunk: about 5M events, a few hundred MB at the peak.
CHUNK_SIZE = 100_000
ROW_GROUP_SIZE = 1_000_000
#: Fixed writer settings: the same frames always give the same bytes.
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
}
#: Show a progress bar from this many leads on (or when asked).
PROGRESS_FROM_LEADS = 200_000


def run(
    out_dir: str | Path,
    *,
    leads: int,
    seed: int,
    start: str | date | datetime,
    months: int,
    observation_days: int,
    horizon_days: int,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write the export to `out_dir` and return its summary (also written as manifest.json)."""
    out = Path(out_dir)
    snapshot = snapshot_at(start, months)
    chunks = generate_chunks(
        leads,
        seed=seed,
        start=start,
        months=months,
        observation_days=observation_days,
        horizon_days=horizon_days,
        chunk_size=CHUNK_SIZE,
    )
    kinds: Counter[str] = Counter()
    converted = 0
    with _writers(out) as writers, _progress(leads, progress) as advance:
        for chunk in chunks:
            for table in TABLES:
                writers[table](getattr(chunk, table))
            kinds.update(dict(chunk.events.get_column(EVENT_TYPE).value_counts().iter_rows()))
            converted += int(chunk.outcomes.get_column(CONVERTED).sum())
            advance(chunk.leads.height)
    n_events = sum(kinds.values())
    summary: dict[str, Any] = {
        "generator": "features.synthetic",
        "seed": seed,
        "start": str(start),
        "months": months,
        "snapshot_at": snapshot.isoformat(),
        "observation_days": observation_days,
        "horizon_days": horizon_days,
        "leads": leads,
        "events": n_events,
        "events_per_lead": round(n_events / leads, 3) if leads else 0.0,
        "event_types": dict(sorted(kinds.items())),
        "converted": converted,
        "conversion_rate": round(converted / leads, 6) if leads else 0.0,
        "files": [f"{t}.parquet" for t in TABLES],
    }
    write_json(out / "manifest.json", summary)
    return summary


def run_new_batch(
    out_dir: str | Path, *, leads: int, seed: int, as_of: datetime, observation_days: int, horizon_days: int
) -> dict[str, Any]:
    """Write a batch of new leads (created in the 14 days before `as_of`, events up to it) for the `score` stage."""
    out = Path(out_dir)
    batch = generate_new_batch(
        leads, seed=seed, as_of=as_of, observation_days=observation_days, horizon_days=horizon_days
    )
    for table, frame in (("leads", batch.leads), ("events", batch.events)):
        with atomic_path(out / f"{table}.parquet") as tmp:
            pq.write_table(frame.to_arrow(), tmp, row_group_size=ROW_GROUP_SIZE, **PARQUET_OPTIONS)
    summary = {"seed": seed, "as_of": batch.as_of.isoformat(), "leads": batch.leads.height,
               "events": batch.events.height, "files": ["leads.parquet", "events.parquet"]}  # fmt: skip
    write_json(out / "manifest.json", summary)
    return summary


@contextmanager
def _writers(out: Path) -> Iterator[dict[str, Any]]:
    """One append function per table; every file is renamed into place only if the whole run succeeds."""
    with ExitStack() as stack:
        paths = {t: stack.enter_context(atomic_path(out / f"{t}.parquet")) for t in TABLES}
        open_writers: dict[str, pq.ParquetWriter] = {}

        def appender(table: str) -> Any:
            def append(frame: pl.DataFrame) -> None:
                arrow = _arrow(frame)
                if table not in open_writers:
                    open_writers[table] = pq.ParquetWriter(paths[table], arrow.schema, **PARQUET_OPTIONS)
                open_writers[table].write_table(arrow.cast(open_writers[table].schema), row_group_size=ROW_GROUP_SIZE)

            return append

        try:
            yield {t: appender(t) for t in TABLES}
        finally:
            for writer in open_writers.values():
                writer.close()


def _arrow(frame: pl.DataFrame) -> pa.Table:
    """Polars frame as Arrow with plain (not view) strings, so the file schema never depends on a chunk."""
    table = frame.to_arrow()
    fields = [pa.field(f.name, pa.string()) if pa.types.is_string_view(f.type) or pa.types.is_large_string(f.type)
              else f for f in table.schema]  # fmt: skip
    return table.cast(pa.schema(fields))


@contextmanager
def _progress(leads: int, show: bool | None) -> Iterator[Any]:
    """Yield `advance(n)`; draws a rich progress bar on stderr for big runs."""
    if not (show if show is not None else leads >= PROGRESS_FROM_LEADS):
        yield lambda n: None
        return
    columns = (TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("leads", total=leads)
        yield lambda n: bar.advance(task, n)


def is_synthetic(source: Path) -> bool:
    """Is `source` the mapping of leadlift's own synthetic export (the only one `generate` can write)?"""
    import yaml

    return (yaml.safe_load(source.read_text()) or {}).get("name") == "synthetic"


def source_batch(source: Path, out_dir: Path, *, leads: int, ingest_params: dict[str, Any]) -> dict[str, Any]:
    """For a user's own export: its newest `leads` leads, mapped to the canonical tables, as the batch the `score`
    stage scores (there is no synthetic batch for a real export, and a synthetic one would not fit its model)."""
    import tempfile

    from features.schema import CREATED_AT, LEAD_ID
    from pipelines import ingest

    with tempfile.TemporaryDirectory() as tmp:
        ingest.run(source, Path(tmp), params=ingest_params, echo=lambda _line: None)
        batch = pl.read_parquet(Path(tmp) / "leads.parquet").sort(CREATED_AT, LEAD_ID).tail(leads)
        events = pl.read_parquet(Path(tmp) / "events.parquet").filter(pl.col(LEAD_ID).is_in(batch[LEAD_ID].implode()))
    for table, frame in (("leads", batch), ("events", events)):
        with atomic_path(out_dir / f"{table}.parquet") as tmp_path:
            frame.write_parquet(tmp_path)
    newest = batch[CREATED_AT].max()
    summary = {"source": str(source), "as_of": newest.isoformat() if isinstance(newest, datetime) else None,
               "leads": batch.height, "events": events.height, "files": ["leads.parquet", "events.parquet"]}
    write_json(out_dir / "manifest.json", summary)
    return summary


@exit_codes
def main(argv: list[str] | None = None) -> None:
    """The DVC stage: params `generate` + `base` -> the export and the batch of new leads.

    With `base.source` set to a user's own export, there is nothing to generate: data/raw only says so, and the
    batch of new leads is the export's newest `generate.new_leads` leads.
    """
    args = stage_args(argv, __doc__, "out", "new-out")
    params = load_params("generate", args.params)
    base = params["base"]
    source = Path(base["source"])
    if not source.is_file():
        raise BadInput(source, "base.source names no source mapping (expected a YAML file such as "
                               "sources/synthetic.yaml)")
    if not is_synthetic(source):
        write_text(args.out / "README.md", f"No synthetic export: base.source is {source}, a user's own export.\n")
        new = source_batch(source, args.new_out, leads=int(params["new_leads"]),
                           ingest_params=load_params("ingest", args.params))
        print(f"generate: nothing to generate for {source}; its newest {new['leads']:,} leads -> {args.new_out}")
        return
    common: dict[str, Any] = {"seed": int(base["seed"]), "observation_days": int(base["observation_days"]),
              "horizon_days": int(base["horizon_days"])}  # fmt: skip
    summary = run(args.out, leads=int(params["leads"]), start=str(params["start"]), months=int(params["months"]),
                  **common)  # fmt: skip
    new = run_new_batch(args.new_out, leads=int(params["new_leads"]),
                        as_of=snapshot_at(str(params["start"]), int(params["months"])), **common)  # fmt: skip
    print(
        f"generate: {summary['leads']:,} leads, {summary['events']:,} events, "
        f"conversion rate {summary['conversion_rate']:.3f} (snapshot {summary['snapshot_at']}) -> {args.out}; "
        f"{new['leads']:,} new leads as of {new['as_of']} -> {args.new_out}"
    )


if __name__ == "__main__":
    main()
