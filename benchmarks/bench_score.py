"""Benchmark `leadlift score` end to end against what a user would otherwise write: MLflow pyfunc + shap.

    python benchmarks/bench_score.py            # 100k and 1M new leads with their events
    python benchmarks/bench_score.py --small    # 5k and 20k new leads, bundle from a 4,000-lead pipeline
    python benchmarks/bench_score.py --sizes 100000 --repo /tmp/some_repo_copy   # reuse a trained copy

The bundle is real: a copy of the repo (tests/conftest.py copy_repo; default params, or the tests' small ones with
--small) on which `python -m dvc repro evaluate` runs once; <copy>/data/artifacts is the --model, and evaluate has
registered the same bundle in <copy>/mlflow.db as `leadlift`. The batches come from
`pipelines.generate.run_new_batch` (leads created in the 14 days before the snapshot, with their events).

Each measurement runs in its own child process (peak RSS from wait4 is its own); `--single-thread` holds every child
to one thread (numba, polars, OpenMP, BLAS) to show what the second core buys:

- leadlift: `pipelines.score.score_file` (read and check the batch, point-in-time features, calibrated probability,
  score, percentile, decision, exact TreeSHAP reasons and the handoff note for every SQL, Parquet output).
- peer:     `mlflow.pyfunc.load_model("models:/leadlift/<version>")` with MLFLOW_TRACKING_URI on the copy's store;
  features with `features.build.build_features` + the spec (as pipelines/score.py builds them); pyfunc `predict`
  on those rows; then `shap.TreeExplainer(booster).shap_values` on the rows it recommends (SQL). If SHAP on all SQLs
  would take more than 20 minutes, it is timed on a random sample of 20k SQL rows and extrapolated (said so).
  The peer writes no output and builds no notes: it is the least a user would write to get the same numbers.
- floor:    read + `build_features` + the bundle's calibrated probability and decision + its exact SHAP values on
  the SQL rows, through the very `Bundle` methods leadlift scores with (`probability`, `scorer.contributions`: for
  LightGBM the LightGBM-free predictor and TreeSHAP kernel of models.treeshap); the whole batch at once, no contract
  checks, no notes, no output. leadlift's time over the floor's is what checks, flat memory, reasons, notes and
  writing cost. The issue's floor predicted with LightGBM: its `predict` is timed too (same doubles, asserted) and
  that floor printed beside, but leadlift's own predictor is several times faster, so the floor with it is the
  stricter one and the ratio the benchmark reports. Like leadlift's, its child imports `pipelines` before polars,
  so both run with the allocator settings every leadlift process has (pipelines/__init__.py).

Printed: leads/s of each, the ratios leadlift / peer and leadlift / floor, the phases of each (leadlift's are timed
by wrapping its functions in the child), CPU seconds and the load average around each child (the machine may be
shared), and peak RSS at each size (is it flat?). Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: SHAP on all SQLs is run in full only if the estimate is under this; otherwise a sample is extrapolated.
SHAP_FULL_LIMIT_S = 20 * 60
SHAP_SAMPLE = 20_000


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------- child tasks


def make_batch(folder: Path, leads: int, repo: Path) -> dict[str, Any]:
    """A batch of new leads with events, from the project's generator with the copy's params."""
    from features.synthetic import snapshot_at
    from pipelines.generate import run_new_batch
    from pipelines.io import load_params

    params = load_params("generate", repo / "params.yaml")
    base = params["base"]
    t = time.perf_counter()
    summary = run_new_batch(folder, leads=leads, seed=int(base["seed"]) + 1,
                            as_of=snapshot_at(str(params["start"]), int(params["months"])),
                            observation_days=int(base["observation_days"]),
                            horizon_days=int(base["horizon_days"]))  # fmt: skip
    return {**summary, "seconds": time.perf_counter() - t}


#: leadlift's phases, timed by wrapping these functions in its child: (module, attribute, phase). Nested phases are
#: timed inside the outer ones (SHAP and the predictor inside scoring); phases that run on two threads at once (checking
#: and scoring partitions) are the sum of both threads' wall time, so they can add up to more than the run.
LEADLIFT_PHASES = (
    ("pipelines.score", "split_batch", "split (a big batch into partitions)"),
    ("pipelines.score", "Partitioned.check", "check partitions (check_part; per thread)"),
    ("pipelines.score", "score_part", "score (features, predict, SHAP, notes; per thread)"),
    ("models.treeshap", "TreeShap.margin", "  of which the predictor"),
    ("models.treeshap", "TreeShap.contributions", "  of which TreeSHAP"),
    ("features.spec", "to_matrix", "  of which to_matrix"),
    ("pipelines.score", "_Writer.write", "write scores"),
)


def _timed(phases: dict[str, float]) -> None:
    """Wrap LEADLIFT_PHASES so that each adds its wall time to `phases` (generators: the time spent inside them)."""
    import functools
    import importlib
    import inspect

    for module_name, attr, phase in LEADLIFT_PHASES:
        owner: Any = importlib.import_module(module_name)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        fn = getattr(owner, name)

        def wrap(fn: Any = fn, phase: str = phase) -> Any:
            if inspect.isgeneratorfunction(fn):
                @functools.wraps(fn)
                def gen(*a: Any, **k: Any) -> Any:
                    it = fn(*a, **k)
                    while True:
                        t = time.perf_counter()
                        try:
                            item = next(it)
                        except StopIteration:
                            phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - t
                            return
                        phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - t
                        yield item
                return gen

            @functools.wraps(fn)
            def call(*a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - t
            return call

        wrapped = wrap()
        setattr(owner, name, wrapped)
        if not path:  # a function: also where another module imported it by name (`from features.spec import ...`)
            for module in list(sys.modules.values()):
                if getattr(module, "__name__", "").startswith(("features.", "models.", "pipelines.")) \
                        and getattr(module, name, None) is fn:
                    setattr(module, name, wrapped)


def run_leadlift(folder: Path, repo: Path, chunk_size: int | None = None) -> dict[str, Any]:
    """`leadlift score` minus argument parsing: pipelines.score.score_file on the batch (its default chunk size
    unless given)."""
    from rich.console import Console

    import pipelines.score

    phases: dict[str, float] = {}
    _timed(phases)
    score_file = pipelines.score.score_file

    manifest = json.loads((folder / "manifest.json").read_text())
    out = folder / "scored.parquet"
    t, c = time.perf_counter(), _cpu()
    report = score_file(folder / "leads.parquet", out, events=folder / "events.parquet",
                        as_of=datetime.fromisoformat(manifest["as_of"]), quarantine=folder / "scored.quarantine.csv",
                        model=repo / "data" / "artifacts", console=Console(stderr=True, quiet=True),
                        **({"chunk_size": chunk_size} if chunk_size else {}))  # fmt: skip
    return {"seconds": time.perf_counter() - t, "cpu_seconds": _cpu() - c,
            "phases": {phase: phases.get(phase, 0.0) for *_, phase in LEADLIFT_PHASES}, **report}


def batch_features(folder: Path, spec: dict[str, Any], as_of: datetime) -> Any:
    """The batch's leads and events read whole and their features built at `as_of`, one row per lead in file order,
    as pipelines/score.py builds them (the floor's and the peer's shared first step)."""
    import polars as pl

    from features.build import build_features
    from features.schema import LEAD_ID

    leads = pl.read_parquet(folder / "leads.parquet")
    events = pl.scan_parquet(folder / "events.parquet")
    feats = build_features(leads.lazy(), events, spec["source_roles"], observation_days=int(spec["observation_days"]),
                           windows=spec["windows"], as_of=as_of).collect()  # fmt: skip
    assert feats[LEAD_ID].equals(leads[LEAD_ID])  # in the leads' order, as pipelines.score.lead_features checks
    return feats


def run_floor(folder: Path, repo: Path) -> dict[str, Any]:
    """The floor of the job: read + `build_features` + the bundle's calibrated probability and decision + its exact
    SHAP values on the SQL rows, by the same `Bundle` methods leadlift scores with. No contract checks, no notes, no
    output, the whole batch at once: what no scorer can do without. It runs with the allocator settings of every
    leadlift process (`pipelines/__init__.py`, imported first, as leadlift's own child does)."""
    importlib.import_module("pipelines")  # before polars, as in every leadlift process
    import numpy as np

    from features.spec import to_matrix
    from models.bundle import SQL
    from pipelines.bundle import load_bundle

    manifest = json.loads((folder / "manifest.json").read_text())
    as_of = datetime.fromisoformat(manifest["as_of"])
    phases: dict[str, float] = {}
    t0, c0 = time.perf_counter(), _cpu()
    t = time.perf_counter()
    bundle = load_bundle(repo / "data" / "artifacts")
    bundle.scorer.contributions(np.zeros((1, len(bundle.spec["features"]))))  # built once, as leadlift's first chunk
    spec = bundle.spec
    phases["load bundle"] = time.perf_counter() - t
    t = time.perf_counter()
    feats = batch_features(folder, spec, as_of)
    X = to_matrix(feats, spec)
    phases["read + build_features + matrix"] = time.perf_counter() - t
    t = time.perf_counter()
    p = bundle.probability(X)
    sql = np.flatnonzero(bundle.decide(p) == SQL)
    phases["calibrated probability + decision"] = time.perf_counter() - t
    t = time.perf_counter()
    bundle.scorer.contributions(X[sql])
    phases["exact SHAP on the SQLs"] = time.perf_counter() - t
    seconds, cpu_seconds = time.perf_counter() - t0, _cpu() - c0
    # The issue's floor predicts with LightGBM; leadlift's own predictor gives the same doubles (asserted here) in
    # a fraction of the time, so the floor above is the stricter one. LightGBM's predict is timed apart (its import,
    # about 1.5 s, left out) and never counted in the floor's seconds.
    booster = bundle.booster
    t = time.perf_counter()
    raw = booster.predict(X, raw_score=True)
    lightgbm_predict = time.perf_counter() - t
    if not np.array_equal(raw, bundle.margin(X)):
        raise AssertionError("leadlift's predictor and LightGBM's predict disagree on the batch")
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "phases": phases, "rows": feats.height,
            "sql": len(sql), "lightgbm_predict_seconds": lightgbm_predict}


def run_peer(folder: Path, repo: Path, version: int) -> dict[str, Any]:
    """What a user would write: the registered pyfunc on features built as score.py does, then shap on the SQLs."""
    import warnings

    import mlflow.pyfunc
    import numpy as np
    import polars as pl
    import shap

    warnings.filterwarnings("ignore", message="LightGBM binary classifier with TreeExplainer")

    from features.schema import LEAD_ID
    from features.spec import feature_names, to_matrix

    manifest = json.loads((folder / "manifest.json").read_text())
    as_of = datetime.fromisoformat(manifest["as_of"])
    phases: dict[str, float] = {}
    t0, c0 = time.perf_counter(), _cpu()

    t = time.perf_counter()
    model = mlflow.pyfunc.load_model(f"models:/leadlift/{version}")
    bundle = model.unwrap_python_model().bundle
    spec = bundle.spec
    phases["load model (pyfunc from the registry)"] = time.perf_counter() - t

    t = time.perf_counter()
    feats = batch_features(folder, spec, as_of)
    phases["read + build_features"] = time.perf_counter() - t

    t = time.perf_counter()
    pred = model.predict(feats.select(feature_names(spec)).to_pandas())
    phases["pyfunc predict (incl. to_pandas)"] = time.perf_counter() - t

    sql = np.flatnonzero(pred["decision"].to_numpy() == "SQL")
    t = time.perf_counter()
    X_sql = to_matrix(feats[sql], spec)
    explainer = shap.TreeExplainer(bundle.booster)
    phases["SQL rows to matrix + TreeExplainer()"] = time.perf_counter() - t

    rng = np.random.default_rng(0)
    n_sample = min(len(sql), SHAP_SAMPLE)
    sample = np.sort(rng.choice(len(sql), size=n_sample, replace=False)) if n_sample else np.array([], dtype=int)
    t = time.perf_counter()
    if n_sample:
        explainer.shap_values(X_sql[sample])
    t_sample = time.perf_counter() - t
    estimate = t_sample * len(sql) / n_sample if n_sample else 0.0
    extrapolated = estimate > SHAP_FULL_LIMIT_S
    if extrapolated:
        shap_seconds = estimate
    else:
        rest = np.setdiff1d(np.arange(len(sql)), sample)
        t = time.perf_counter()
        if rest.size:
            explainer.shap_values(X_sql[rest])
        shap_seconds = t_sample + time.perf_counter() - t
    phases["shap_values on the SQLs" + (" (EXTRAPOLATED)" if extrapolated else "")] = shap_seconds
    measured = time.perf_counter() - t0
    seconds = measured + (estimate - t_sample if extrapolated else 0.0)

    agree: dict[str, Any] = {}
    scored = folder / "scored.parquet"
    if scored.exists():
        ours = pl.read_parquet(scored, columns=[LEAD_ID, "probability", "decision"])
        theirs = pl.DataFrame({LEAD_ID: feats[LEAD_ID], "p_peer": pred["probability"].to_numpy(),
                               "d_peer": pred["decision"].to_numpy().astype(str)})  # fmt: skip
        both = ours.join(theirs, on=LEAD_ID, how="inner")
        agree = {"compared_rows": both.height,
                 "max_abs_prob_diff": float((both["probability"] - both["p_peer"]).abs().max() or 0.0),  # type: ignore[arg-type]
                 "decision_mismatches": int((both["decision"] != both["d_peer"]).sum())}  # fmt: skip
    return {"seconds": seconds, "measured_seconds": measured, "cpu_seconds_measured": _cpu() - c0, "phases": phases,
            "rows": feats.height, "sql": len(sql), "shap_sample_rows": n_sample, "shap_sample_seconds": t_sample,
            "shap_extrapolated": extrapolated, **agree}  # fmt: skip


# ---------------------------------------------------------------- the parent


def measure(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
            script: Path | None = None) -> dict[str, Any]:
    """Run this script (or `script`) as a child; return its JSON result plus its peak RSS (wait4), wall time incl.
    startup, and the 1-minute load average before and after it."""
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str((script or Path(__file__)).resolve()), *args], stdout=subprocess.PIPE,
                            text=True, cwd=cwd, env=env)  # fmt: skip
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"child {args} failed with exit code {code}")
    result = json.loads(text.strip().splitlines()[-1])
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is KiB on Linux
    result["process_seconds"] = time.perf_counter() - t
    result["process_cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["load"] = (load_before, os.getloadavg()[0])
    return result


def trained_repo(dest: Path, *, small: bool) -> tuple[Path, float | None]:
    """A copy of the repo after `dvc repro evaluate` (reused when it already holds a registered bundle)."""
    from tests.conftest import SMALL, copy_repo, tool_env

    if (dest / "data" / "artifacts" / "registry.json").exists():
        return dest, None
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    overrides: dict[str, dict[str, object]] = {k: dict(v) for k, v in SMALL.items()} if small else {}
    copy_repo(dest, overrides)
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "dvc", "repro", "evaluate"], cwd=dest, env=tool_env(),
                         capture_output=True, text=True, check=False)  # fmt: skip
    if res.returncode != 0:
        raise SystemExit(f"dvc repro evaluate failed in {dest}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return dest, time.perf_counter() - t


#: Environment that holds every engine to one thread: numba (TreeSHAP), polars, OpenMP (LightGBM) and BLAS.
SINGLE_THREAD = {"NUMBA_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1",
                 "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def batch_folder(leads: int, repo: Path, data_root: Path) -> tuple[Path, dict[str, Any], str]:
    """The batch of `leads` new leads under data_root, made once: (folder, its manifest, made in / cached)."""
    folder = data_root / f"leadlift_bench_score_batch_{leads}"
    if not (folder / "manifest.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        made = measure(["--child", "batch", "--dir", str(folder), "--leads", str(leads), "--repo", str(repo)])
        note = f"made in {made['seconds']:.1f} s"
    else:
        note = "cached"
    return folder, json.loads((folder / "manifest.json").read_text()), note


def bench_size(leads: int, repo: Path, version: int, data_root: Path, *, single_thread: bool = False,
               chunk_size: int | None = None) -> dict[str, Any]:
    folder, manifest, note = batch_folder(leads, repo, data_root)
    print(f"\n== {manifest['leads']:,} new leads, {manifest['events']:,} events, as of {manifest['as_of']} "
          f"({note}: {folder}) ==")
    (folder / "scored.parquet").unlink(missing_ok=True)
    load = os.getloadavg()[0]
    thread_env = {**os.environ, **(SINGLE_THREAD if single_thread else {})}
    ours = measure(["--child", "leadlift", "--dir", str(folder), "--repo", str(repo)], cwd=repo, env=thread_env)
    floor = measure(["--child", "floor", "--dir", str(folder), "--repo", str(repo)], cwd=repo, env=thread_env)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}"}
    peer = measure(["--child", "peer", "--dir", str(folder), "--repo", str(repo), "--version", str(version)],
                   cwd=repo, env={**env, **thread_env})  # fmt: skip
    print(f"load average: {load:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores); per child "
          + ", ".join(f"{name} {r['load'][0]:.1f} -> {r['load'][1]:.1f}"
                      for name, r in (("leadlift", ours), ("floor", floor), ("peer", peer))))
    n = ours["scored"]
    print(
        f"leadlift score (pipelines.score.score_file): {ours['seconds']:8.2f} s wall, CPU {ours['cpu_seconds']:.1f} s, "
        f"{n / ours['seconds']:,.0f} leads/s, peak RSS {ours['peak_rss_gb']:.2f} GB "
        f"(child incl. startup {ours['process_seconds']:.1f} s); {ours['sql']:,} SQL with reasons + notes; "
        f"rows in {ours['rows_in']:,} = scored {ours['scored']:,} + quarantined {ours['quarantined']:,}"
    )
    for phase, secs in ours["phases"].items():
        print(f"    leadlift {phase:<51} {secs:8.2f} s")
    print(f"floor (read + features + predict + SHAP on SQLs): {floor['seconds']:8.2f} s wall, "
          f"CPU {floor['cpu_seconds']:.1f} s, {floor['rows'] / floor['seconds']:,.0f} leads/s, "
          f"peak RSS {floor['peak_rss_gb']:.2f} GB; {floor['sql']:,} SQL")
    for phase, secs in floor["phases"].items():
        print(f"    floor {phase:<47} {secs:8.2f} s")
    flag = " (includes an EXTRAPOLATED shap time)" if peer["shap_extrapolated"] else ""
    print(f"peer (MLflow pyfunc + shap.TreeExplainer):     {peer['seconds']:8.2f} s wall{flag}, "
          f"CPU {peer['cpu_seconds_measured']:.1f} s, "
          f"{peer['rows'] / peer['seconds']:,.0f} leads/s, peak RSS {peer['peak_rss_gb']:.2f} GB "
          f"(child incl. startup {peer['process_seconds']:.1f} s); {peer['sql']:,} SQL")
    for phase, secs in peer["phases"].items():
        print(f"    peer {phase:<48} {secs:8.2f} s")
    shap_s = next(v for k, v in peer["phases"].items() if k.startswith("shap"))
    if peer["shap_extrapolated"]:
        print(
            f"    shap: timed on a random sample of {peer['shap_sample_rows']:,} of {peer['sql']:,} SQL rows "
            f"({peer['shap_sample_seconds']:.1f} s, "
            f"{peer['shap_sample_rows'] / max(peer['shap_sample_seconds'], 1e-9):,.0f} rows/s), "
            f"EXTRAPOLATED linearly to all SQLs; the peer's peak RSS is that of the sample run"
        )
    elif peer["sql"]:
        how = (f"a first random {peer['shap_sample_rows']:,} to estimate, then the rest"
               if peer["shap_sample_rows"] < peer["sql"] else "in one call")
        print(f"    shap: measured on all {peer['sql']:,} SQL rows ({how}), {peer['sql'] / shap_s:,.0f} rows/s; "
              "nothing is extrapolated")
    if "compared_rows" in peer:
        print(f"same model, same rows: {peer['compared_rows']:,} compared, max |probability difference| "
              f"{peer['max_abs_prob_diff']:.2e}, decision mismatches {peer['decision_mismatches']}")
    ratio = (n / ours["seconds"]) / (peer["rows"] / peer["seconds"])
    print(f"ratio leadlift leads/s / peer leads/s: {ratio:.2f}x (aim >= 5x at 1M leads)")
    print(f"ratio leadlift time / floor time: {ours['seconds'] / floor['seconds']:.2f}x (aim <= 1.5x)"
          + (" [single thread]" if single_thread else ""))
    own = floor["phases"]["calibrated probability + decision"]
    lgb_floor = floor["seconds"] - own + floor["lightgbm_predict_seconds"]
    print(f"    the issue's floor, predicting with LightGBM ({floor['lightgbm_predict_seconds']:.2f} s for the "
          f"{floor['rows']:,} rows, the same doubles; leadlift's predictor takes {own:.2f} s with the decision): "
          f"{lgb_floor:.2f} s, ratio {ours['seconds'] / lgb_floor:.2f}x. The line above, with leadlift's own "
          "predictor, is the stricter floor and the one to read.")
    if chunk_size:
        big = measure(["--child", "leadlift", "--dir", str(folder), "--repo", str(repo), "--chunk-size",
                       str(chunk_size)], cwd=repo, env=thread_env)
        print(f"leadlift with --chunk-size {chunk_size} (default 50000; a partition per chunk where two are scored "
              f"at a time): {big['seconds']:.2f} s wall, peak RSS {big['peak_rss_gb']:.2f} GB; ratio to the peer "
              f"{peer['seconds'] / big['seconds']:.2f}x, to the floor {big['seconds'] / floor['seconds']:.2f}x")
    return {"leads": n, "ours": ours, "peer": peer, "floor": floor}


def batch_options(doc: str | None, *, small: str, full: str) -> argparse.ArgumentParser:
    """The options every scoring benchmark takes: --small, --sizes, --repo, --data."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help=f"{small} new leads; bundle from the tests' small params")
    ap.add_argument("--sizes", type=int, nargs="+", help=f"new-lead counts (default {full})")
    ap.add_argument("--repo", type=Path, help="a repo copy to (re)use for the bundle (default under --data)")
    ap.add_argument("--data", type=Path, default=Path("/tmp"), help="where the repo copy and batches are kept")
    return ap


def main() -> None:
    ap = batch_options(__doc__, small="5k and 20k", full="100000 1000000")
    ap.add_argument("--single-thread", action="store_true",
                    help="hold numba, polars, OpenMP and BLAS to one thread in every measured child")
    ap.add_argument("--chunk-size", type=int,
                    help="also run leadlift with this --chunk-size (more memory, fewer chunks) and print that line")
    ap.add_argument("--child", choices=["batch", "leadlift", "floor", "peer"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--leads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--version", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        if args.child == "batch":
            out = make_batch(args.dir, args.leads, args.repo)
        elif args.child == "leadlift":
            out = run_leadlift(args.dir, args.repo, args.chunk_size)
        elif args.child == "floor":
            out = run_floor(args.dir, args.repo)
        else:
            out = run_peer(args.dir, args.repo, args.version)
        print(json.dumps(out))
        return

    import warnings

    import lightgbm
    import mlflow
    import shap

    warnings.filterwarnings("ignore", message="LightGBM binary classifier with TreeExplainer")

    sizes = args.sizes or ([5_000, 20_000] if args.small else [100_000, 1_000_000])
    data_root = args.data / f"leadlift_bench_score_{'small' if args.small else 'full'}"
    repo_dir = args.repo or data_root / "leadlift_bench_score_repo"
    repo, repro_seconds = trained_repo(repo_dir.resolve(), small=args.small)
    registry = json.loads((repo / "data" / "artifacts" / "registry.json").read_text())
    train = json.loads((repo / "reports" / "train.json").read_text())
    threshold = json.loads((repo / "data" / "artifacts" / "threshold.json").read_text())
    print(f"bench_score: lightgbm {lightgbm.__version__}, mlflow {mlflow.__version__}, shap {shap.__version__}, "
          f"{os.cpu_count()} cores")
    print(f"bundle: {repo}/data/artifacts ("
          + (f"dvc repro evaluate took {repro_seconds:.0f} s" if repro_seconds is not None else "reused")
          + f"); {train['best_iteration']} trees, {train['train_rows']:,} train rows; threshold score "
          f"{threshold.get('threshold_score')}; registered as models:/leadlift/{registry['version']}")
    results = [bench_size(n, repo, int(registry["version"]), data_root, single_thread=args.single_thread,
                          chunk_size=args.chunk_size)
               for n in sizes]
    if len(results) > 1:
        a, b = results[0], results[-1]
        scale = b["leads"] / a["leads"]
        print(f"\nmemory {a['leads']:,} -> {b['leads']:,} leads ({scale:.0f}x): leadlift peak RSS "
              f"{a['ours']['peak_rss_gb']:.2f} -> {b['ours']['peak_rss_gb']:.2f} GB "
              f"({b['ours']['peak_rss_gb'] / a['ours']['peak_rss_gb']:.2f}x); peer "
              f"{a['peer']['peak_rss_gb']:.2f} -> {b['peer']['peak_rss_gb']:.2f} GB "
              f"({b['peer']['peak_rss_gb'] / a['peer']['peak_rss_gb']:.2f}x)")
        print(
            f"time {a['leads']:,} -> {b['leads']:,} leads: leadlift "
            f"{b['ours']['seconds'] / a['ours']['seconds']:.1f}x, "
            f"peer {b['peer']['seconds'] / a['peer']['seconds']:.1f}x"
        )


if __name__ == "__main__":
    main()
