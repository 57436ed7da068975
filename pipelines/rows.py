"""Reading a batch of new leads for scoring, and the same row checks ingest applies (features.contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from features import contract as C
from features.mapping import event_vocabulary
from features.schema import CREATED_AT, LEAD_ID
from pipelines.io import BadInput

AFTER_AS_OF = "created after the as-of time"


def read_batch_file(path: Path) -> pl.DataFrame:
    """Parquet as stored; CSV with every column as text, so the contract (not the reader) decides what is bad."""
    if not path.is_file():
        raise BadInput(path, "file not found")
    if path.stat().st_size == 0:
        raise BadInput(path, "empty file: no header and no rows")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pl.read_parquet(path)
    if suffix == ".csv":
        frame = pl.read_csv(path, infer_schema=False)
        C.check_layout(frame.columns, file=str(path))
        return frame
    raise BadInput(path, f"unsupported extension {suffix!r}; expected .csv or .parquet")


@dataclass(frozen=True)
class Batch:
    leads: pl.DataFrame
    events: pl.DataFrame | None
    quarantine: pl.DataFrame
    newest: datetime | None
    #: The contract's facts per table (`features.contract.ContractResult.facts`).
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Rows of the raw leads file, when a mapping stood between the file and this batch.
    rows_in: int | None = None


def check_batch(leads: pl.DataFrame, events: pl.DataFrame | None, *, source: dict[str, Any], leads_file: Path,
                events_file: Path | None, as_of: datetime | None, now: datetime | None = None,
                file_checks: bool = True) -> Batch:
    """Clean leads and events plus the quarantine (table, row, lead_id, column, reason); leads created after an
    explicit as-of time are quarantined too, since no decision can be made before a lead exists.

    Rows are numbered by their position unless the frames carry `features.contract.ROW` (a part of a bigger file).
    `now` fixes the time after which a timestamp is in the future (default: the clock); `file_checks` as in
    `features.contract.validate`."""
    passthrough = [c for c in dict.fromkeys([*source.get("notes_allowed", []), *source.get("keep", [])])
                   if c in leads.columns]
    files = {"leads": str(leads_file), **({"events": str(events_file)} if events_file else {})}
    result = C.validate(leads, events, None, numeric=source.get("numeric") or {},
                        categorical=list(source.get("categorical") or {}), passthrough=passthrough, files=files,
                        event_types=event_vocabulary(source), now=now, file_checks=file_checks)
    clean = result.leads
    bad = result.quarantine
    if as_of is not None:
        late = clean.filter(pl.col(CREATED_AT) > as_of)
        if late.height:
            row = leads[C.ROW] if C.ROW in leads.columns else pl.int_range(1, leads.height + 1, eager=True)
            rows = pl.DataFrame({LEAD_ID: leads[LEAD_ID].cast(pl.String), "row": row}).unique(LEAD_ID, keep="first")
            extra = late.select(LEAD_ID).join(rows, on=LEAD_ID, how="left").select(
                pl.lit("leads").alias("table"), pl.col("row").cast(pl.Int64), pl.col(LEAD_ID),
                pl.lit(CREATED_AT).alias("column"), pl.lit(AFTER_AS_OF).alias("reason"))
            bad = pl.concat([bad, extra.cast(bad.schema)])  # type: ignore[arg-type]
            clean = clean.filter(pl.col(CREATED_AT) <= as_of)
    return Batch(clean, result.events if events is not None else None, bad, result.max_timestamp, facts=result.facts)
