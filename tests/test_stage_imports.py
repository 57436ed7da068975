"""Each stage loads only the libraries it uses, so a threshold experiment stays cheap: LightGBM (with scikit-learn and
pandas, about 1.5 s a process) only where a model is trained, scikit-learn only where something is fitted or a
curve drawn, MLflow only where a stage logs, matplotlib only where a figure is drawn. Checked in fresh interpreters
(`sys.modules`), so a top-level import added anywhere in a stage's code fails here rather than silently costing
every experiment again."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, copy_of, tool_env

#: Libraries a stage must not load when it is imported (lazy imports inside functions are allowed to load later).
NOT_ON_IMPORT: dict[str, set[str]] = {
    "generate": {"lightgbm", "sklearn", "mlflow", "matplotlib", "shap", "numba"},
    "ingest": {"lightgbm", "sklearn", "mlflow", "matplotlib", "shap", "numba"},
    "featurize": {"lightgbm", "sklearn", "mlflow", "matplotlib", "shap", "numba"},
    "train": {"mlflow", "matplotlib", "shap"},
    "calibrator": {"lightgbm", "sklearn", "mlflow", "matplotlib", "shap"},
    "calibrate": {"lightgbm", "sklearn", "mlflow", "matplotlib", "shap", "numba", "pandas"},
    "explain": {"lightgbm", "sklearn", "mlflow", "matplotlib", "shap", "pandas"},
    "assess": {"lightgbm", "sklearn", "mlflow", "shap"},
    "evaluate": {"lightgbm", "sklearn", "mlflow", "shap"},
    "score": {"lightgbm", "sklearn", "mlflow", "matplotlib", "shap", "pandas"},
}
#: Libraries each stage of a threshold experiment must not load over its whole run (evaluate is the one that logs).
NOT_WHEN_RUN: dict[str, set[str]] = {
    "calibrate": {"lightgbm", "sklearn", "mlflow", "matplotlib", "shap", "numba", "pandas"},
    "explain": {"lightgbm", "sklearn", "mlflow", "matplotlib", "shap", "pandas"},
    "evaluate": {"lightgbm", "sklearn", "shap"},
    "score": {"lightgbm", "sklearn", "mlflow", "matplotlib", "shap", "pandas"},
}
#: Runs `python -m <module> ARGS` as `python -m` does, then prints the top-level packages it loaded.
RUN_AND_LIST = (
    "import json, runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    print('MODULES ' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
)


def stage_args(repo: Path) -> dict[str, list[str]]:
    """Each stage's module and arguments, as dvc.yaml runs it."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    return {name: shlex.split(str(stage["cmd"]))[2:] for name, stage in stages.items()}


def loaded(code: str, *args: str, cwd: Path) -> set[str]:
    res = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=tool_env(), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(x for x in reversed(res.stdout.splitlines()) if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def test_every_stage_has_an_import_budget() -> None:
    assert set(NOT_ON_IMPORT) == set(stage_args(ROOT))
    assert set(NOT_WHEN_RUN) == {"calibrate", "explain", "evaluate", "score"}  # what a threshold experiment re-runs


@pytest.mark.parametrize("stage", sorted(NOT_ON_IMPORT))
def test_importing_a_stage_loads_no_library_it_does_not_use(stage: str) -> None:
    modules = loaded(f"import pipelines.{stage}, json, sys; "
                     "print('MODULES ' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))", cwd=ROOT)
    assert {"pipelines", "polars"} <= modules
    extra = sorted(modules & NOT_ON_IMPORT[stage])
    assert not extra, f"importing pipelines.{stage} loads {extra}"


def test_a_threshold_experiments_stages_run_without_the_libraries_they_do_not_use(pipeline_repo: Path,
                                                                                   tmp_path: Path) -> None:
    """Each stage a threshold experiment re-runs, run for real as dvc.yaml runs it (same inputs, same outputs):
    no LightGBM or scikit-learn in any of them, MLflow only in evaluate, no numba where no model scores."""
    repo = copy_of(pipeline_repo, tmp_path / "repo")
    commands = stage_args(repo)
    for stage, forbidden in NOT_WHEN_RUN.items():
        modules = loaded(RUN_AND_LIST, *commands[stage], cwd=repo)
        assert {"polars", "numpy"} <= modules  # the stage really ran its code
        assert not modules & forbidden, f"the {stage} stage loaded {sorted(modules & forbidden)}"
    assert "mlflow" in loaded(RUN_AND_LIST, *commands["assess"], cwd=repo)  # the check can see a lazy import
