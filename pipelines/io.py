"""Disk I/O shared by every stage: atomic writes, params, and the bad-input error (exit code 2)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import yaml

PARAMS_FILE = Path("params.yaml")


class BadInput(Exception):
    """A file-level problem with the input: the CLI prints it and exits 2."""

    def __init__(self, file: str | Path, what: str, *, column: str | None = None, row: int | None = None) -> None:
        self.file = str(file)
        self.column = column
        self.row = row
        self.what = what
        where = [f"file {self.file}"]
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {what}")


def load_params(section: str | None = None, path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Return params.yaml, or one section of it merged over nothing, plus the shared `base`."""
    params = yaml.safe_load(Path(path).read_text())
    if section is None:
        return params
    return {"base": params["base"], **params.get(section, {})}


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
    return json.loads(Path(path).read_text())


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
