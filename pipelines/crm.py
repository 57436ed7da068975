"""Write a CRM-shaped export (features.crm_export) to disk as the CRM would: `leadlift generate-export`.

Not a DVC stage: these exports exist to try source mappings on (sources/hubspot.yaml, sources/salesforce.yaml), in
tests and in benchmarks/bench_crm_exports.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from features.crm_export import crm_export
from pipelines.io import atomic_path, write_json


def write_crm_export(style: str, out_dir: str | Path, *, leads: int, seed: int, start: str = "2025-01-01",
                     months: int = 12, observation_days: int = 14, horizon_days: int = 60) -> dict[str, Any]:
    """Write a CRM-shaped export (features.crm_export) as the CRM would: CSV files, plus truth.parquet (only
    evaluation reads it). Salesforce-style files quote every field and write blanks as "" (Data Loader)."""
    export = crm_export(style, leads=leads, seed=seed, start=start, months=months, observation_days=observation_days,
                        horizon_days=horizon_days)
    out = Path(out_dir)
    for name, frame in export.tables.items():
        if export.quote_all:
            frame = frame.select(pl.all().cast(pl.String).fill_null(""))
        with atomic_path(out / name) as tmp:
            frame.write_csv(tmp, quote_style="always" if export.quote_all else "necessary")
    with atomic_path(out / "truth.parquet") as tmp:
        export.truth.write_parquet(tmp)
    summary = {"style": style, "seed": seed, "leads": leads, "files": sorted([*export.tables, "truth.parquet"]),
               "rows": {name: frame.height for name, frame in export.tables.items()}}
    write_json(out / "manifest.json", summary)
    return summary
