"""The code base stays lint-clean: ruff with the rules in pyproject.toml (pyflakes, pycodestyle, bugbear, isort)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _ruff() -> list[str] | None:
    exe = Path(sys.executable).parent / "ruff"
    found = str(exe) if exe.exists() else shutil.which("ruff")
    return [found] if found else None


@pytest.mark.skipif(_ruff() is None, reason="ruff is not installed (pip install -e '.[test]' brings it)")
def test_the_code_passes_ruff() -> None:
    cmd = _ruff()
    assert cmd is not None
    res = subprocess.run([*cmd, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
