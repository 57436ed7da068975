"""The trained bundle: booster, feature spec, calibrator and threshold, used the same way by every consumer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from models.calibration import Calibrator, percentile, to_score

SQL = "SQL"
NURTURE = "nurture"


@dataclass
class Bundle:
    """What `score`, `explain` and the MLflow pyfunc need; built from plain text and JSON, never from pickles."""

    booster: lgb.Booster
    spec: dict[str, Any]
    calibrator: Calibrator
    reference: np.ndarray
    threshold: dict[str, Any]
    _names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self._names = [f["name"] for f in self.spec["features"]]
        if self.booster.feature_name() != self._names:
            raise ValueError(
                "model and feature spec disagree on the features: "
                f"model has {self.booster.feature_name()}, spec has {self._names}"
            )

    @property
    def threshold_probability(self) -> float:
        return float(self.threshold["threshold_probability"])

    def margin(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(X, raw_score=True), dtype=np.float64)

    def probability(self, X: np.ndarray) -> np.ndarray:
        return self.calibrator.predict(self.margin(X))

    @property
    def threshold_score(self) -> int:
        return int(self.threshold["threshold_score"])

    def decide(self, p: np.ndarray) -> np.ndarray:
        """SQL when the 0-100 score reaches the threshold score, so what a rep sees and the decision never disagree."""
        return np.where(self.score(p) >= self.threshold_score, SQL, NURTURE)

    def score(self, p: np.ndarray) -> np.ndarray:
        return to_score(p)

    def percentile(self, p: np.ndarray) -> np.ndarray:
        return percentile(p, self.reference)


BUNDLE_FILES = {
    "model": "model.txt",
    "spec": "feature_spec.json",
    "calibrator": "calibrator.json",
    "threshold": "threshold.json",
}
#: Files a bundle folder may also hold and its consumers read (the logistic-regression baseline); the manifest covers
#: them when present. A new optional file (another model) is added here and is then hashed and checked like the rest.
OPTIONAL_BUNDLE_FILES: tuple[str, ...] = ("baseline.json",)
#: sha256 and size of every bundle file, written when the bundle is complete and checked before anything is parsed.
MANIFEST = "manifest.json"


def bundle_file_names(present: set[str] | frozenset[str]) -> list[str]:
    """The bundle's files among the names `present` in a folder: every required file, then the optional ones there."""
    return [*BUNDLE_FILES.values(), *(name for name in OPTIONAL_BUNDLE_FILES if name in present)]


def model_text_problem(text: str) -> str | None:
    """Why a LightGBM model text cannot be a whole model (None when it looks whole). LightGBM aborts the process, or
    crashes, on a truncated file rather than raising, so the text is checked before LightGBM sees it."""
    if not text.startswith("tree\n"):
        return "not a LightGBM model text (it does not start with 'tree')"
    if "\nend of trees\n" not in text:
        return "truncated: no 'end of trees' line"
    header = text.split("\n\n", 1)[0]
    sizes = [line.split("=", 1)[1].split() for line in header.splitlines() if line.startswith("tree_sizes=")]
    trees = text.count("\nTree=")
    if sizes and len(sizes[0]) != trees:
        return f"truncated: the header lists {len(sizes[0])} trees, the text holds {trees}"
    return None


def bundle_from_parts(
    model_text: str, spec: dict[str, Any], calibrator: dict[str, Any], threshold: dict[str, Any]
) -> Bundle:
    """Assemble a bundle from the text of its files (see BUNDLE_FILES)."""
    return Bundle(
        booster=lgb.Booster(model_str=model_text),
        spec=spec,
        calibrator=Calibrator.from_dict(calibrator["calibrator"]),
        reference=np.asarray(calibrator["reference"], dtype=np.float64),
        threshold=threshold,
    )
