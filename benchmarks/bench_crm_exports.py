"""How close a mapping alone gets to the oracle on CRM-shaped exports (features.crm_export), at a realistic size.

    python benchmarks/bench_crm_exports.py                 # 50,000 leads per export, seeds 1-3
    python benchmarks/bench_crm_exports.py --small         # 8,000 leads, seed 3 (the size the tests use)
    python benchmarks/bench_crm_exports.py --leads 20000 --seeds 1 2 3 4 5
    python benchmarks/bench_crm_exports.py --compare sources/before   # also the mappings in that folder

For each style (HubSpot-, Salesforce-style) and seed: write the export as the CRM would (CSV files and the truth),
run `leadlift run-source` on sources/<style>.yaml (ingest, featurize, train, calibrate, evaluate, explain; no
MLflow), and print the test AUC, the oracle's AUC on the same test leads (the generator's true probabilities) and
their ratio, with the wall time of the run. The peer is the oracle itself: 1.0 is the best any model can do.
`--compare DIR` also runs DIR/<style>.yaml on the same export (e.g. the mappings the language allowed before).
Nothing is asserted here; tests/test_crm_exports.py asserts the 0.97 floor on the small size.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from features.crm_export import STYLES  # noqa: E402
from pipelines.crm import write_crm_export  # noqa: E402
from pipelines.realdata import run_source  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="8,000 leads, seed 3 (what the tests use)")
    ap.add_argument("--leads", type=int, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--compare", type=Path, default=None, help="also run DIR/<style>.yaml on each export")
    args = ap.parse_args()
    leads = args.leads or (8000 if args.small else 50_000)
    seeds = args.seeds or ([3] if args.small else [1, 2, 3])
    os.chdir(ROOT)
    print(f"load average {os.getloadavg()[0]:.2f}; {leads:,} leads per export; seeds {seeds}")
    folders = [ROOT / "sources", *([args.compare.resolve()] if args.compare else [])]
    ratios: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for style in STYLES:
                root = Path(tmp) / f"seed{seed}"
                write_crm_export(style, root / "data" / "crm" / style, leads=leads, seed=seed)
                for folder in folders:
                    mapping = folder / f"{style}.yaml"
                    label = str(mapping.relative_to(ROOT))
                    start = time.perf_counter()
                    with contextlib.redirect_stdout(io.StringIO()):
                        run_source(mapping, root / "report.json", root=root, track=False,
                                   console=Console(file=io.StringIO()))
                    secs = time.perf_counter() - start
                    test = json.loads((root / "report.json").read_text())["test"]
                    ratio = test["auc"] / test["oracle_auc"]
                    ratios.setdefault(label, []).append(ratio)
                    print(f"{label:28s} seed {seed}: test leads {test['leads']:,} ({test['conversions']:,} "
                          f"converted), AUC {test['auc']:.4f}, oracle {test['oracle_auc']:.4f}, ratio {ratio:.4f}, "
                          f"LR baseline {test['baseline_lr_auc']:.4f}; run-source {secs:.1f} s")
    for label, values in ratios.items():
        spread = f" (min {min(values):.4f}, max {max(values):.4f})" if len(values) > 1 else ""
        print(f"{label}: mean AUC / oracle AUC {statistics.mean(values):.4f}{spread}")


if __name__ == "__main__":
    main()
