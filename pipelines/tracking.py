"""MLflow tracking: the one place that talks to the tracking store.

Nothing here sets a tracking URI: MLflow reads MLFLOW_TRACKING_URI itself and otherwise uses its own default,
`sqlite:///mlflow.db` in the working directory (the repo root under DVC), so `mlflow ui` from the root shows every run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

EXPERIMENT = "leadlift"
MODEL_NAME = "leadlift"
CHAMPION = "champion"
#: The source whose models register under the plain MODEL_NAME (leadlift's own synthetic export).
DEFAULT_SOURCE = "synthetic"


def model_name(source: str | None) -> str:
    """One registered model per source: `leadlift` for the synthetic source, `leadlift-<name>` for any other, so
    `champion` is only ever compared with models of the same export."""
    if not source or source == DEFAULT_SOURCE:
        return MODEL_NAME
    return f"{MODEL_NAME}-{source}"


def data_hash(paths: Iterable[str | Path]) -> str:
    """sha256 over the bytes of the given files (folders: every file inside, in sorted order)."""
    h = hashlib.sha256()
    for path in paths:
        p = Path(path)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: MLflow params and metrics are flat."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def numeric_metrics(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a metrics dict, flattened with '_' so MLflow's UI sorts them well."""
    return {
        k.replace(".", "_"): float(v)
        for k, v in flatten(d, prefix).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def set_experiment() -> str:
    import mlflow

    return mlflow.set_experiment(EXPERIMENT).experiment_id
