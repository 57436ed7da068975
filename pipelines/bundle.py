"""Load a trained bundle from a folder or from the MLflow registry (`models:/leadlift@champion`), and seal a bundle
with its manifest (the sha256 of every file), so a truncated or changed file is refused before anything parses it.

Neither LightGBM nor MLflow is imported here unless asked for: a bundle loads from text and JSON (models.bundle), and
MLflow only when a `models:/` or `runs:/` URI is resolved."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from models.bundle import (
    BUNDLE_FILES,
    MANIFEST,
    MARGIN_FILES,
    OPTIONAL_FILES,
    Bundle,
    bundle_file_names,
    bundle_from_parts,
    model_text_problem,
)
from pipelines.io import BadInput, read_json, safe_message, write_json

DEFAULT_BUNDLE = Path("data/artifacts")
MANIFEST_VERSION = 1


def read_model_text(file: Path) -> str:
    """A LightGBM model file's text, checked whole before anything parses it (a truncated file would abort LightGBM,
    and must never reach the kernel either)."""
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise BadInput(file, "model file not found (run the train stage first)") from None
    except UnicodeDecodeError:
        raise BadInput(file, "not a LightGBM model text (not UTF-8 text)") from None
    problem = model_text_problem(text)
    if problem:
        raise BadInput(file, problem)
    return text


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: str | Path) -> dict[str, Any]:
    """Seal a complete bundle: `manifest.json` with the sha256 and size of each bundle file in `folder` (the
    required ones and any optional ones present). Written by whatever completes a bundle (the calibrate stage,
    `run-source`, the copy evaluate logs to MLflow)."""
    folder = Path(folder)
    present = {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
    names = bundle_file_names(present)
    missing = [n for n in names if n not in present]
    if missing:
        raise BadInput(folder, f"cannot seal an incomplete bundle: missing {', '.join(missing)}")
    manifest = {"version": MANIFEST_VERSION,
                "files": {n: {"sha256": sha256_file(folder / n), "bytes": (folder / n).stat().st_size} for n in names}}
    write_json(folder / MANIFEST, manifest)
    return manifest


def verify_bundle(folder: str | Path) -> bool:
    """Check every file the manifest lists against its size and sha256 (True), before any of them is parsed; False
    when the folder has no manifest (a bundle sealed before manifests existed: its files are still checked for
    truncation and bad JSON as they load). A mismatch, a missing file or a broken manifest is BadInput naming it."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.exists():
        return False
    manifest = read_json(path)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, dict) and isinstance(v.get("sha256"), str)
                                              for v in files.values()):
        raise BadInput(path, "not a bundle manifest: expected {\"files\": {name: {\"sha256\": ..., \"bytes\": ...}}}")
    present = {p.name for p in folder.iterdir() if p.is_file()}
    unlisted = [n for n in bundle_file_names(present) if n not in files]
    if unlisted:  # a bundle file the seal does not cover (say a scorer.json dropped in later) is refused
        raise BadInput(path, f"the manifest does not list {', '.join(unlisted)}")
    for name, entry in sorted(files.items()):
        if os.path.basename(name) != name or name in (".", ".."):
            raise BadInput(path, f"the manifest names a file outside the bundle folder: {name!r}")
        file = folder / name
        if not file.is_file():
            raise BadInput(file, "listed in the bundle manifest but missing")
        size = file.stat().st_size
        if entry.get("bytes") is not None and size != entry["bytes"]:
            raise BadInput(file, f"truncated or changed since the bundle was sealed: {size} bytes, the manifest says "
                                 f"{entry['bytes']} (re-run calibrate, or copy the whole bundle again)")
        if sha256_file(file) != entry["sha256"]:
            raise BadInput(file, "changed since the bundle was sealed: its sha256 does not match the manifest "
                                 "(re-run calibrate, or copy the whole bundle again)")
    return True


def same_margins(a: str | Path, b: str | Path) -> bool:
    """Whether two sealed bundle folders score every lead with the same raw margin: their manifests (each checked
    against its files) give the same sha256 for every margin file (MARGIN_FILES), so neither needs to be loaded."""
    if not (verify_bundle(a) and verify_bundle(b)):
        return False
    files = [read_json(Path(folder) / MANIFEST)["files"] for folder in (a, b)]
    return all(files[0].get(name, {}).get("sha256") == files[1].get(name, {}).get("sha256") for name in MARGIN_FILES)


def load_bundle_dir(path: str | Path) -> Bundle:
    """Read a bundle folder: plain text and JSON only, so loading runs no pickled code. The manifest is checked
    first; then each file must parse (a broken one is BadInput naming it, never a bare JSONDecodeError)."""
    folder = Path(path)
    if not folder.is_dir():
        raise BadInput(folder, "bundle folder not found (run the pipeline first: dvc repro)")
    missing = [name for key, name in BUNDLE_FILES.items()
               if key not in OPTIONAL_FILES and not (folder / name).exists()]
    if missing:
        raise BadInput(folder, f"not a leadlift bundle: missing {', '.join(missing)}")
    verify_bundle(folder)
    text = read_model_text(folder / BUNDLE_FILES["model"])
    parts = {key: _json_object(folder / BUNDLE_FILES[key]) for key in ("spec", "calibrator", "threshold")}
    scorer = folder / BUNDLE_FILES["scorer"]
    try:
        bundle = bundle_from_parts(text, parts["spec"], parts["calibrator"], parts["threshold"],
                                   _json_object(scorer) if scorer.exists() else None)
    except (KeyError, TypeError, ValueError) as e:
        raise BadInput(folder, f"not a usable leadlift bundle: {type(e).__name__}: {safe_message(e)}") from None
    try:  # the scorer parses the model text on first use: make that now, so a bad one fails here, not mid-batch
        bundle.margin(np.zeros((0, len(bundle.spec["features"]))))
    except (IndexError, KeyError, TypeError, ValueError) as e:
        raise BadInput(folder / BUNDLE_FILES["model"], f"not a LightGBM model leadlift can read: {type(e).__name__}: "
                                                       f"{safe_message(e)}") from None
    return bundle


def _json_object(file: Path) -> dict[str, Any]:
    value = read_json(file)
    if not isinstance(value, dict):
        raise BadInput(file, f"expected a JSON object, got {type(value).__name__}")
    return value


def resolve_bundle_dir(model: str | Path) -> Path:
    """A folder path is used as is; a `models:/` or `runs:/` URI is downloaded from MLflow first. A store that does
    not exist is bad input: looking a model up must never create an empty store (an mlflow.db) where it runs."""
    text = str(model)
    if text.startswith(("models:/", "runs:/")):
        import mlflow
        from mlflow.exceptions import MlflowException

        uri = mlflow.get_registry_uri() if text.startswith("models:/") else mlflow.get_tracking_uri()
        _require_store(text, uri)
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
        except (MlflowException, OSError) as e:
            raise BadInput(text, f"cannot be read from the MLflow store {uri}: {safe_message(e)}") from None
        found = sorted(p.parent for p in local.rglob(BUNDLE_FILES["model"]))
        if not found:
            raise BadInput(text, "the MLflow model holds no leadlift bundle (model.txt not found)")
        return found[0]
    return Path(model)


def _require_store(model: str, uri: str) -> None:
    """A local store (sqlite file, or a folder) must exist already; a server is the server's business."""
    if uri.startswith("sqlite:///"):
        local = Path(uri.removeprefix("sqlite:///"))
    elif uri.startswith("file:"):
        local = Path(uri.removeprefix("file://").removeprefix("file:"))
    elif "://" not in uri:
        local = Path(uri)
    else:
        return
    if not local.exists():
        raise BadInput(model, f"no MLflow store at {uri} (nothing at {local.resolve()}): run from the folder that "
                              "holds it (the project root), or set MLFLOW_TRACKING_URI")


def load_bundle(model: str | Path = DEFAULT_BUNDLE) -> Bundle:
    return load_bundle_dir(resolve_bundle_dir(model))
