"""Load a trained bundle from a folder or from the MLflow registry (`models:/leadlift@champion`)."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb

from models.bundle import BUNDLE_FILES, OPTIONAL_FILES, Bundle, bundle_from_parts, model_text_problem
from pipelines.io import BadInput

DEFAULT_BUNDLE = Path("data/artifacts")


def load_booster(path: str | Path) -> lgb.Booster:
    """A LightGBM model file, checked before LightGBM parses it (a truncated file would abort the process)."""
    file = Path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise BadInput(file, "model file not found (run the train stage first)") from None
    except UnicodeDecodeError:
        raise BadInput(file, "not a LightGBM model text (not UTF-8 text)") from None
    problem = model_text_problem(text)
    if problem:
        raise BadInput(file, problem)
    return lgb.Booster(model_str=text)


def load_bundle_dir(path: str | Path) -> Bundle:
    """Read a bundle folder: plain text and JSON only, so loading runs no pickled code."""
    folder = Path(path)
    missing = [name for key, name in BUNDLE_FILES.items()
               if key not in OPTIONAL_FILES and not (folder / name).exists()]
    if missing:
        raise BadInput(folder, f"not a leadlift bundle: missing {', '.join(missing)}")
    scorer = folder / BUNDLE_FILES["scorer"]
    return bundle_from_parts(
        (folder / BUNDLE_FILES["model"]).read_text(),
        json.loads((folder / BUNDLE_FILES["spec"]).read_text()),
        json.loads((folder / BUNDLE_FILES["calibrator"]).read_text()),
        json.loads((folder / BUNDLE_FILES["threshold"]).read_text()),
        json.loads(scorer.read_text()) if scorer.exists() else None,
    )


def resolve_bundle_dir(model: str | Path) -> Path:
    """A folder path is used as is; a `models:/` or `runs:/` URI is downloaded from MLflow first."""
    text = str(model)
    if text.startswith(("models:/", "runs:/")):
        import mlflow

        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
        found = sorted(p.parent for p in local.rglob(BUNDLE_FILES["model"]))
        if not found:
            raise BadInput(text, "the MLflow model holds no leadlift bundle (model.txt not found)")
        return found[0]
    return Path(model)


def load_bundle(model: str | Path = DEFAULT_BUNDLE) -> Bundle:
    return load_bundle_dir(resolve_bundle_dir(model))
