"""Which model scores: chosen on the valid split, never on test.

The candidates are LightGBM, the logistic regression, and a blend (the mean of their log-odds). Each is judged by its
AUC on valid, from fits that did not see valid. LightGBM is the default; a challenger replaces it only when it ranks
the valid leads better by at least `min_auc_gain`, so a difference within the noise between seeds never flips the
model (and its reason codes) from run to run. On small, drifting exports the logistic regression or the blend often
wins, and then it is the model, not a footnote in the report. Log loss after cross-fitted calibration is recorded
beside the AUC, as evidence, not as the criterion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models.bundle import BLEND, LIGHTGBM, LOGISTIC
from models.calibration import choose_calibrator
from models.metrics import auc

#: The blend's weights on the candidates' log-odds (fixed, not fitted on valid, so valid judges it fairly).
BLEND_WEIGHTS: dict[str, float] = {LIGHTGBM: 0.5, LOGISTIC: 0.5}
CRITERION = "valid AUC"


def blend_margin(margins: Mapping[str, np.ndarray]) -> np.ndarray:
    """The blend's log-odds from its parts'."""
    return np.asarray(sum(w * np.asarray(margins[k]) for k, w in BLEND_WEIGHTS.items()), dtype=np.float64)


def choose_model(valid_margins: Mapping[str, np.ndarray], y_valid: np.ndarray, *, min_auc_gain: float
                 ) -> tuple[str, dict[str, Any]]:
    """The chosen candidate and the evidence: each candidate's valid AUC and cross-fitted calibrated log loss.

    `valid_margins` holds held-out log-odds of lightgbm and logistic on the valid rows; the blend is added here.
    """
    margins = {LIGHTGBM: np.asarray(valid_margins[LIGHTGBM]), LOGISTIC: np.asarray(valid_margins[LOGISTIC])}
    margins[BLEND] = blend_margin(margins)
    figures: dict[str, dict[str, float]] = {}
    for name, m in margins.items():
        _, calib = choose_calibrator(m, y_valid)
        figures[name] = {"auc": auc(y_valid, m),
                         "log_loss_calibrated": calib["held_out"][calib["method"]]["log_loss"]}
    best = max((LOGISTIC, BLEND), key=lambda k: figures[k]["auc"])
    gain = figures[best]["auc"] - figures[LIGHTGBM]["auc"]
    chosen = best if gain >= min_auc_gain else LIGHTGBM
    report = {
        "model": chosen,
        "criterion": f"{CRITERION}: LightGBM unless a challenger beats it by at least {min_auc_gain}",
        "min_auc_gain": float(min_auc_gain),
        "best_challenger": best,
        "challenger_gain": float(gain),
        "valid": figures,
        "blend_weights": dict(BLEND_WEIGHTS),
    }
    return chosen, report
