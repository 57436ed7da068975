"""`leadlift threshold`: a what-if on a trained bundle. Choose a threshold with any policy on the valid split and
compare it, on the test split, with the bundle's own threshold and the legacy 70 and 80 point cutoffs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from features.schema import has_legacy_score
from features.spec import to_matrix
from models.bundle import SQL
from models.calibration import to_score
from models.metrics import decision_table
from models.threshold import (
    LEGACY_CUTOFFS,
    choose_threshold,
    on_score_scale,
    period_weeks,
    policy_inputs,
    threshold_score,
)
from pipelines.bundle import load_bundle
from pipelines.io import BadInput, load_params, read_frame

COLUMNS = ("handoffs_per_week", "precision", "recall", "conversions", "expected_value")


def what_if(model: str | Path, features: Path, *, policy: str, overrides: dict[str, Any],
            params_path: Path | None = None) -> dict[str, Any]:
    """Rows of the comparison table, keyed by rule name; inputs from the params' calibrate section (params.yaml,
    `params_file`) plus overrides."""
    bundle = load_bundle(model)
    inputs = {**policy_inputs(load_params("calibrate", params_path)), **overrides}
    frame = read_frame(features)
    valid, test = (frame.filter(pl.col("split") == s) for s in ("valid", "test"))
    p_valid = bundle.probability(to_matrix(valid, bundle.spec))
    y_valid = valid["label"].to_numpy().astype(np.float64)
    has_legacy = has_legacy_score(frame)
    legacy_valid = int((valid["legacy_score"] >= LEGACY_CUTOFFS[0]).sum()) if has_legacy else None
    try:
        t = float(choose_threshold(y_valid, on_score_scale(p_valid), policy=policy, weeks=period_weeks(valid["t0"]),
                                   legacy_handoffs=legacy_valid, **inputs))
    except ValueError as e:  # a policy without its input (legacy_volume on a source with no legacy score)
        raise BadInput(None, f"policy {policy}: {e}") from None
    y = test["label"].to_numpy().astype(np.float64)
    p = bundle.probability(to_matrix(test, bundle.spec))
    weeks = period_weeks(test["t0"])
    kw = {"weeks": weeks, "value_per_conversion": float(inputs["value_per_conversion"]),
          "cost_per_handoff": float(inputs["cost_per_handoff"])}
    rows: dict[str, Any] = {
        f"{policy} (score >= {threshold_score(t)})": decision_table(y, to_score(p) >= threshold_score(t), **kw),
        f"bundle: {bundle.threshold['policy']} (score >= {bundle.threshold['threshold_score']})":
            decision_table(y, bundle.decide(p) == SQL, **kw),
    }
    if has_legacy:
        legacy = test["legacy_score"].fill_null(0).to_numpy()
        for c in LEGACY_CUTOFFS:
            rows[f"legacy >= {c} points"] = decision_table(y, legacy >= c, **kw)
    return {"policy": policy, "inputs": inputs, "threshold_probability": t, "test_weeks": weeks, "rows": rows}


def print_table(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"What-if on the test period ({result['test_weeks']:.1f} weeks): policy {result['policy']}")
    table.add_column("rule")
    for c in COLUMNS:
        table.add_column(c.replace("_", " "), justify="right")
    for name, row in result["rows"].items():
        table.add_row(name, f"{row['handoffs_per_week']:.1f}", f"{row['precision']:.3f}", f"{row['recall']:.3f}",
                      str(row["conversions"]), f"{row['expected_value']:,.0f}")
    console.print(table)
