"""The threshold-tuning notebook runs top to bottom on a freshly reproduced pipeline."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_threshold_tuning_notebook_runs(pipeline_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(ROOT / "notebooks" / "threshold_tuning.ipynb", as_version=4)
    monkeypatch.setenv("LEADLIFT_ROOT", str(pipeline_repo))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(pipeline_repo)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    last = "".join(str(o.get("text", "")) for o in nb.cells[-1].get("outputs", []))
    for policy in ("expected_value", "capacity", "precision_target", "recall_target", "legacy_volume"):
        assert policy in last
