"""How much of a real export's out-of-time AUC is the configuration, and how much is luck.

For one source mapping (its `params:` applied) this prints:
- rolling-origin AUCs inside the pre-test period (train on everything before a block, score the block), the only
  honest way to compare configurations without touching test;
- the test AUC of the mapping's configuration refit on train + valid under `--seeds` seeds, with feature_fraction
  as configured, at 0.8 and at 1.0 (seed-free), so a single figure can be put in its spread.

python benchmarks/real_stability.py --source sources/<name>.yaml [--seeds 20] [--blocks 5]

An analysis script, not a test: it reads the test split on purpose, to report the spread, never to choose.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from features.spec import categorical_indices, feature_names, to_matrix
from models.metrics import auc
from models.train import refit_gbm, train_gbm
from pipelines import ingest
from pipelines.featurize import featurize
from pipelines.io import read_json
from pipelines.realdata import section, source_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--blocks", type=int, default=5, help="rolling-origin blocks, each 10%% of the pre-test rows")
    args = ap.parse_args()
    params = source_params(args.source)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        interim = Path(tmp) / "interim"
        ingest.run(args.source, interim, report=Path(tmp) / "ingest.json", params=section(params, "ingest"))
        frame, spec, _ = featurize(
            pl.scan_parquet(interim / "leads.parquet"), pl.scan_parquet(interim / "events.parquet"),
            pl.scan_parquet(interim / "outcomes.parquet"), read_json(interim / "source.json"),
            section(params, "featurize"))
    tp = section(params, "train")
    names, cats = feature_names(spec), categorical_indices(spec)
    frame = frame.sort("t0", "lead_id")
    pre, test = frame.filter(pl.col("split") != "test"), frame.filter(pl.col("split") == "test")
    Xp, yp = to_matrix(pre, spec), pre["label"].to_numpy().astype(float)
    Xt, yt = to_matrix(test, spec), test["label"].to_numpy().astype(float)
    n = len(yp)
    print(f"{args.source}: {n} pre-test rows (rate {yp.mean():.3f}), {len(yt)} test rows (rate {yt.mean():.3f})")
    valid = (pre["split"] == "valid").to_numpy()
    first = train_gbm(Xp[~valid], yp[~valid], Xp[valid], yp[valid], feature_names=names, categorical=cats, params=tp,
                      seed=int(params["base"]["seed"]))
    trees = first.current_iteration()
    print(f"rolling origin in the pre-test period ({trees} trees, as chosen on valid; train on all before a block):")
    for k in range(args.blocks, 0, -1):
        a, b = int(n * (1 - 0.1 * k)), int(n * (1 - 0.1 * (k - 1)))
        m = refit_gbm(Xp[:a], yp[:a], feature_names=names, categorical=cats, params=tp, seed=42, num_trees=trees)
        print(f"  rows {a}-{b} (rate {yp[a:b].mean():.3f}): AUC {auc(yp[a:b], m.predict(Xp[a:b], raw_score=True)):.4f}")
    for ff in sorted({float(tp.get("feature_fraction", 1.0)), 0.8, 1.0}):
        fit = {**tp, "feature_fraction": ff}
        aucs = [auc(yt, refit_gbm(Xp, yp, feature_names=names, categorical=cats, params=fit, seed=s,
                                  num_trees=trees).predict(Xt, raw_score=True)) for s in range(1, args.seeds + 1)]
        print(f"test AUC, refit on train + valid, {trees} trees, feature_fraction {ff}, seeds 1-{args.seeds}: "
              f"mean {np.mean(aucs):.4f} sd {np.std(aucs):.4f} min {min(aucs):.4f} max {max(aucs):.4f}")


if __name__ == "__main__":
    main()
