"""Benchmark `leadlift score --engine spark` on local[2] against `leadlift score` on one machine, in the same run.

    python benchmarks/bench_spark.py            # 1M and 5M new leads, ~10 events each
    python benchmarks/bench_spark.py --small    # 20k and 100k new leads, bundle from the tests' small pipeline
    python benchmarks/bench_spark.py --sizes 1000000 --repo /tmp/some_repo_copy --master local[2]

The bundle and the batches are bench_score.py's (a repo copy after a real `dvc repro evaluate`; batches from
`pipelines.generate.run_new_batch`, about 9 events per lead), so the two benchmarks share their data when run
with the same --data. Each engine runs in its own child process:

- single: `pipelines.score.score_file` (what `leadlift score` runs), peak RSS from wait4;
- spark:  `pipelines.spark.run_score` (what `leadlift score --engine spark` runs) on --master, buckets chosen from
  the input size (about 200k leads each) unless --buckets; a thread samples /proc every 0.5 s for the peak RSS of
  the JVM and of each Python worker, and every bucket records its time and its worker's peak RSS (the bucket
  functions are wrapped in the child, the library is unchanged);
- compare: both outputs read back, sorted by lead_id, a hash of every row compared (so a 5M-row check fits in
  memory), and the quarantines compared whole.

Printed per size: leads/s of each engine, the ratio, peak memory (single process; Spark: driver, JVM, each Python
worker), time per bucket (check pass and score pass), whether the rows are identical, and the machine's load
average (the machine is shared: wall times move with other work). Then an extrapolation of the per-bucket cost to
100M leads on N executors, labelled as one. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for p in (ROOT, HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import bench_score  # noqa: E402  (the bundle, the batches and the child-process runner are shared)

TRACE_ENV = "LEADLIFT_BENCH_SPARK_TRACE"


# ---------------------------------------------------------------- memory sampling (/proc, no dependencies)


def _rss_gb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return 0.0


def _descendants(root: int) -> dict[int, str]:
    """pid -> command name of every process below root."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            parents[int(entry.name)] = (int(stat[stat.rindex(")") + 2:].split()[1]), name)
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, (ppid, name) in parents.items():
            if ppid == pid and child not in found:
                found[child] = name
                frontier.append(child)
    return found


class Sampler(threading.Thread):
    """Peak RSS of the JVM and of every Python process below this one, sampled every `every` seconds."""

    def __init__(self, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.peak: dict[str, float] = {"jvm": 0.0, "python_workers_total": 0.0}
        self.per_worker: dict[int, float] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            procs = _descendants(os.getpid())
            jvm = sum(_rss_gb(p) for p, n in procs.items() if n == "java")
            workers = {p: _rss_gb(p) for p, n in procs.items() if n.startswith("python")}
            self.peak["jvm"] = max(self.peak["jvm"], jvm)
            self.peak["python_workers_total"] = max(self.peak["python_workers_total"], sum(workers.values()))
            for p, r in workers.items():
                self.per_worker[p] = max(self.per_worker.get(p, 0.0), r)
            self._stop_event.wait(self.every)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


# ---------------------------------------------------------------- children


def record(kind: str, started: float, leads: Any, events: Any) -> None:
    """Append (pass, pid, rows, seconds, the worker's peak RSS so far) for one bucket to the trace file."""
    rec = {"pass": kind, "pid": os.getpid(), "leads": leads.num_rows,
           "events": events.num_rows if events is not None else 0, "seconds": time.perf_counter() - started,
           "worker_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}
    with open(os.environ[TRACE_ENV], "a") as fh:
        fh.write(json.dumps(rec) + "\n")


def traced_check(fn: Any) -> Any:
    """`check_bucket` timed; the same parameters (pyspark reads the arity of what remains after the partial)."""

    def check_bucket(job: Any, leads: Any, events: Any) -> Any:
        t = time.perf_counter()
        out = fn(job, leads, events)
        record("check", t, leads, events)
        return out

    return check_bucket


def traced_score(fn: Any) -> Any:
    def score_bucket(job: Any, at: Any, leads: Any, events: Any) -> Any:
        t = time.perf_counter()
        out = fn(job, at, leads, events)
        record("score", t, leads, events)
        return out

    return score_bucket


def run_spark(folder: Path, repo: Path, master: str, buckets: int | None) -> dict[str, Any]:
    """`leadlift score --engine spark` minus argument parsing, with the bucket functions timed."""
    import pipelines.spark as S

    manifest = json.loads((folder / "manifest.json").read_text())
    trace = folder / "spark_trace.jsonl"
    trace.unlink(missing_ok=True)
    os.environ[TRACE_ENV] = str(trace)
    S.check_bucket = traced_check(S.check_bucket)  # type: ignore[assignment]
    S.score_bucket = traced_score(S.score_bucket)  # type: ignore[assignment]
    sampler = Sampler()
    sampler.start()
    t = time.perf_counter()
    spark = S.session(master)
    started = time.perf_counter() - t
    report = S.run_score(spark, str(folder / "leads.parquet"), str(folder / "spark_out"),
                         events=str(folder / "events.parquet"), model=repo / "data" / "artifacts",
                         as_of=datetime.fromisoformat(manifest["as_of"]), buckets=buckets)
    seconds = time.perf_counter() - t
    spark.stop()
    sampler.stop()
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    return {"seconds": seconds, "session_seconds": started, **report, "buckets_trace": records,
            "jvm_peak_rss_gb": sampler.peak["jvm"], "workers_peak_rss_gb": sampler.per_worker,
            "workers_total_peak_rss_gb": sampler.peak["python_workers_total"],
            "driver_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}


def compare(folder: Path) -> dict[str, Any]:
    """Same rows? Row hashes of both outputs sorted by lead_id, and the two quarantines."""
    import polars as pl

    from features import contract as C
    from features.schema import LEAD_ID

    def hashed(scan: pl.LazyFrame) -> pl.DataFrame:
        return scan.select(LEAD_ID, pl.struct(pl.all()).hash().alias("h")).collect().sort(LEAD_ID)

    one = hashed(pl.scan_parquet(folder / "scored.parquet"))
    parts = sorted(str(p) for p in (folder / "spark_out" / "scores").glob("part-*.parquet"))
    spark = hashed(pl.scan_parquet(parts))
    q_one = pl.read_csv(folder / "scored.quarantine.csv", schema=C.QUARANTINE_SCHEMA)
    q_parts = sorted(str(p) for p in (folder / "spark_out" / "quarantine").glob("part-*.parquet"))
    q_spark = pl.read_parquet(q_parts) if q_parts else pl.DataFrame(schema=C.QUARANTINE_SCHEMA)
    return {"rows_single": one.height, "rows_spark": spark.height, "identical_rows": one.equals(spark),
            "identical_quarantine": q_one.equals(q_spark), "quarantine_rows": q_one.height}


# ---------------------------------------------------------------- the parent


def bench_size(leads: int, repo: Path, data_root: Path, master: str, buckets: int | None) -> dict[str, Any]:
    folder, manifest, note = bench_score.batch_folder(leads, repo, data_root)
    print(f"\n== {manifest['leads']:,} new leads, {manifest['events']:,} events "
          f"({manifest['events'] / manifest['leads']:.1f} per lead), as of {manifest['as_of']} ({note}: {folder}) ==")
    (folder / "scored.parquet").unlink(missing_ok=True)
    load_before = os.getloadavg()
    single = bench_score.measure(["--child", "leadlift", "--dir", str(folder), "--repo", str(repo)], cwd=repo)
    spark = measure_self(["--child", "spark", "--dir", str(folder), "--repo", str(repo), "--master", master,
                          *(["--buckets", str(buckets)] if buckets else [])], cwd=ROOT)
    # cwd=ROOT: Spark's Python workers import from their working directory first, and the repo copy under --data
    # holds the code of the day it was made; from ROOT they run the code the driver runs.
    same = measure_self(["--child", "compare", "--dir", str(folder)])
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min): {load_before[0]:.1f} {load_before[1]:.1f} {load_before[2]:.1f} before, "
          f"{load_after[0]:.1f} {load_after[1]:.1f} {load_after[2]:.1f} after, on {os.cpu_count()} cores shared "
          "with other work")
    n = single["scored"]
    print(f"single (leadlift score):         {single['seconds']:8.1f} s, {n / single['seconds']:8,.0f} leads/s, "
          f"peak RSS {single['peak_rss_gb']:.2f} GB; rows in {single['rows_in']:,} = scored {single['scored']:,} "
          f"+ quarantined {single['quarantined']:,}; {single['sql']:,} SQL")
    print(f"spark {master} ({spark['buckets']} buckets): {spark['seconds']:8.1f} s, "
          f"{spark['scored'] / spark['seconds']:8,.0f} leads/s (session start {spark['session_seconds']:.1f} s "
          f"included); rows in {spark['rows_in']:,} = scored {spark['scored']:,} + quarantined "
          f"{spark['quarantined']:,}; {spark['sql']:,} SQL")
    workers = spark["workers_peak_rss_gb"]
    in_bucket = max((r["worker_peak_rss_gb"] for r in spark["buckets_trace"]), default=0.0)
    print(f"    peak RSS: driver {spark['driver_peak_rss_gb']:.2f} GB, JVM {spark['jvm_peak_rss_gb']:.2f} GB, "
          f"Python workers {len(workers)} seen, each at most {max(workers.values(), default=0.0):.2f} GB "
          f"(sampled) / {in_bucket:.2f} GB (ru_maxrss after a bucket), all together at most "
          f"{spark['workers_total_peak_rss_gb']:.2f} GB")
    per_bucket: dict[str, dict[str, float]] = {}
    for kind in ("check", "score"):
        rows = [r for r in spark["buckets_trace"] if r["pass"] == kind and r["leads"]]
        if rows:
            secs = sorted(r["seconds"] for r in rows)
            leads_per = sum(r["leads"] for r in rows) / len(rows)
            per_bucket[kind] = {"median_s": secs[len(secs) // 2], "max_s": secs[-1], "leads": leads_per,
                                "total_s": sum(secs)}
            print(f"    {kind} pass: {len(rows)} buckets of ~{leads_per:,.0f} leads, per bucket median "
                  f"{secs[len(secs) // 2]:.1f} s, max {secs[-1]:.1f} s, sum {sum(secs):.1f} s")
    ratio = (spark["scored"] / spark["seconds"]) / (n / single["seconds"])
    print(f"ratio spark leads/s / single leads/s: {ratio:.2f}x")
    print(f"same rows: {same['rows_spark']:,} vs {same['rows_single']:,}, every row's hash equal: "
          f"{same['identical_rows']}; quarantine identical: {same['identical_quarantine']} "
          f"({same['quarantine_rows']} rows)")
    return {"leads": n, "single": single, "spark": spark, "same": same, "per_bucket": per_bucket}


def measure_self(args: list[str], *, cwd: Path | None = None) -> dict[str, Any]:
    """bench_score.measure, running this script as the child."""
    return bench_score.measure(args, cwd=cwd, script=Path(__file__))


def extrapolate(result: dict[str, Any]) -> None:
    """100M leads on N executors from the measured per-bucket cost: an extrapolation, labelled as one."""
    from pipelines.spark import LEADS_PER_BUCKET

    pb = result["per_bucket"]
    if "score" not in pb:
        return
    per_lead = (pb["score"]["median_s"] + pb.get("check", {"median_s": 0.0})["median_s"]) / pb["score"]["leads"]
    bucket_s = per_lead * LEADS_PER_BUCKET
    n_buckets = math.ceil(100_000_000 / LEADS_PER_BUCKET)
    print(f"\nEXTRAPOLATION, not a measurement: from the median bucket cost measured above ({per_lead * 1e6:.1f} s per "
          f"million leads per core for both passes, i.e. ~{bucket_s:.0f} s per {LEADS_PER_BUCKET:,}-lead bucket), "
          f"100M leads = {n_buckets} buckets; assuming one bucket per core at a time, the same per-core speed, "
          "and shuffle and scheduling not the bottleneck:")
    for executors, cores in ((10, 4), (25, 4), (50, 4), (100, 8)):
        slots = executors * cores
        waves = math.ceil(n_buckets / slots)
        print(f"    {executors:3d} executors x {cores} cores = {slots:4d} slots: {waves:3d} waves x ~{bucket_s:.0f} s "
              f"= ~{waves * bucket_s / 60:.1f} min of bucket work, plus session start, reading and the shuffle")


def main() -> None:
    ap = bench_score.batch_options(__doc__, small="20k and 100k", full="1000000 5000000")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--buckets", type=int, help="default: from the input size (about 200k leads each)")
    ap.add_argument("--child", choices=["spark", "compare"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        out = run_spark(args.dir, args.repo, args.master, args.buckets) if args.child == "spark" \
            else compare(args.dir)
        print(json.dumps(out))
        return

    import pyspark

    sizes = args.sizes or ([20_000, 100_000] if args.small else [1_000_000, 5_000_000])
    data_root = args.data / f"leadlift_bench_score_{'small' if args.small else 'full'}"
    repo_dir = args.repo or data_root / "leadlift_bench_score_repo"
    repo, repro_seconds = bench_score.trained_repo(repo_dir.resolve(), small=args.small)
    train = json.loads((repo / "reports" / "train.json").read_text())
    print(f"bench_spark: pyspark {pyspark.__version__}, master {args.master}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1e9:.0f} GB; bundle {repo}/data/artifacts ("
          + (f"dvc repro evaluate took {repro_seconds:.0f} s" if repro_seconds is not None else "reused")
          + f"; {train['best_iteration']} trees)")
    results = [bench_size(n, repo, data_root, args.master, args.buckets) for n in sizes]
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(f"\n{a['leads']:,} -> {b['leads']:,} leads: single peak RSS {a['single']['peak_rss_gb']:.2f} -> "
              f"{b['single']['peak_rss_gb']:.2f} GB; spark largest Python worker "
              f"{max(a['spark']['workers_peak_rss_gb'].values(), default=0):.2f} -> "
              f"{max(b['spark']['workers_peak_rss_gb'].values(), default=0):.2f} GB (bounded by the bucket, "
              f"not the batch); time single {b['single']['seconds'] / a['single']['seconds']:.1f}x, "
              f"spark {b['spark']['seconds'] / a['spark']['seconds']:.1f}x")
    extrapolate(results[-1])


if __name__ == "__main__":
    main()
