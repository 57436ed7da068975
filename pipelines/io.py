"""Disk I/O shared by every stage: atomic writes, params, stage arguments, and exit code 2 for bad input."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import yaml

from features.errors import BadInput

__all__ = ["BadInput", "atomic_path", "exit_codes", "load_params", "read_frame", "read_json", "stage_args",
           "write_frame", "write_json", "write_text"]

PARAMS_FILE = Path("params.yaml")


def load_params(section: str | None = None, path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Return params.yaml, or one section of it with the shared `base` inside."""
    file = Path(path)
    try:
        params = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise BadInput(file, "params file not found (run from the project root, or pass --params)") from None
    except yaml.YAMLError as e:
        raise BadInput(file, f"not valid YAML: {e}") from None
    if not isinstance(params, dict) or "base" not in params:
        raise BadInput(file, "params must be a mapping with a `base` section")
    if section is None:
        return params
    return {"base": params["base"], **(params.get(section) or {})}


F = TypeVar("F", bound=Callable[..., Any])


def exit_codes(fn: F) -> F:
    """Bad input -> one line on stderr naming file, column and row, and exit 2. Every stage main and CLI command
    runs under this, so "bad input" means the same exit code everywhere (0 done, 1 failed, 2 bad input)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BadInput as e:
            print(f"bad input: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]


def stage_args(argv: list[str] | None, doc: str | None, *paths: str) -> argparse.Namespace:
    """A stage's command line: every path is a required option (dvc.yaml is the one place that names them), plus
    `--params` (default params.yaml). Option `--valid-margins` arrives as attribute `valid_margins`."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in paths:
        ap.add_argument(f"--{name}", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=PARAMS_FILE, help="params file (default: params.yaml)")
    return ap.parse_args(argv)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files owner-only; outputs should look like any other file
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON with sorted keys and a trailing newline, so identical content gives identical bytes."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    """Parsed JSON; a missing or broken file is bad input naming the file, never a bare JSONDecodeError."""
    file = Path(path)
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise BadInput(file, "not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(file, f"not valid JSON: {e}") from None


def read_frame(path: str | Path) -> pl.DataFrame:
    """A Parquet file a stage wrote; missing or unreadable is bad input naming the file (run the stage before)."""
    file = Path(path)
    if not file.is_file():
        raise BadInput(file, "not found (run the stage that writes it first: dvc repro)")
    try:
        return pl.read_parquet(file)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise BadInput(file, f"not a readable Parquet file: {str(e).strip().splitlines()[0]}") from None


def write_frame(df: pl.DataFrame, path: str | Path) -> None:
    """Write Parquet or CSV, chosen by the extension, atomically."""
    writer = _writer_for(Path(path))
    with atomic_path(path) as tmp:
        writer(df, tmp)


def _writer_for(path: Path) -> Callable[[pl.DataFrame, Path], None]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return lambda df, p: df.write_parquet(p, statistics=True)
    if suffix == ".csv":
        return lambda df, p: df.write_csv(p)
    raise BadInput(path, f"unsupported output extension {suffix!r}; expected .parquet or .csv")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
