"""Benchmark `build_features` against the floor: one polars pass that reads the events and counts them per lead.

    python benchmarks/bench_features.py            # 1M leads / 50M events (data cached under --data)
    python benchmarks/bench_features.py --small    # 50k leads / 2.5M events
    python benchmarks/bench_features.py --raw DIR  # canonical DIR/leads.parquet + DIR/events.parquet

Each measurement runs in its own child process, so its peak RSS (from wait4) is its own and nothing else's; the
floor and the feature build are measured in the same benchmark run, on the same files, one after the other.
Targets: peak RSS < 6 GB and wall time <= 4x the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from features.schema import OTHER_EVENT, TS  # noqa: E402

#: Share of each event kind in the generated stream (a marketing-automation export's rough mix).
KIND_MIX: dict[str, float] = {
    "email_open": 0.30,
    "page_blog": 0.12,
    "page_product": 0.12,
    "email_click": 0.08,
    "page_docs": 0.08,
    "page_pricing": 0.07,
    "page_careers": 0.04,
    "content_download": 0.04,
    "form_fill": 0.03,
    "webinar": 0.02,
    "email_reply": 0.02,
    "demo_request": 0.01,
    "trial_start": 0.01,
    "meeting": 0.01,
    OTHER_EVENT: 0.05,
}
SOURCE: dict[str, Any] = {
    "name": "bench",
    "categorical": {
        "industry": {"group": "company_fit", "description": "Industry"},
        "employee_band": {"group": "company_fit", "description": "Company size"},
        "region": {"group": "company_fit", "description": "Region"},
        "job_title": {"group": "seniority", "description": "Job title", "parse": "seniority"},
        "lead_source": {"group": "lead_source", "description": "Lead source"},
        "email_domain_kind": {"group": "email_domain", "description": "Email domain kind"},
        "buying_timeline": {"group": "buying_timeline", "description": "Buying timeline"},
    },
    "numeric": {},
    "pii": ["name", "email"],
    "has_events": True,
    "has_outcome_times": True,
}
TITLES = ["CEO", "VP Marketing", "Director of IT", "Engineering Manager", "Software Engineer", "Student",
          "Head of Growth", "Analyst", "Founder", "Team Lead"]


def make_data(folder: Path, *, leads: int, events: int, seed: int = 7) -> None:
    """Write canonical leads.parquet and events.parquet with a skewed per-lead activity and a realistic kind mix."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    span_us = 450 * 86_400 * 1_000_000
    created = np.sort(rng.integers(0, span_us, size=leads))
    pick = lambda values: pl.Series(values).gather(rng.integers(0, len(values), size=leads))  # noqa: E731
    lead_df = pl.DataFrame({
        "lead_id": pl.int_range(leads, eager=True).cast(pl.String).str.zfill(8).str.pad_start(9, "L"),
        "created_at": pl.Series(created).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        + (start - datetime(1970, 1, 1, tzinfo=timezone.utc)),
        "industry": pick(["software", "finance", "retail", "health", "manufacturing", "education"]),
        "employee_band": pick(["1-10", "11-50", "51-200", "201-500", "501-1000", "1000+"]),
        "region": pick(["na", "emea", "apac", "latam"]),
        "job_title": pick(TITLES),
        "lead_source": pick(["organic", "paid", "referral", "event", "outbound"]),
        "email_domain_kind": pick(["corporate", "free", "student", "competitor"]),
        "buying_timeline": pick(["<3m", "3-6m", ">6m", "unknown"]),
        "legacy_score": pl.Series(rng.integers(0, 101, size=leads)).cast(pl.Int64),
        "name": pick(["Ann", "Bo", "Cy"]),
        "email": pick(["a@x.com", "b@y.org"]),
    })
    lead_df.write_parquet(folder / "leads.parquet")
    # Activity per lead is heavy-tailed: most leads do little, a few do a lot.
    weight = rng.lognormal(0.0, 1.0, size=leads)
    lead_idx = rng.choice(leads, size=events, p=weight / weight.sum()).astype(np.int32)
    # Events start a little before creation (anonymous visits tied later) and decay over the next weeks.
    offset_days = np.where(rng.random(events) < 0.1, -rng.random(events) * 30, rng.exponential(20.0, size=events))
    occurred = created[lead_idx] + (offset_days * 86_400 * 1_000_000).astype(np.int64)
    del offset_days
    kinds = list(KIND_MIX)
    kind_idx = rng.choice(len(kinds), size=events, p=np.array(list(KIND_MIX.values()))).astype(np.uint8)
    kind_names = [k if k != OTHER_EVENT else "chat_started" for k in kinds]  # raw "other" kinds are unknown names
    ev = pl.DataFrame({"_lead": lead_idx, "_ts": occurred, "_kind": kind_idx})
    del lead_idx, occurred, kind_idx
    (
        ev.lazy()
        .sort("_ts")
        .select(
            pl.col("_lead").cast(pl.String).str.zfill(8).str.pad_start(9, "L").alias("lead_id"),
            (pl.col("_ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
             + (start - datetime(1970, 1, 1, tzinfo=timezone.utc))).cast(TS).alias("occurred_at"),
            pl.col("_kind")
            .replace_strict(list(range(len(kinds))), kind_names, return_dtype=pl.String)
            .alias("event_type"),
        )
        .sink_parquet(folder / "events.parquet")
    )


def _timed(work: Any) -> dict[str, Any]:
    """Wall and CPU seconds of `work()` inside this process (imports and startup excluded)."""
    r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out = work()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"seconds": time.perf_counter() - t, "cpu_seconds": cpu, "rows": out.height, "columns": out.width}


def run_floor(folder: Path) -> dict[str, Any]:
    """The floor: read the events once and count them per lead."""
    return _timed(lambda: pl.scan_parquet(folder / "events.parquet").group_by("lead_id").agg(pl.len()).collect())


def run_build(folder: Path) -> dict[str, Any]:
    """The real thing: every point-in-time feature for every lead, collected into memory."""
    from features.build import build_features

    source = _source(folder)
    return _timed(lambda: build_features(
        pl.scan_parquet(folder / "leads.parquet"),
        pl.scan_parquet(folder / "events.parquet"),
        source,
        observation_days=14,
        windows=[1, 7, 30, 90],
    ).collect())


def _source(folder: Path) -> dict[str, Any]:
    """source.json beside the data if there is one (ingest output), else the generated data's roles."""
    if (folder / "source.json").exists():
        return json.loads((folder / "source.json").read_text())
    cols = set(pl.scan_parquet(folder / "leads.parquet").collect_schema().names())
    return {**SOURCE, "categorical": {c: m for c, m in SOURCE["categorical"].items() if c in cols}}


def measure(task: str, folder: Path) -> dict[str, Any]:
    """Run one task in a child process; return its own wall and CPU time and its peak RSS."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", task, "--data", str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{task} failed with exit code {proc.returncode}")
    result = json.loads(text.strip().splitlines()[-1])
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="50k leads / 2.5M events")
    ap.add_argument("--raw", type=Path, help="folder with canonical leads.parquet and events.parquet (+ source.json)")
    ap.add_argument("--data", type=Path, help="where generated data is cached (default /tmp/leadlift_bench_*)")
    ap.add_argument("--repeat", type=int, default=2, help="alternate floor and build this many times; keep the best")
    ap.add_argument("--child", choices=["floor", "build"], help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        result = run_floor(args.data) if args.child == "floor" else run_build(args.data)
        print(json.dumps(result))
        return

    leads, events = (50_000, 2_500_000) if args.small else (1_000_000, 50_000_000)
    folder = args.raw or args.data or Path(f"/tmp/leadlift_bench_{leads}_{events}")
    if args.raw is None and not (folder / "events.parquet").exists():
        t = time.perf_counter()
        make_data(folder, leads=leads, events=events)
        print(f"generated {leads:,} leads / {events:,} events in {time.perf_counter() - t:.1f} s -> {folder}")
    n_events = pl.scan_parquet(folder / "events.parquet").select(pl.len()).collect().item()
    n_leads = pl.scan_parquet(folder / "leads.parquet").select(pl.len()).collect().item()
    load = os.getloadavg()[0]
    print(f"data: {n_leads:,} leads, {n_events:,} events; polars {pl.__version__}, {os.cpu_count()} cores, "
          f"load average {load:.1f} before the run")

    runs: dict[str, list[dict[str, Any]]] = {"floor": [], "build": []}
    for _ in range(args.repeat):  # alternate, so a burst of load elsewhere hits both alike
        for task in runs:
            runs[task].append(measure(task, folder))
    for task, label in (("floor", "floor: scan events, group_by lead_id count"), ("build", "build_features")):
        walls = ", ".join(f"{r['seconds']:.2f}" for r in runs[task])
        print(f"{label:<44} wall {walls} s; CPU {min(r['cpu_seconds'] for r in runs[task]):.2f} s; "
              f"peak RSS {max(r['peak_rss_gb'] for r in runs[task]):.2f} GB")
    floor = min(r["seconds"] for r in runs["floor"])
    build = min(r["seconds"] for r in runs["build"])
    cpu_ratio = min(r["cpu_seconds"] for r in runs["build"]) / min(r["cpu_seconds"] for r in runs["floor"])
    rss = max(r["peak_rss_gb"] for r in runs["build"])
    print(f"build_features: {runs['build'][0]['columns']} columns, {n_events / build:,.0f} events/s (best wall)")
    print(f"ratio to floor: wall {build / floor:.2f}x, CPU {cpu_ratio:.2f}x (target <= 4x: "
          f"{'met' if build / floor <= 4 else 'MISSED'}); peak RSS {rss:.2f} GB (target < 6 GB: "
          f"{'met' if rss < 6 else 'MISSED'})")


if __name__ == "__main__":
    main()
