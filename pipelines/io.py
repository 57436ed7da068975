"""Disk I/O shared by every stage: atomic writes, params, stage arguments, and exit code 2 for bad input."""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import yaml

from features.errors import BadInput

__all__ = ["BadInput", "atomic_path", "atomic_paths", "csv_safe", "exit_codes", "frame_writer", "json_text",
           "load_params", "params_file", "read_frame", "read_json", "safe_message", "scratch_dir", "stage_args",
           "write_frame", "write_json", "write_text"]

PARAMS_FILE = Path("params.yaml")
#: leadlift's own defaults: the params.yaml of the project it runs from (a clone, installed with `pip install -e .`).
DEFAULT_PARAMS = Path(__file__).resolve().parents[1] / PARAMS_FILE.name
#: Temporary files end with this, and carry their writer's pid: `.<name>.<pid>.<random>.leadlift-tmp`, so a later run
#: can tell a stale one (its writer was killed) from a live one (another writer is still at work) and remove only it.
TEMP_SUFFIX = ".leadlift-tmp"
#: A text cell starting with one of these is a formula to a spreadsheet (OWASP: CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def params_file(path: str | Path | None = None) -> Path:
    """The params file to read: the one given; else ./params.yaml (a project's, which DVC reads); else leadlift's own
    defaults, so that a command run in an export's own folder (`leadlift run-source`) starts from the documented
    defaults instead of stopping."""
    if path is not None:
        return Path(path)
    return PARAMS_FILE if PARAMS_FILE.exists() or not DEFAULT_PARAMS.is_file() else DEFAULT_PARAMS


def load_params(section: str | None = None, path: str | Path | None = None) -> dict[str, Any]:
    """Return the params (`params_file(path)`), or one section of them with the shared `base` inside."""
    file = params_file(path)
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
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[tuple[Path, ...]]:
    """One transaction for several outputs: a temporary path beside each; they replace their targets only when the
    whole block succeeds (in the order given, so put the file consumers wait for last), and none is replaced
    otherwise. Temporaries are removed on any exception and on SIGTERM; ones left by a killed earlier run (SIGKILL
    leaves no chance to clean) are removed when a later run writes the same target."""
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    with _removed_on_sigterm(temps):
        try:
            for target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                remove_stale_temps(target)
                temps.append(_temp_beside(target))
            yield tuple(temps)
            for tmp, target in zip(temps, targets, strict=True):
                os.replace(tmp, target)
        finally:
            for tmp in temps:
                if os.path.exists(tmp):
                    os.remove(tmp)


@contextmanager
def scratch_dir(beside: str | Path) -> Iterator[Path]:
    """A temporary folder beside `beside` (an output) for a run's intermediate files, such as the partitions of a big
    batch: on the output's disk, which the user chose for big files, not in a /tmp that may be memory. It is named
    like an `atomic_paths` temporary, so SIGTERM removes it and a later run writing the same output sweeps it up if a
    SIGKILL left it behind; it is removed when the block ends, however it ends."""
    target = Path(beside)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX))
    temps = [folder]
    with _removed_on_sigterm(temps):
        try:
            yield folder
        finally:
            _remove(folder)


def _remove(path: str | Path) -> bool:
    """Remove a temporary file or folder; False when it was already gone (another run removed it first)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
        return True
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    return True


def _temp_beside(target: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files owner-only; outputs should look like any other file
    return Path(tmp)


def remove_stale_temps(target: str | Path) -> list[Path]:
    """Remove temporaries of `target` whose writer is no longer running (killed mid-write); return them."""
    target = Path(target)
    prefix = f".{target.name}."
    removed = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    for name in names:
        if not (name.startswith(prefix) and name.endswith(TEMP_SUFFIX)):
            continue
        pid = name[len(prefix):-len(TEMP_SUFFIX)].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            if _remove(target.parent / name):  # a file, or a scratch folder (`scratch_dir`)
                removed.append(target.parent / name)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


#: Temporary files of the transactions running in this process, removed by the SIGTERM handler.
_LIVE_TEMPS: list[list[Path]] = []


@contextmanager
def _removed_on_sigterm(temps: list[Path]) -> Iterator[None]:
    """While a transaction runs, SIGTERM removes its temporary files and ends the process (exit 143). The handler
    does not raise: an exception raised from a signal handler lands in whatever Python code runs at that moment,
    which can be a callback inside polars, where it aborts the process instead of unwinding. Signal handlers belong
    to the main thread; elsewhere only the `finally` cleanup applies."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _LIVE_TEMPS.append(temps)
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if len(_LIVE_TEMPS) == 1 else None
    try:
        yield
    finally:
        del _LIVE_TEMPS[next(i for i, t in enumerate(_LIVE_TEMPS) if t is temps)]
        if not _LIVE_TEMPS:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _on_sigterm(signum: int, frame: Any) -> None:
    for temps in _LIVE_TEMPS:
        for tmp in temps:
            try:
                _remove(tmp)
            except OSError:
                pass
    os.write(2, b"terminated: no output was replaced; temporary files removed\n")
    os._exit(128 + signum)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON with sorted keys and a trailing newline, so identical content gives identical bytes."""
    write_text(path, json_text(obj))


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


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
    writer = frame_writer(Path(path))
    with atomic_path(path) as tmp:
        writer(df, tmp)


def frame_writer(path: Path) -> Callable[[pl.DataFrame, Path], None]:
    """The writer for `path`'s extension (Parquet, or CSV with cells made safe for spreadsheets); call it with the
    frame and the path to write, e.g. a temporary one from `atomic_paths`."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return lambda df, p: df.write_parquet(p, statistics=True)
    if suffix == ".csv":
        return lambda df, p: csv_safe(df).write_csv(p)
    raise BadInput(path, f"unsupported output extension {suffix!r}; expected .parquet or .csv")


FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def csv_safe(frame: FrameT) -> FrameT:
    """Text cells a spreadsheet would run as a formula (starting with =, +, -, @, tab or CR) get a leading `'`, as
    OWASP recommends for CSV injection. Every CSV leadlift writes goes through this; Parquet and JSONL keep the raw
    values (they are data, not a spreadsheet)."""
    schema = frame.collect_schema()
    text = [name for name, dtype in schema.items() if isinstance(dtype, pl.String | pl.Categorical | pl.Enum)]
    if not text:
        return frame
    cells = [pl.col(c).cast(pl.String) for c in text]
    return frame.with_columns(
        pl.when(cell.str.slice(0, 1).is_in(FORMULA_START)).then(pl.lit("'") + cell).otherwise(cell).alias(c)
        for c, cell in zip(text, cells, strict=True)
    )


def safe_message(error: BaseException) -> str:
    """The first line of an error from a library (polars quotes the offending text in backticks, which can be a whole
    row of someone's data), with every quoted value removed: messages must never echo a data row."""
    text = re.sub(r"`[^`]*`", "<value>", str(error), flags=re.DOTALL).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return first[:300]


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
