"""dvc.yaml is true to the code: every stage depends on exactly the project code its command imports, so editing a
module re-runs the stages that use it (and `dvc status` never calls stale metrics up to date)."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PACKAGES = ("features", "models", "pipelines")
#: Data files a module reads through importlib.resources, e.g. `resources.files("models").joinpath("reasons.yaml")`.
_RESOURCE = re.compile(r"""resources\.files\(["'](\w+)["']\)\.joinpath\(["']([^"']+)["']\)""")
#: Files a module hands to another tool by path, e.g. `Path(__file__).with_name("mlflow_model.py")`.
_SIBLING = re.compile(r"""Path\(__file__\)\.with_name\(["']([^"']+)["']\)""")


def module_file(name: str) -> Path | None:
    """The project file of module `name` (a package's __init__.py), or None for a module outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Every project module `path` imports anywhere (lazy imports inside functions included: they run too)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from pipelines import tracking`
    out: set[str] = set()
    for name in found:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b runs a/__init__.py first
            out.add(".".join(parts[:i]))
    return out


def code_closure(module: str) -> set[str]:
    """Repo-relative files a `python -m module` run can execute or read: its transitive project imports, the package
    __init__ files they pass through, packaged data read by resources, and sibling files handed on by path."""
    todo, seen = [module], set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        files.add(path)
        text = path.read_text()
        files |= {ROOT / pkg / f for pkg, f in _RESOURCE.findall(text)}
        sibling_modules = [f"{name.rsplit('.', 1)[0]}.{f.removesuffix('.py')}" for f in _SIBLING.findall(text)]
        todo += sorted(_imports(path)) + sibling_modules
    return {str(f.relative_to(ROOT)) for f in files}


def stage_module(cmd: str) -> str:
    args = shlex.split(cmd)
    assert args[:2] == ["python", "-m"], f"a stage runs `python -m pipelines.<stage>`, got {cmd!r}"
    return args[2]


def stages() -> dict[str, dict[str, object]]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_list_exactly_the_code_it_imports(name: str) -> None:
    stage = stages()[name]
    module = stage_module(str(stage["cmd"]))
    assert module == f"pipelines.{name}", "one name per stage: stage, module and params section"
    needed = code_closure(module)
    deps = {str(d) for d in stage["deps"]}  # type: ignore[union-attr]
    code_deps = {d for d in deps if d.split("/")[0] in PACKAGES}
    missing = sorted(needed - code_deps)
    stale = sorted(code_deps - needed)
    assert not missing, f"stage {name} imports code its deps leave out: {missing}"
    assert not stale, f"stage {name} lists code it does not import: {stale}"


def test_the_closure_follows_lazy_and_from_imports() -> None:
    # train imports tracking only as `from pipelines import tracking`, and mlflow lazily inside a function.
    closure = code_closure("pipelines.train")
    assert "pipelines/tracking.py" in closure and "pipelines/__init__.py" in closure
    assert "models/__init__.py" in closure
    assert "models/reasons.yaml" in code_closure("pipelines.explain")
