"""The trained bundle: the chosen model (a scorer), feature spec, calibrator and threshold, used the same way by every
consumer.

Which model scores is chosen on valid (`models.choice`): LightGBM, the logistic regression, or a blend of their
log-odds. Every consumer talks to it through one small interface, `Scorer`: `margin(X)` (log-odds), exact
`contributions(X)` (one column per feature plus the expected value, adding up to the margin) and `expected_value`.
So `score`, `explain`, `evaluate` and the MLflow pyfunc work with any of them, and the reason codes are exact for
each: TreeSHAP for the GBM, linear SHAP for the logistic regression, their weighted sum for a blend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np

from models.baseline import LinearBaseline
from models.calibration import Calibrator, percentile, to_score
from models.treeshap import TreeShap

SQL = "SQL"
NURTURE = "nurture"
LIGHTGBM = "lightgbm"
LOGISTIC = "logistic"
BLEND = "blend"
MODEL_KINDS: tuple[str, ...] = (LIGHTGBM, LOGISTIC, BLEND)


class Scorer(Protocol):
    """What the bundle needs from a model."""

    kind: str

    def margin(self, X: np.ndarray) -> np.ndarray: ...

    def contributions(self, X: np.ndarray) -> np.ndarray: ...

    @property
    def expected_value(self) -> float: ...


class GbmScorer:
    """LightGBM: raw scores and exact TreeSHAP, both from leadlift's own kernel (built once, on first use): its raw
    scores are LightGBM's bits, several times faster (models.treeshap)."""

    kind = LIGHTGBM

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster

    @cached_property
    def explainer(self) -> TreeShap:
        return TreeShap.from_booster(self.booster)

    def margin(self, X: np.ndarray) -> np.ndarray:
        return self.explainer.margin(X)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return self.explainer.contributions(X)

    @property
    def expected_value(self) -> float:
        return float(self.explainer.expected_value)


class LinearScorer:
    """The logistic regression: its linear predictor, and exact linear SHAP values."""

    kind = LOGISTIC

    def __init__(self, model: LinearBaseline) -> None:
        self.model = model

    def margin(self, X: np.ndarray) -> np.ndarray:
        return self.model.margin(X)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return self.model.contributions(X)

    @property
    def expected_value(self) -> float:
        return self.model.expected_value


class BlendScorer:
    """A weighted sum of the parts' log-odds; SHAP values are linear in the model, so the blend's are the same
    weighted sum of the parts' (still exact, still adding up to the margin)."""

    kind = BLEND

    def __init__(self, parts: list[tuple[float, Scorer]]) -> None:
        self.parts = parts

    def margin(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(sum(w * s.margin(X) for w, s in self.parts), dtype=np.float64)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(sum(w * s.contributions(X) for w, s in self.parts), dtype=np.float64)

    @property
    def expected_value(self) -> float:
        return float(sum(w * s.expected_value for w, s in self.parts))


def scorer_from_dict(d: dict[str, Any] | None, booster: lgb.Booster) -> Scorer:
    """The scorer scorer.json describes; None (a bundle from before the model choice) is LightGBM alone."""
    spec = d or {}
    kind = spec.get("kind", LIGHTGBM)
    if kind == LIGHTGBM:
        return GbmScorer(booster)
    if kind not in MODEL_KINDS or not isinstance(spec.get(LOGISTIC), dict):
        raise ValueError(f"scorer.json: kind must be one of {', '.join(MODEL_KINDS)}, and {LOGISTIC!r} must hold the "
                         f"logistic model for {LOGISTIC} and {BLEND}; got kind {kind!r}")
    linear = LinearScorer(LinearBaseline.from_dict(spec[LOGISTIC]))
    if kind == LOGISTIC:
        return linear
    weights = spec["weights"]
    return BlendScorer([(float(weights[LIGHTGBM]), GbmScorer(booster)), (float(weights[LOGISTIC]), linear)])


def scorer_dict(kind: str, logistic: LinearBaseline | dict[str, Any], *, weights: dict[str, float] | None = None
                ) -> dict[str, Any]:
    """scorer.json for the chosen model (the LightGBM model itself stays in model.txt)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    if kind == LIGHTGBM:
        return {"kind": kind}
    lin = logistic.to_dict() if isinstance(logistic, LinearBaseline) else dict(logistic)
    out: dict[str, Any] = {"kind": kind, LOGISTIC: lin}
    if kind == BLEND:
        out["weights"] = dict(weights or {})
    return out


@dataclass
class Bundle:
    """What `score`, `explain` and the MLflow pyfunc need; built from plain text and JSON, never from pickles."""

    booster: lgb.Booster
    spec: dict[str, Any]
    calibrator: Calibrator
    reference: np.ndarray
    threshold: dict[str, Any]
    scorer: Scorer = field(default=None)  # type: ignore[assignment]
    _names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self._names = [f["name"] for f in self.spec["features"]]
        if self.booster.feature_name() != self._names:
            raise ValueError(
                "model and feature spec disagree on the features: "
                f"model has {self.booster.feature_name()}, spec has {self._names}"
            )
        if self.scorer is None:
            self.scorer = GbmScorer(self.booster)

    @property
    def threshold_probability(self) -> float:
        return float(self.threshold["threshold_probability"])

    def margin(self, X: np.ndarray) -> np.ndarray:
        return self.scorer.margin(X)

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
    "scorer": "scorer.json",
}
#: Bundle files an older bundle may lack, and what their absence means (scorer.json: LightGBM alone).
OPTIONAL_FILES = frozenset({"scorer"})
#: Files a bundle folder may also hold and its consumers read (the logistic-regression baseline); the manifest covers
#: them when present. A new optional file (another model) is added here and is then hashed and checked like the rest.
OPTIONAL_BUNDLE_FILES: tuple[str, ...] = ("baseline.json",)
#: sha256 and size of every bundle file, written when the bundle is complete and checked before anything is parsed.
MANIFEST = "manifest.json"


def bundle_file_names(present: set[str] | frozenset[str]) -> list[str]:
    """The bundle's files among the names `present` in a folder: every required file, then the optional ones there
    (scorer.json, which an older bundle lacks, and the baseline)."""
    required = [name for key, name in BUNDLE_FILES.items() if key not in OPTIONAL_FILES]
    optional = [*(BUNDLE_FILES[key] for key in sorted(OPTIONAL_FILES)), *OPTIONAL_BUNDLE_FILES]
    return [*required, *(name for name in optional if name in present)]


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
    model_text: str, spec: dict[str, Any], calibrator: dict[str, Any], threshold: dict[str, Any],
    scorer: dict[str, Any] | None = None,
) -> Bundle:
    """Assemble a bundle from the text of its files (see BUNDLE_FILES)."""
    booster = lgb.Booster(model_str=model_text)
    return Bundle(
        booster=booster,
        spec=spec,
        calibrator=Calibrator.from_dict(calibrator["calibrator"]),
        reference=np.asarray(calibrator["reference"], dtype=np.float64),
        threshold=threshold,
        scorer=scorer_from_dict(scorer, booster),
    )
