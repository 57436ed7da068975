"""Benchmark: leadlift's exact TreeSHAP kernel (models.treeshap) against LightGBM's pred_contrib and peers.

    python benchmarks/bench_explain.py [--small]

Trains boosters on synthetic data (numeric with NaNs; numeric plus native categoricals), then explains the
same held-out rows with each path and prints rows/s, the ratio to `pred_contrib` measured in this process,
and the max |difference| from `pred_contrib`. leadlift and `pred_contrib` are timed in alternating chunks so
both see the same machine load. Also: the numba compile time (first call with an empty cache, in a child
process), the first call with a warm cache, the build time, and each path's peak RSS in a fresh child process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

N_FEATURES = 40
CAT_COLUMNS = (36, 37, 38, 39)
CAT_LEVELS = (5, 12, 40, 120)
METHODS = ("leadlift", "pred_contrib", "shap", "fasttreeshap", "woodelf")
LABELS = {
    "leadlift": "leadlift TreeShap",
    "pred_contrib": "LightGBM pred_contrib",
    "shap": "shap.TreeExplainer",
    "fasttreeshap": "fasttreeshap-fixed v2",
    "woodelf": "woodelf-explainer",
}


@dataclass(frozen=True)
class Size:
    train_rows: int
    explain_rows: int
    shap_rows: int
    rss_rows: int
    trees: int
    chunks: int


FULL = Size(train_rows=200_000, explain_rows=50_000, shap_rows=5_000, rss_rows=10_000, trees=500, chunks=10)
SMALL = Size(train_rows=20_000, explain_rows=5_000, shap_rows=1_000, rss_rows=2_000, trees=100, chunks=5)


@dataclass(frozen=True)
class Result:
    method: str
    rows: int
    seconds: float
    cpu_seconds: float
    max_diff: float | None
    max_diff_no_nan: float | None
    error: str | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def make_data(n: int, *, categorical: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic lead-like data: 40 numeric features with ~5 % NaN; optionally 4 categorical codes with NaN."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[rng.random(X.shape) < 0.05] = np.nan
    filled = np.nan_to_num(X)
    logit = filled[:, :10] @ np.linspace(1.0, 0.1, 10) + np.sin(2 * filled[:, 10]) + filled[:, 11] * filled[:, 12]
    if categorical:
        for col, levels in zip(CAT_COLUMNS, CAT_LEVELS, strict=True):
            codes = rng.integers(0, levels, size=n).astype(np.float64)
            effect = rng.normal(scale=0.8, size=levels)
            logit = logit + effect[codes.astype(int)]
            codes[rng.random(n) < 0.05] = np.nan
            X[:, col] = codes
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    return X, y


def train(
    X: np.ndarray, y: np.ndarray, *, trees: int, num_leaves: int, max_depth: int, categorical: bool
) -> lgb.Booster:
    params = {
        "objective": "binary",
        "num_leaves": num_leaves,
        "max_depth": max_depth,
        "verbosity": -1,
        "num_threads": 2,
        "seed": 7,
        "deterministic": True,
        "force_row_wise": True,
    }
    names = [f"f{i}" for i in range(X.shape[1])]
    cats = list(CAT_COLUMNS) if categorical else []
    data = lgb.Dataset(X, y, feature_name=names, categorical_feature=cats or "auto")
    return lgb.train(params, data, num_boost_round=trees)


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_cores(seconds: float = 2.0) -> float:
    """Cores busy on the whole machine (all processes) over a short idle wait: load we do not control."""

    def busy() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values) - values[3] - values[4], sum(values)

    try:
        b0, _ = busy()
        time.sleep(seconds)
        b1, _ = busy()
    except OSError:
        return float("nan")
    return (b1 - b0) / os.sysconf("SC_CLK_TCK") / seconds


def explainer_for(method: str, booster: lgb.Booster) -> Callable[[np.ndarray], np.ndarray]:
    """A function X -> contributions (n, F) or (n, F+1) for one path; raises when the path cannot."""
    if method == "leadlift":
        from models.treeshap import TreeShap

        ts = TreeShap.from_booster(booster)
        return ts.contributions
    if method == "pred_contrib":
        return lambda X: booster.predict(X, pred_contrib=True, num_threads=2)
    if method == "shap":
        import shap

        shap_explainer = shap.TreeExplainer(booster)
        return lambda X: _single_output(shap_explainer.shap_values(X, check_additivity=False))
    if method == "fasttreeshap":
        import fasttreeshap_fixed

        fast = fasttreeshap_fixed.TreeExplainer(booster, algorithm="v2", n_jobs=2)
        return lambda X: _single_output(fast.shap_values(X, check_additivity=False))
    if method == "woodelf":
        import pandas as pd
        from woodelf.explainer import WoodelfExplainer

        wood = WoodelfExplainer(booster)
        names = booster.feature_name()
        return lambda X: np.asarray(wood.shap_values(pd.DataFrame(X, columns=names), verbose=False), dtype=np.float64)
    raise ValueError(method)


def _single_output(values: Any) -> np.ndarray:
    if isinstance(values, list):
        values = values[-1]
    return np.asarray(values, dtype=np.float64)


def max_diff(values: np.ndarray, reference: np.ndarray, rows: np.ndarray | None = None) -> float:
    """Max |difference| on the columns both have (third parties give no bias column), optionally on some rows."""
    cols = min(values.shape[1], reference.shape[1])
    diff = np.abs(values[:, :cols] - reference[:, :cols])
    if rows is not None:
        diff = diff[rows]
    return float(diff.max()) if diff.size else float("nan")


def time_call(fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray) -> tuple[np.ndarray, float, float]:
    c0, t0 = cpu_now(), time.perf_counter()
    out = fn(X)
    return out, time.perf_counter() - t0, cpu_now() - c0


def run_section(title: str, *, size: Size, num_leaves: int, max_depth: int, categorical: bool, rss: bool) -> None:
    X_all, y_all = make_data(size.train_rows + size.explain_rows, categorical=categorical, seed=11)
    X_train, y_train = X_all[: size.train_rows], y_all[: size.train_rows]
    X = np.ascontiguousarray(X_all[size.train_rows :])
    print(f"\n== {title} ==")
    t0 = time.perf_counter()
    booster = train(
        X_train, y_train, trees=size.trees, num_leaves=num_leaves, max_depth=max_depth, categorical=categorical
    )
    dump = booster.dump_model()["tree_info"]
    depths = [_max_depth(t["tree_structure"]) for t in dump]
    print(
        f"model: {booster.num_trees()} trees, num_leaves {num_leaves}, max_depth {max_depth}, {N_FEATURES} features"
        f"{' (4 native categorical)' if categorical else ''}, {size.train_rows:,} train rows, "
        f"deepest tree {max(depths)}; trained in {time.perf_counter() - t0:.1f} s"
    )
    from models.treeshap import TreeShap

    t0 = time.perf_counter()
    TreeShap.from_booster(booster).contributions(X[:4])
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ts = TreeShap.from_booster(booster)
    build_s = time.perf_counter() - t0
    print(
        f"leadlift: from_booster {build_s:.3f} s (model_to_string, parse, tables: {ts.table_bytes / 2**20:.1f} MiB); "
        f"first from_booster + call in this process {first_s:.2f} s (loads or compiles the kernels)"
    )

    # leadlift and pred_contrib in alternating chunks of the same rows.
    ours_fn = explainer_for("leadlift", booster)
    ref_fn = explainer_for("pred_contrib", booster)
    ours_parts, ref_parts = [], []
    ours_t = ref_t = ours_c = ref_c = 0.0
    for chunk in np.array_split(np.arange(len(X)), size.chunks):
        Xc = X[chunk]
        out, wall, cpu = time_call(ref_fn, Xc)
        ref_parts.append(out)
        ref_t, ref_c = ref_t + wall, ref_c + cpu
        out, wall, cpu = time_call(ours_fn, Xc)
        ours_parts.append(out)
        ours_t, ours_c = ours_t + wall, ours_c + cpu
    reference = np.vstack(ref_parts)
    ours = np.vstack(ours_parts)
    complete = ~np.isnan(X).any(axis=1)
    results = [
        Result("leadlift", len(X), ours_t, ours_c, max_diff(ours, reference), max_diff(ours, reference, complete)),
        Result("pred_contrib", len(X), ref_t, ref_c, 0.0, 0.0),
    ]
    additivity = float(np.abs(ours.sum(axis=1) - booster.predict(X, raw_score=True)).max())
    bias_diff = float(np.abs(ours[:, -1] - reference[:, -1]).max())
    for method in ("shap", "fasttreeshap", "woodelf"):
        rows = size.shap_rows if method == "shap" else len(X)
        results.append(_run_peer(method, booster, X[:rows], reference[:rows], complete[:rows]))
    _print_results(results, size=size)
    print(f"leadlift: bias column max |diff| {bias_diff:.1e}; additivity max |row sum - raw predict| {additivity:.1e}")
    if rss:
        _print_rss(booster, X, size=size, categorical=categorical)


def _run_peer(method: str, booster: lgb.Booster, X: np.ndarray, reference: np.ndarray, complete: np.ndarray) -> Result:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn = explainer_for(method, booster)
            out, wall, cpu = time_call(fn, X)
        return Result(method, len(X), wall, cpu, max_diff(out, reference), max_diff(out, reference, complete))
    except Exception as exc:  # a peer that cannot explain this model is a result, not a crash
        message = " ".join(str(exc).split())[:90] or type(exc).__name__
        return Result(method, len(X), 0.0, 0.0, None, None, error=f"{type(exc).__name__}: {message}")


def _print_results(results: list[Result], *, size: Size) -> None:
    base = next(r for r in results if r.method == "pred_contrib").rows_per_s
    print(
        f"{'path':<24}{'rows':>8}{'rows/s':>10}{'x pred_contrib':>16}{'cpu/wall':>10}"
        "  max|diff| vs pred_contrib (all rows / rows without NaN)"
    )
    for r in results:
        if r.error:
            print(f"{LABELS[r.method]:<24}{r.rows:>8,}{'-':>10}{'-':>16}{'-':>10}  fails: {r.error}")
            continue
        ratio = r.rows_per_s / base
        diff = "reference" if r.method == "pred_contrib" else f"{r.max_diff:.1e} / {r.max_diff_no_nan:.1e}"
        print(
            f"{LABELS[r.method]:<24}{r.rows:>8,}{r.rows_per_s:>10,.0f}{ratio:>16.1f}"
            f"{r.cpu_seconds / r.seconds:>10.2f}  {diff}"
        )
    print(
        f"(shap.TreeExplainer timed on the first {size.shap_rows:,} rows, diff on those rows; for a LightGBM "
        "Booster it calls pred_contrib itself. Peers' diffs cover the feature columns.)"
    )


def _max_depth(node: dict[str, Any], depth: int = 0) -> int:
    if "split_index" not in node:
        return depth
    return max(_max_depth(node["left_child"], depth + 1), _max_depth(node["right_child"], depth + 1))


# --------------------------------------------------------------------------------------------------
# Child processes: peak RSS per path, numba compile time


def _child_main(args: argparse.Namespace) -> None:
    """Load the model and rows, run one path once, print JSON with RSS before/after and timings."""
    booster = lgb.Booster(model_file=args.model)
    X = np.load(args.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        fn = explainer_for(args.child, booster)
        fn(X[:2])  # imports, numba first call, explainer set-up
        first = time.perf_counter() - t0
        rss_before = _rss_now_mib()
        t0 = time.perf_counter()
        fn(X)
        wall = time.perf_counter() - t0
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec.
    peak = _status_mib("VmHWM:")
    print(json.dumps({"first_s": first, "rss_before": rss_before, "peak": peak, "wall": wall}))


def _rss_now_mib() -> float:
    return _status_mib("VmRSS:")


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(method: str, model: Path, data: Path, env: dict[str, str] | None = None) -> dict[str, float] | str:
    cmd = [sys.executable, __file__, "--child", method, "--model", str(model), "--data", str(data)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return last[:100]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print_rss(booster: lgb.Booster, X: np.ndarray, *, size: Size, categorical: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.txt"
        booster.save_model(str(model))
        print(f"peak RSS of a fresh child process explaining {size.rss_rows:,} rows (shap: {size.shap_rows:,}):")
        for method in METHODS:
            if categorical and method in ("fasttreeshap", "woodelf"):
                continue
            rows = min(size.rss_rows, size.shap_rows) if method == "shap" else size.rss_rows
            data = Path(tmp) / f"X_{rows}.npy"
            np.save(data, X[:rows])
            got = _child(method, model, data)
            if isinstance(got, str):
                print(f"  {LABELS[method]:<24} fails: {got}")
                continue
            print(
                f"  {LABELS[method]:<24} peak {got['peak']:7.0f} MiB"
                f"   after load and set-up {got['rss_before']:7.0f} MiB"
                f"   (+{got['peak'] - got['rss_before']:.0f} MiB while explaining)"
            )


def print_compile_times(size: Size) -> None:
    """First call of the kernel in a fresh process: with an empty numba cache (compiles), then warm."""
    X, y = make_data(5_000, categorical=True, seed=3)
    booster = train(X, y, trees=20, num_leaves=31, max_depth=8, categorical=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.txt"
        booster.save_model(str(model))
        data = Path(tmp) / "X.npy"
        np.save(data, X[:1000])
        env = {**os.environ, "NUMBA_CACHE_DIR": str(Path(tmp) / "numba_cache")}
        cold = _child("leadlift", model, data, env)
        warm = _child("leadlift", model, data, env)
    if isinstance(cold, str) or isinstance(warm, str):
        print(f"numba compile: child failed: {cold if isinstance(cold, str) else warm}")
        return
    print(
        f"numba: first from_booster + contributions in a fresh process: {cold['first_s']:.1f} s with an empty "
        f"cache (compile), {warm['first_s']:.2f} s with the cache warm (load)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick run: 20k train rows, 5k rows, 100 trees")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child_main(args)
        return
    size = SMALL if args.small else FULL
    print(f"bench_explain ({'small' if args.small else 'full'}): {os.cpu_count()} cores, lightgbm {lgb.__version__}")
    print(f"machine load before starting (all processes, 2 s idle wait): {machine_busy_cores():.2f} busy cores")
    print_compile_times(size)
    run_section(
        f"A. numeric: {size.trees} trees, num_leaves 31, max_depth 8",
        size=size,
        num_leaves=31,
        max_depth=8,
        categorical=False,
        rss=True,
    )
    run_section(
        f"B. numeric + native categoricals: {size.trees} trees, num_leaves 31, max_depth 8",
        size=size,
        num_leaves=31,
        max_depth=8,
        categorical=True,
        rss=False,
    )
    run_section(
        f"C. leadlift's default shape, with categoricals: {size.trees} trees, num_leaves 15, max_depth 5",
        size=size,
        num_leaves=15,
        max_depth=5,
        categorical=True,
        rss=False,
    )
    print(f"\nmachine load after (all processes): {machine_busy_cores():.2f} busy cores; peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
