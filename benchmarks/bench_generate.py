"""Benchmark the `generate` stage against its floor: rewriting the same Parquet files without generating them.

    python benchmarks/bench_generate.py             # 1M leads / ~50M events
    python benchmarks/bench_generate.py --small     # 50k leads / ~2.4M events
    python benchmarks/bench_generate.py --leads 200000

Each measurement runs in its own child process, so its peak RSS (from wait4) is its own: first `pipelines.generate.run`
into a temporary folder, then the floor, which reads those files back and writes them again with the same writer
settings, streaming row group by row group (what writing the output costs when the data already exists).
Files are deleted afterwards unless --keep is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run_generate(folder: Path, leads: int) -> dict[str, Any]:
    """The real thing: the stage's own run(), as the CLI calls it, without a progress bar."""
    from pipelines.generate import run

    t = time.perf_counter()
    summary = run(folder, leads=leads, seed=42, start="2025-01-01", months=15, observation_days=14, horizon_days=60,
                  progress=False)  # fmt: skip
    return {"seconds": time.perf_counter() - t, "leads": summary["leads"], "events": summary["events"],
            "conversion_rate": summary["conversion_rate"]}  # fmt: skip


def run_floor(folder: Path) -> dict[str, Any]:
    """The floor: copy every table through Arrow into a new Parquet file with the same settings."""
    import pyarrow.parquet as pq

    from pipelines.generate import PARQUET_OPTIONS, TABLES

    t = time.perf_counter()
    rows = 0
    for table in TABLES:
        src = pq.ParquetFile(folder / f"{table}.parquet")
        with pq.ParquetWriter(folder / f"{table}.floor.parquet", src.schema_arrow, **PARQUET_OPTIONS) as writer:
            for i in range(src.num_row_groups):
                group = src.read_row_group(i)
                writer.write_table(group)
                rows += group.num_rows
    return {"seconds": time.perf_counter() - t, "rows": rows}


def measure(task: str, folder: Path, leads: int) -> dict[str, Any]:
    """Run one task in a child process; return its own wall time and peak RSS."""
    cmd = [sys.executable, __file__, "--child", task, "--out", str(folder), "--leads", str(leads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{task} failed with exit code {code}")
    result = json.loads(text.strip().splitlines()[-1])
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--small", action="store_true", help="50k leads")
    ap.add_argument("--out", type=Path, help="folder to write into (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--child", choices=["generate", "floor"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    leads = 50_000 if args.small else args.leads

    if args.child:
        result = run_generate(args.out, leads) if args.child == "generate" else run_floor(args.out)
        print(json.dumps(result))
        return

    folder = args.out or Path(tempfile.mkdtemp(prefix="leadlift_bench_generate_"))
    try:
        gen = measure("generate", folder, leads)
        size_mb = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 1e6
        floor = measure("floor", folder, leads)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    secs = gen["seconds"]
    print(f"data: {gen['leads']:,} leads, {gen['events']:,} events ({gen['events'] / max(1, gen['leads']):.1f}/lead), "
          f"conversion rate {gen['conversion_rate']:.3f}, {size_mb:,.0f} MB of Parquet, {os.cpu_count()} cores")
    print(f"generate (pipelines.generate.run):         {secs:8.2f} s  peak RSS {gen['peak_rss_gb']:.2f} GB  "
          f"{gen['leads'] / secs:,.0f} leads/s  {gen['events'] / secs:,.0f} events/s")
    print(f"floor (rewrite the same Parquet files):    {floor['seconds']:8.2f} s  "
          f"peak RSS {floor['peak_rss_gb']:.2f} GB  {floor['rows']:,} rows")
    print(f"ratio generate / floor: {secs / floor['seconds']:.2f}x")


if __name__ == "__main__":
    main()
