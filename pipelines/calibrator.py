"""`calibrator` stage: fit the map from the chosen model's raw margin to a probability, on the valid split.

The calibrator is fitted on the held-out valid margins written by `train` (from the chosen model's fits that did not
see valid), so it stays honest when the final model was refit on train + valid. The method (none, sigmoid or
isotonic) is chosen by cross-fitted log loss on valid, and only held-out figures are reported. The percentile
reference (the calibrated probabilities of the train period) is stored beside it.

Its own stage, before `calibrate`, because it does not depend on the threshold: a threshold experiment
(`dvc exp run -S calibrate.policy=...`) re-runs `calibrate` and what follows, never this fit (nor scikit-learn).

Paths come from dvc.yaml (`python -m pipelines.calibrator --features ... --model ... --scorer ... --spec ...
--valid-margins ... --calibrator ...`); params from the `calibrator` section and `base`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from features.build import SPLIT
from features.schema import LEAD_ID
from features.spec import to_matrix
from models.bundle import Scorer, scorer_from_dict
from models.calibration import choose_calibrator, percentile_reference
from pipelines.bundle import read_model_text
from pipelines.io import exit_codes, load_params, read_frame, read_json, stage_args, write_json


def held_out_margin(valid: pl.DataFrame, valid_margins: pl.DataFrame) -> np.ndarray:
    """The valid rows' held-out margins, in `valid`'s row order; every valid lead must have one."""
    joined = valid.select(LEAD_ID).join(valid_margins, on=LEAD_ID, how="left", maintain_order="left")
    missing = joined["margin"].null_count()
    if missing or joined.height != valid.height:
        raise ValueError(
            f"valid margins do not match the valid split: {missing} of {valid.height} valid leads have none"
        )
    return joined["margin"].to_numpy().astype(np.float64)


def fit(frame: pl.DataFrame, scorer: Scorer, spec: dict[str, Any], params: dict[str, Any],
        valid_margins: pl.DataFrame | None = None) -> dict[str, Any]:
    """calibrator.json: the calibrator, the train period's percentile reference, and the held-out evidence.

    `valid_margins` (lead_id, margin) are held-out raw scores on valid; without them the scorer's own are used,
    which is only honest when the model was not fitted on valid.
    """
    valid = frame.filter(pl.col(SPLIT) == "valid")
    train = frame.filter(pl.col(SPLIT) == "train")
    y = valid["label"].to_numpy().astype(np.float64)
    margin = scorer.margin(to_matrix(valid, spec)) if valid_margins is None else held_out_margin(valid, valid_margins)
    calibrator, chosen = choose_calibrator(
        margin, y, method=params["method"], min_positives_isotonic=int(params["min_positives_isotonic"])
    )
    p_train = calibrator.predict(scorer.margin(to_matrix(train, spec)))
    return {
        "calibrator": calibrator.to_dict(),
        "reference": [float(v) for v in percentile_reference(p_train)],
        # Held out: each valid lead scored by a calibrator fitted on the other folds (never in sample).
        "choice": chosen,
        "valid_positives": int(y.sum()),
    }


def calibrator_summary(calib: dict[str, Any]) -> str:
    """One line: the method chosen and the held-out figures it was chosen on."""
    held = calib["choice"]["held_out"]
    figures = ", ".join(f"{k} log loss {v['log_loss']:.4f} / ECE {v['ece']:.3f}" for k, v in held.items())
    return f"{calib['calibrator']['method']} ({calib['choice']['chosen_by']}; cross-fitted on valid: {figures})"


@exit_codes
def main(argv: list[str] | None = None) -> None:
    args = stage_args(argv, __doc__, "features", "model", "scorer", "spec", "valid-margins", "calibrator")
    params = load_params("calibrator", args.params)
    frame = read_frame(args.features)
    scorer = scorer_from_dict(read_json(args.scorer), read_model_text(args.model))
    calib = fit(frame, scorer, read_json(args.spec), params, read_frame(args.valid_margins))
    write_json(args.calibrator, calib)
    print(f"calibrator: {calibrator_summary(calib)}")


if __name__ == "__main__":
    main()
