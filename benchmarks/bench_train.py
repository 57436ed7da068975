"""Benchmark training: the LightGBM model against the logistic-regression baseline, at 100k and 1M leads.

    python benchmarks/bench_train.py            # 100k and 1M leads (data cached under --data)
    python benchmarks/bench_train.py --small    # 10k and 50k leads
    python benchmarks/bench_train.py --sizes 100000 300000

The data is the project's own: `pipelines.generate.run` (synthetic export with events), `pipelines.ingest.run`
(the synthetic source mapping) and `pipelines.featurize.featurize` with the repo's params, written once per size
as features.parquet + feature_spec.json and reused on the next run. Then, each in its own child process (so the
peak RSS from wait4 is that step's own, data load included):

- load:  read features.parquet and build the train/valid matrices (`pipelines.train.split_xy`): the memory floor;
- gbm:   the same load, then `models.train.train_gbm` (early stopping on valid), timed alone;
- lr:    the same load, then `models.baseline.fit_baseline`, timed alone;
- stage: `pipelines.train.run` end to end (read, both fits, valid AUCs), as the `train` stage runs it minus MLflow
  (only up to --stage-max-leads, default 100k: above that it is the sum of gbm and lr and doubles the run time);
- gbm with OMP_WAIT_POLICY=PASSIVE (diagnostic): the same call with LightGBM's OpenMP threads sleeping instead of
  spinning while they wait. On a machine with more runnable threads than cores, spinning threads steal the cores
  the working threads need; this line shows how much of the gbm time that costs here.

The named peer is the LR baseline, measured in the same run on the same matrices: the ratio GBM time / LR time,
and each model's seconds per 100k training rows. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PARAMS = ROOT / "params.yaml"
SOURCE = ROOT / "sources" / "synthetic.yaml"
TASKS = ("load", "gbm", "lr", "stage", "gbm_passive")
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}


# ---------------------------------------------------------------- child tasks (run in their own process)


def prepare(folder: Path, leads: int) -> dict[str, Any]:
    """generate -> ingest -> featurize with the project's code; write features.parquet and feature_spec.json."""
    import polars as pl

    from pipelines.featurize import featurize
    from pipelines.generate import run as generate
    from pipelines.ingest import run as ingest
    from pipelines.io import load_params, read_json, write_frame, write_json

    params = load_params("featurize", PARAMS)
    gen_params = load_params("generate", PARAMS)
    base = params["base"]
    times: dict[str, float] = {}
    t = time.perf_counter()
    summary = generate(folder / "data" / "raw", leads=leads, seed=int(base["seed"]), start=str(gen_params["start"]),
                       months=int(gen_params["months"]), observation_days=int(base["observation_days"]),
                       horizon_days=int(base["horizon_days"]), progress=False)  # fmt: skip
    times["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    ingest(SOURCE, folder / "data" / "interim", params=load_params("ingest", PARAMS), root=folder, echo=lambda _: None)
    times["ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    interim = folder / "data" / "interim"
    frame, spec, report = featurize(pl.scan_parquet(interim / "leads.parquet"),
                                    pl.scan_parquet(interim / "events.parquet"),
                                    pl.scan_parquet(interim / "outcomes.parquet"), read_json(interim / "source.json"),
                                    params)  # fmt: skip
    write_frame(frame, folder / "features.parquet")
    write_json(folder / "feature_spec.json", spec)
    times["featurize"] = time.perf_counter() - t
    info = {"leads": leads, "events": summary["events"], "features": len(spec["features"]),
            "splits": {k: v["leads"] for k, v in report["splits"].items()}, "prep_seconds": times}  # fmt: skip
    write_json(folder / "prepared.json", info)
    return info


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _load(folder: Path) -> tuple[Any, ...]:
    import polars as pl

    from features.spec import categorical_indices
    from pipelines.io import read_json
    from pipelines.train import split_xy

    frame = pl.read_parquet(folder / "features.parquet")
    spec = read_json(folder / "feature_spec.json")
    X_tr, y_tr = split_xy(frame, spec, "train")
    X_va, y_va = split_xy(frame, spec, "valid")
    del frame
    return spec, categorical_indices(spec), X_tr, y_tr, X_va, y_va


def run_task(task: str, folder: Path) -> dict[str, Any]:
    """One measured step; seconds exclude interpreter start and imports, and (except `stage`) the data load."""
    import numpy as np  # noqa: F401  (imported before the clock starts, like the rest)

    from features.spec import feature_names
    from models.baseline import fit_baseline
    from models.metrics import auc
    from models.train import train_gbm
    from pipelines.io import load_params
    from pipelines.train import run as train_stage

    params = load_params("train", PARAMS)
    seed = int(params["base"]["seed"])
    if task == "stage":
        t, c = time.perf_counter(), _cpu()
        report = train_stage(folder / "features.parquet", folder / "feature_spec.json", params=params).report
        return {"seconds": time.perf_counter() - t, "cpu_seconds": _cpu() - c, **report}
    t, c = time.perf_counter(), _cpu()
    spec, cats, X_tr, y_tr, X_va, y_va = _load(folder)
    out: dict[str, Any] = {"load_seconds": time.perf_counter() - t, "train_rows": len(y_tr), "valid_rows": len(y_va),
                           "features": X_tr.shape[1]}  # fmt: skip
    if task == "load":
        out["seconds"], out["cpu_seconds"] = out["load_seconds"], _cpu() - c
    elif task in ("gbm", "gbm_passive"):
        t, c = time.perf_counter(), _cpu()
        booster = train_gbm(X_tr, y_tr, X_va, y_va, feature_names=feature_names(spec), categorical=cats, params=params,
                            seed=seed)  # fmt: skip
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - t, _cpu() - c
        out["trees"] = booster.current_iteration()
        out["valid_auc"] = auc(y_va, booster.predict(X_va, raw_score=True))
    elif task == "lr":
        n_cats = [len(spec["features"][j]["categories"]) for j in cats]
        t, c = time.perf_counter(), _cpu()
        baseline = fit_baseline(
            X_tr, y_tr, categorical=cats, n_categories=n_cats, C=float(params.get("baseline_c", 1.0))
        )
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - t, _cpu() - c
        out["valid_auc"] = auc(y_va, baseline.predict_proba(X_va))
    return out


# ---------------------------------------------------------------- the parent


def measure(args: list[str], *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run this script as a child; return its JSON result plus its peak RSS (wait4) and wall time incl. startup."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **env} if env else None)
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"child {args} failed with exit code {code}")
    result = json.loads(text.strip().splitlines()[-1])
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is KiB on Linux
    result["process_seconds"] = time.perf_counter() - t
    return result


def bench_size(leads: int, data_root: Path, *, stage_max_leads: int) -> dict[str, Any]:
    folder = data_root / f"leadlift_bench_train_{leads}"
    if (folder / "prepared.json").exists() and (folder / "features.parquet").exists():
        info = json.loads((folder / "prepared.json").read_text())
        print(f"\n== {leads:,} leads (cached features in {folder}) ==")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        info = measure(["--child", "prepare", "--dir", str(folder), "--leads", str(leads)])
        print(f"\n== {leads:,} leads (prepared in {folder}) ==")
    p = info["prep_seconds"]
    print(f"data: {info['leads']:,} leads, {info['events']:,} events, {info['features']} features; splits "
          + ", ".join(f"{k} {v:,}" for k, v in info["splits"].items())
          + f"; prep: generate {p['generate']:.1f} s, ingest {p['ingest']:.1f} s, featurize {p['featurize']:.1f} s"
          + (f", peak RSS {info['peak_rss_gb']:.2f} GB" if "peak_rss_gb" in info else ""))
    load = os.getloadavg()[0]
    tasks = [t for t in TASKS if t != "stage" or leads <= stage_max_leads]
    res = {task: measure(["--child", task, "--dir", str(folder)], env=PASSIVE if task == "gbm_passive" else None)
           for task in tasks}
    print(f"load average: {load:.1f} before the timed steps, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores; "
          "other work on the machine slows wall times, CPU seconds less so)")
    n = res["gbm"]["train_rows"]
    per100k = 100_000 / n
    lines = (
        ("load  (read parquet + split_xy)", res["load"], ""),
        ("gbm   (models.train.train_gbm)", res["gbm"],
         f"{res['gbm']['trees']} trees, valid AUC {res['gbm']['valid_auc']:.4f}"),
        ("lr    (models.baseline.fit_baseline)", res["lr"], f"valid AUC {res['lr']['valid_auc']:.4f}"),
        *((("stage (pipelines.train.run, no MLflow)", res["stage"],
            f"valid AUC GBM {res['stage']['valid_lightgbm_auc']:.4f}, LR {res['stage']['valid_baseline_lr_auc']:.4f}, "
            f"chosen {res['stage']['model']}"),)
          if "stage" in res else ()),
        ("gbm with OMP_WAIT_POLICY=PASSIVE", res["gbm_passive"],
         f"{res['gbm_passive']['trees']} trees, valid AUC {res['gbm_passive']['valid_auc']:.4f}"),
    )
    if "stage" not in res:
        print(f"stage (pipelines.train.run) not run above --stage-max-leads={stage_max_leads:,}: it is gbm + lr + AUCs")
    for label, r, extra in lines:
        print(
            f"{label:<40} wall {r['seconds']:8.2f} s  CPU {r['cpu_seconds']:8.2f} s  "
            f"peak RSS {r['peak_rss_gb']:5.2f} GB  "
            f"(child incl. startup {r['process_seconds']:.1f} s)  {extra}"
        )
    gbm, lr = res["gbm"]["seconds"], res["lr"]["seconds"]
    print(f"train rows {n:,} ({res['gbm']['features']} features), valid rows {res['gbm']['valid_rows']:,}")
    print(f"per 100k train rows: GBM {gbm * per100k:.2f} s, LR {lr * per100k:.2f} s; "
          f"GBM {n / gbm:,.0f} rows/s, LR {n / lr:,.0f} rows/s")
    print(
        f"ratio GBM / LR baseline time: wall {gbm / lr:.2f}x, "
        f"CPU {res['gbm']['cpu_seconds'] / res['lr']['cpu_seconds']:.2f}x; "
        f"GBM peak RSS over the load floor: "
        f"+{res['gbm']['peak_rss_gb'] - res['load']['peak_rss_gb']:.2f} GB, LR: "
        f"+{res['lr']['peak_rss_gb'] - res['load']['peak_rss_gb']:.2f} GB"
    )
    print(
        f"diagnostic: gbm with spinning OpenMP waits / with passive waits: wall "
        f"{gbm / res['gbm_passive']['seconds']:.2f}x, "
        f"CPU {res['gbm']['cpu_seconds'] / res['gbm_passive']['cpu_seconds']:.2f}x"
    )
    return {"leads": leads, **res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="10k and 50k leads")
    ap.add_argument("--sizes", type=int, nargs="+", help="lead counts (default 100000 1000000)")
    ap.add_argument("--data", type=Path, default=Path("/tmp"), help="where prepared features are cached")
    ap.add_argument("--stage-max-leads", type=int, default=100_000,
                    help="run pipelines.train.run end to end only up to this many leads")
    ap.add_argument("--child", choices=["prepare", *TASKS], help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--leads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        out = prepare(args.dir, args.leads) if args.child == "prepare" else run_task(args.child, args.dir)
        print(json.dumps(out))
        return

    import lightgbm
    import sklearn

    sizes = args.sizes or ([10_000, 50_000] if args.small else [100_000, 1_000_000])
    print(f"bench_train: lightgbm {lightgbm.__version__}, scikit-learn {sklearn.__version__}, {os.cpu_count()} cores; "
          f"params from {PARAMS}")
    results = [bench_size(n, args.data, stage_max_leads=args.stage_max_leads) for n in sizes]
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(
            f"\nscaling {a['leads']:,} -> {b['leads']:,} leads "
            f"({b['gbm']['train_rows'] / a['gbm']['train_rows']:.1f}x train rows): "
            f"GBM time {b['gbm']['seconds'] / a['gbm']['seconds']:.1f}x, "
            f"LR time {b['lr']['seconds'] / a['lr']['seconds']:.1f}x, "
            f"GBM (passive waits) time {b['gbm_passive']['seconds'] / a['gbm_passive']['seconds']:.1f}x, "
            f"GBM peak RSS {b['gbm']['peak_rss_gb'] / a['gbm']['peak_rss_gb']:.1f}x"
        )


if __name__ == "__main__":
    main()
