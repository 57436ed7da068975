"""The trained bundle: the chosen model (a scorer), feature spec, calibrator and threshold, used the same way by every
consumer.

Which model scores is chosen on valid (`models.choice`): LightGBM, the logistic regression, or a blend of their
log-odds. Every consumer talks to it through one small interface, `Scorer`: `margin(X)` (log-odds), exact
`contributions(X)` (one column per feature plus the expected value, adding up to the margin) and `expected_value`.
So `score`, `explain`, `evaluate` and the MLflow pyfunc work with any of them, and the reason codes are exact for
each: TreeSHAP for the GBM, linear SHAP for the logistic regression, their weighted sum for a blend.

Loading a bundle never imports LightGBM (about 1.5 s per process, scikit-learn and pandas included): the GBM scores
and explains through `models.treeshap.TreeShap`, which parses LightGBM's model text itself and returns LightGBM's raw
scores bit for bit. A caller that needs a real booster (a peer benchmark, `pred_contrib`) asks `Bundle.booster`, built
on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from models.baseline import LinearBaseline
from models.calibration import Calibrator, percentile, to_score

if TYPE_CHECKING:
    import lightgbm as lgb

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
    """LightGBM: raw scores and exact TreeSHAP from leadlift's own kernel (built once, on first use), from the model
    text (or a live booster); neither needs LightGBM itself."""

    kind = LIGHTGBM

    def __init__(self, model: str | lgb.Booster) -> None:
        self.model = model

    @cached_property
    def explainer(self) -> TreeShap:
        from models.treeshap import TreeShap  # numba: loaded by the stages that score, not by those that only seal

        if isinstance(self.model, str):
            return TreeShap.from_model_string(self.model)
        return TreeShap.from_booster(self.model)

    def margin(self, X: np.ndarray) -> np.ndarray:
        """LightGBM's `predict(X, raw_score=True)`, bit for bit."""
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


def scorer_from_dict(d: dict[str, Any] | None, model: str | lgb.Booster) -> Scorer:
    """The scorer scorer.json describes, with the LightGBM model as text (model.txt) or a booster; None (a bundle from
    before the model choice) is LightGBM alone."""
    spec = d or {}
    kind = spec.get("kind", LIGHTGBM)
    if kind == LIGHTGBM:
        return GbmScorer(model)
    if kind not in MODEL_KINDS or not isinstance(spec.get(LOGISTIC), dict):
        raise ValueError(f"scorer.json: kind must be one of {', '.join(MODEL_KINDS)}, and {LOGISTIC!r} must hold the "
                         f"logistic model for {LOGISTIC} and {BLEND}; got kind {kind!r}")
    linear = LinearScorer(LinearBaseline.from_dict(spec[LOGISTIC]))
    if kind == LOGISTIC:
        return linear
    weights = spec["weights"]
    return BlendScorer([(float(weights[LIGHTGBM]), GbmScorer(model)), (float(weights[LOGISTIC]), linear)])


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

    #: The LightGBM model in its text format (model.txt).
    model_text: str
    spec: dict[str, Any]
    calibrator: Calibrator
    reference: np.ndarray
    threshold: dict[str, Any]
    scorer: Scorer = field(default=None)  # type: ignore[assignment]
    _names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self._names = [f["name"] for f in self.spec["features"]]
        model_names = model_feature_names(self.model_text)
        if model_names != self._names:
            raise ValueError(
                f"model and feature spec disagree on the features: model has {model_names}, spec has {self._names}"
            )
        if self.scorer is None:
            self.scorer = GbmScorer(self.model_text)

    @cached_property
    def booster(self) -> lgb.Booster:
        """A real LightGBM booster of model.txt, for callers that need LightGBM itself (built on first use)."""
        import lightgbm as lgb

        return lgb.Booster(model_str=self.model_text)

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
#: The bundle files a lead's raw margin depends on: two bundles that agree on these score every lead alike (the
#: calibrator and the threshold change probabilities and decisions, never the ranking).
MARGIN_FILES: tuple[str, ...] = (BUNDLE_FILES["model"], BUNDLE_FILES["scorer"], BUNDLE_FILES["spec"], "baseline.json")


def bundle_file_names(present: set[str] | frozenset[str]) -> list[str]:
    """The bundle's files among the names `present` in a folder: every required file, then the optional ones there
    (scorer.json, which an older bundle lacks, and the baseline)."""
    required = [name for key, name in BUNDLE_FILES.items() if key not in OPTIONAL_FILES]
    optional = [*(BUNDLE_FILES[key] for key in sorted(OPTIONAL_FILES)), *OPTIONAL_BUNDLE_FILES]
    return [*required, *(name for name in optional if name in present)]


def model_feature_names(text: str) -> list[str]:
    """The feature names in a LightGBM model text's header (what `Booster.feature_name()` returns)."""
    for line in text.split("\n\n", 1)[0].splitlines():
        if line.startswith("feature_names="):
            return line.removeprefix("feature_names=").split()
    raise ValueError("not a LightGBM model text: its header has no feature_names line")


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
    return Bundle(
        model_text=model_text,
        spec=spec,
        calibrator=Calibrator.from_dict(calibrator["calibrator"]),
        reference=np.asarray(calibrator["reference"], dtype=np.float64),
        threshold=threshold,
        scorer=scorer_from_dict(scorer, model_text),
    )
