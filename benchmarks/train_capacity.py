"""How large a training frame fits in this machine's memory: peak RSS of the train stage's work against frame rows.

    python benchmarks/train_capacity.py --repo /tmp/some_trained_repo_copy            # 0.5M, 1M, 2M, 4M rows
    python benchmarks/train_capacity.py --repo COPY --sizes 250000 500000 --rounds 50

Training stays on one machine (README, "Past one machine"), so the training frame must fit in it. The frame is the
copy's data/features/features.parquet (the featurize stage's output) repeated with fresh lead ids up to each size,
so it has the real columns, types and split shares. Each size runs `pipelines.train.run` (read the frame, matrices,
LightGBM with early stopping on valid, the logistic-regression baseline) in its own child process; peak RSS comes
from wait4. `--rounds` caps the boosting rounds to keep the run short: LightGBM's memory is the binned dataset and
the matrices, not the trees, so the cap changes time, not the peak.

Printed: rows, frame size on disk and in memory, peak RSS, seconds; a least-squares line through the measured
points and the rows at which it reaches the memory budget (--budget-gb, default 24 less 2 GB for the system). That
last figure is an extrapolation from the measured points and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for p in (ROOT, HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import bench_score  # noqa: E402  (its child-process runner with wait4 peak RSS)


def make_frame(source: Path, rows: int, out: Path) -> dict[str, Any]:
    """The featurize stage's frame repeated with fresh lead ids up to `rows` rows, in (t0, lead_id) order."""
    import polars as pl

    frame = pl.read_parquet(source)
    copies = -(-rows // frame.height)
    big = pl.concat([frame.with_columns(pl.col("lead_id") + f"-{i}") for i in range(copies)]).head(rows)
    big = big.sort("t0", "lead_id")
    big.write_parquet(out)
    return {"rows": big.height, "columns": big.width, "in_memory_gb": big.estimated_size() / 1e9,
            "on_disk_gb": out.stat().st_size / 1e9}


def train(frame: Path, spec: Path, params_file: Path, rounds: int) -> dict[str, Any]:
    from pipelines.io import load_params
    from pipelines.train import run

    params = load_params("train", params_file)
    params["num_boost_round"] = min(int(params["num_boost_round"]), rounds)
    t = time.perf_counter()
    trained = run(frame, spec, params=params)
    return {"seconds": time.perf_counter() - t, "trees": trained.model_text.count("\nTree=")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True, help="a repo copy after dvc repro (featurize at least)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[500_000, 1_000_000, 2_000_000, 4_000_000])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--budget-gb", type=float, default=22.0)
    ap.add_argument("--data", type=Path, default=Path("/tmp/leadlift_train_capacity"))
    ap.add_argument("--child", choices=["frame", "train"], help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    features = args.repo / "data" / "features" / "features.parquet"
    spec = args.repo / "data" / "artifacts" / "feature_spec.json"
    if args.child == "frame":
        print(json.dumps(make_frame(features, args.rows, args.out)))
        return
    if args.child == "train":
        print(json.dumps(train(args.out, spec, args.repo / "params.yaml", args.rounds)))
        return

    args.data.mkdir(parents=True, exist_ok=True)
    print(f"train_capacity: frame from {features}, boosting capped at {args.rounds} rounds, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    points: list[tuple[int, float]] = []
    for rows in args.sizes:
        path = args.data / f"frame_{rows}.parquet"
        made = bench_score.measure(["--child", "frame", "--repo", str(args.repo), "--rows",
                                                            str(rows), "--out", str(path)], script=Path(__file__))
        got = bench_score.measure(["--child", "train", "--repo", str(args.repo), "--rows",
                                                           str(rows), "--out", str(path), "--rounds",
                                                           str(args.rounds)], script=Path(__file__))
        points.append((rows, got["peak_rss_gb"]))
        print(f"{rows:>10,} rows x {made['columns']} columns: frame {made['in_memory_gb']:.2f} GB in memory "
              f"({made['on_disk_gb']:.2f} GB Parquet); train stage peak RSS {got['peak_rss_gb']:.2f} GB, "
              f"{got['seconds']:.0f} s, {got['trees']} trees; load average {os.getloadavg()[0]:.1f}")
        path.unlink(missing_ok=True)
    if len(points) >= 2:
        n = len(points)
        mx = sum(r for r, _ in points) / n
        my = sum(g for _, g in points) / n
        slope = sum((r - mx) * (g - my) for r, g in points) / sum((r - mx) ** 2 for r, _ in points)
        intercept = my - slope * mx
        fits = (args.budget_gb - intercept) / slope
        print(f"line through the measured points: {intercept:.2f} GB + {slope * 1e6:.2f} GB per million rows; "
              f"EXTRAPOLATED from them, not measured: the train stage reaches {args.budget_gb:.0f} GB at about "
              f"{fits / 1e6:.1f} million rows")


if __name__ == "__main__":
    main()
