"""Shared fixtures: a small copy of the repo on which the real `dvc repro` runs once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
#: What a fresh clone holds that the pipeline needs (data/ and the MLflow store are made by the run).
REPO_PARTS = ("features", "models", "pipelines", "sources", "notebooks", "dvc.yaml", "params.yaml", "pyproject.toml",
              ".gitignore", ".dvc/config", ".dvc/.gitignore")
SMALL = {"generate": {"leads": 4000, "new_leads": 400}, "calibrate": {"bootstrap": 50}}

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.exists(), reason=f"the shared real data sets are not beside the repo ({SHARED_DATA})"
)


def tool_env(cwd: Path | None = None) -> dict[str, str]:
    """An environment whose PATH finds this interpreter's `python`, `dvc` and `leadlift`; no inherited MLflow URI."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONHASHSEED"] = "0"
    return env


def run(cmd: list[str], cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def copy_repo(dest: Path, overrides: dict[str, dict[str, object]], *, root: Path = ROOT) -> Path:
    """A fresh git repo at `dest` holding what a clone of `root` (default: this checkout) needs, with params
    overridden by section."""
    for part in REPO_PARTS:
        src = root / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        elif src.exists():
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / part)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dest)
    run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A"], dest)
    run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "copy"], dest)
    return dest


def copy_of(repo: Path, dest: Path) -> Path:
    """A full copy of a reproduced repo (data, lock, MLflow store), for tests that change it."""
    shutil.copytree(repo, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def pipeline_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small copy of the repo after one real `dvc repro` (4,000 synthetic leads)."""
    repo = copy_repo(tmp_path_factory.mktemp("repo"), SMALL)
    run([sys.executable, "-m", "dvc", "repro"], repo, timeout=900)
    yield repo
