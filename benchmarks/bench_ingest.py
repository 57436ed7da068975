"""Benchmark the `ingest` stage on the synthetic fast path (Parquet in, already canonical) against a copy floor.

    python benchmarks/bench_ingest.py            # 1M leads, ~45-50M events (data cached under --data)
    python benchmarks/bench_ingest.py --small    # 50k leads, ~2.5M events
    python benchmarks/bench_ingest.py --raw DIR  # canonical DIR/{leads,events,outcomes}.parquet

Data comes from the project's own generator (features.synthetic.generate_chunks) when it is importable, streamed to
Parquet chunk by chunk; `--generator random` writes simple random canonical tables of exactly the requested size.

Each measurement runs in its own child process, so its peak RSS and CPU time (from wait4) are its own; CPU time
is printed beside wall time because wall time on a shared machine swings with the load. The peer, measured in the
same benchmark run on the same files: the *copy floor*, which scans the three tables and writes them straight back
to Parquet with no checks. Any ingest that rewrites the tables costs at least that; the ratio says what the
mapping and the contract add on top.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from features.schema import EVENT_TYPES, TS  # noqa: E402

TABLES = ("leads", "events", "outcomes")


# ---------------------------------------------------------------- data


def make_synthetic(folder: Path, *, leads: int, seed: int = 7) -> None:
    """The project's generator, streamed: one Parquet writer per table, one chunk in memory at a time."""
    from features.synthetic import generate_chunks

    folder.mkdir(parents=True, exist_ok=True)
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for chunk in generate_chunks(leads, seed=seed, start="2025-01-01", months=15, observation_days=14,
                                     horizon_days=60, chunk_size=100_000):
            for table in (*TABLES, "truth"):
                arrow = getattr(chunk, table).to_arrow()
                if table not in writers:
                    writers[table] = pq.ParquetWriter(folder / f"{table}.parquet", arrow.schema, compression="zstd")
                writers[table].write_table(arrow)
    finally:
        for w in writers.values():
            w.close()


def make_random(folder: Path, *, leads: int, events: int, seed: int = 7) -> None:
    """Simple random canonical tables of exactly the requested size (when the generator is not available)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    start_us = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000
    span_us = 450 * 86_400 * 1_000_000
    created = np.sort(rng.integers(0, span_us, size=leads)) + start_us
    ids = pl.int_range(1, leads + 1, eager=True).cast(pl.String).str.zfill(7).str.pad_start(8, "L")
    pick = lambda values: pl.Series(values).gather(rng.integers(0, len(values), size=leads))  # noqa: E731
    pl.DataFrame({
        "lead_id": ids, "created_at": pl.Series(created).cast(TS),
        "industry": pick(["software", "finance", "retail", "health"]), "region": pick(["na", "emea", "apac"]),
        "job_title": pick(["CEO", "VP Sales", "Engineer", "Student"]), "legacy_score": rng.integers(0, 101, leads),
        "name": pick(["Ann", "Bo"]), "email": pick(["a@x.example", "b@y.example"]),
    }).write_parquet(folder / "leads.parquet")  # fmt: skip
    converted = rng.random(leads) < 0.15
    conv_at = np.where(converted, created + rng.integers(0, 90 * 86_400 * 1_000_000, leads), 0)
    pl.DataFrame({"lead_id": ids, "converted": converted,
                  "converted_at": pl.Series(conv_at).cast(TS)}).with_columns(
        pl.when(pl.col("converted")).then(pl.col("converted_at")).alias("converted_at")
    ).write_parquet(folder / "outcomes.parquet")
    lead = rng.integers(0, leads, size=events, dtype=np.int32)
    at = created[lead] + rng.integers(0, 60 * 86_400 * 1_000_000, size=events)
    kinds = pl.Series([*EVENT_TYPES, "chat_started"])
    id_expr = pl.col("_lead").add(1).cast(pl.String).str.zfill(7).str.pad_start(8, "L")
    kind_expr = pl.col("_kind").replace_strict(list(range(len(kinds))), kinds.to_list(), return_dtype=pl.String)
    kind = rng.integers(0, len(kinds), size=events, dtype=np.int16)
    pl.LazyFrame({"_lead": lead, "_at": at, "_kind": kind}).select(
        id_expr.alias("lead_id"), pl.col("_at").cast(TS).alias("occurred_at"), kind_expr.alias("event_type"),
    ).sink_parquet(folder / "events.parquet")


# ---------------------------------------------------------------- measured tasks (each in a child process)


def mapping_for(folder: Path) -> dict[str, Any]:
    """sources/synthetic.yaml with its paths pointed at `folder`."""
    mapping = yaml.safe_load((ROOT / "sources" / "synthetic.yaml").read_text())
    for table in TABLES:
        mapping[table]["path"] = str(folder / f"{table}.parquet")
    mapping.get("truth", {}).update(path=str(folder / "truth.parquet"))
    cols = pl.scan_parquet(folder / "leads.parquet").collect_schema().names()
    if "legacy_score" not in cols:
        mapping["leads"]["legacy_score"] = None
    mapping["leads"]["categorical"] = {k: v for k, v in mapping["leads"]["categorical"].items() if k in cols}
    mapping["leads"]["pii"] = [c for c in mapping["leads"]["pii"] if c in cols]
    mapping["leads"]["notes_allowed"] = [c for c in mapping["leads"]["notes_allowed"] if c in cols]
    return mapping


def run_floor(folder: Path, out: Path) -> dict[str, Any]:
    """The floor: scan each table and write it straight back to Parquet (no mapping, no checks)."""
    t = time.perf_counter()
    for table in TABLES:
        pl.scan_parquet(folder / f"{table}.parquet").sink_parquet(out / f"{table}.parquet")
    return {"seconds": time.perf_counter() - t}


def run_ingest(folder: Path, out: Path) -> dict[str, Any]:
    """The real stage: mapping + contract + quarantine + outputs, as `python -m pipelines.ingest` runs it."""
    from pipelines.ingest import run

    source = out / "mapping.yaml"
    source.write_text(yaml.safe_dump(mapping_for(folder)))
    t = time.perf_counter()
    report = run(source, out / "interim", report=out / "ingest.json", params={"max_quarantine_share": 0.5},
                 echo=lambda line: print(line, file=sys.stderr))
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "rows": {t: report[t]["rows_in"] for t in TABLES},
            "quarantined": {t: report[t]["quarantined"] for t in TABLES}}


def measure(task: str, folder: Path) -> dict[str, Any]:
    """Run one task in a child process; return its own wall time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        wall = time.perf_counter()
        proc = subprocess.Popen([sys.executable, __file__, "--child", task, "--data", str(folder), "--out", tmp],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert proc.stdout is not None
        text = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - wall
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{task} failed with exit code {os.waitstatus_to_exitcode(status)}")
    result = json.loads(text.strip().splitlines()[-1])
    result["process_seconds"] = wall
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime  # all threads; steadier than wall on a shared machine
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="50k leads (~2.5M events)")
    ap.add_argument("--raw", type=Path, help="folder with canonical leads/events/outcomes.parquet")
    ap.add_argument("--data", type=Path, help="where generated data is cached (default /tmp/leadlift_bench_ingest_*)")
    ap.add_argument("--generator", choices=["synthetic", "random"], default="synthetic")
    ap.add_argument("--repeat", type=int, default=1, help="measure each task this many times, keep the fastest")
    ap.add_argument("--child", choices=["floor", "ingest"], help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        result = run_floor(args.data, args.out) if args.child == "floor" else run_ingest(args.data, args.out)
        print(json.dumps(result))
        return

    leads, events = (50_000, 2_500_000) if args.small else (1_000_000, 50_000_000)
    folder = args.raw or args.data or Path(f"/tmp/leadlift_bench_ingest_{args.generator}_{leads}")
    if args.raw is None and not (folder / "outcomes.parquet").exists():
        t = time.perf_counter()
        try:
            if args.generator != "synthetic":
                raise ImportError("random generator requested")
            make_synthetic(folder, leads=leads)
        except ImportError as e:
            print(f"features.synthetic not used ({e}); writing random canonical data")
            make_random(folder, leads=leads, events=events)
        print(f"generated data in {time.perf_counter() - t:.1f} s -> {folder}")
    n = {t: pl.scan_parquet(folder / f"{t}.parquet").select(pl.len()).collect().item() for t in TABLES}
    size_mb = sum((folder / f"{t}.parquet").stat().st_size for t in TABLES) / 1e6
    print(f"data: {n['leads']:,} leads, {n['events']:,} events, {n['outcomes']:,} outcomes "
          f"({size_mb:,.0f} MB Parquet); polars {pl.__version__}, {os.cpu_count()} cores")

    floor = min((measure("floor", folder) for _ in range(args.repeat)), key=lambda r: r["seconds"])
    ingest = min((measure("ingest", folder) for _ in range(args.repeat)), key=lambda r: r["seconds"])
    rows = sum(n.values())
    tasks = (("copy floor (scan + write back, no checks)", floor), ("ingest (mapping + contract + outputs)", ingest))
    for label, r in tasks:
        print(f"{label:42s} {r['seconds']:7.2f} s wall  {r['cpu_seconds']:7.2f} s CPU  "
              f"peak RSS {r['peak_rss_gb']:.2f} GB  (child process incl. imports {r['process_seconds']:.2f} s)")
    print(f"rows/s: {rows / ingest['seconds']:,.0f} (all tables), events/s: {n['events'] / ingest['seconds']:,.0f}   "
          f"ratio to floor: {ingest['seconds'] / floor['seconds']:.2f}x wall, "
          f"{ingest['cpu_seconds'] / floor['cpu_seconds']:.2f}x CPU   quarantined: {ingest['quarantined']}")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
