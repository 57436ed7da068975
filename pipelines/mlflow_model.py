"""The MLflow pyfunc for a leadlift bundle, logged as *models from code*: MLflow stores this file, not a pickle.

Input: one row per lead with the feature columns of the bundle's spec (categoricals as text).
Output: calibrated probability, the 0-100 score and the decision (SQL or nurture).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl


class LeadliftModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc, name-defined]
    def load_context(self, context: Any) -> None:
        from pipelines.bundle import load_bundle_dir

        self.bundle = load_bundle_dir(Path(context.artifacts["bundle"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from features.spec import to_matrix

        frame = pl.from_pandas(pd.DataFrame(model_input))
        p = self.bundle.probability(to_matrix(frame, self.bundle.spec))
        return pd.DataFrame({
            "probability": p.astype(np.float64),
            "score": self.bundle.score(p).astype(np.int64),
            "decision": self.bundle.decide(p).astype(str),
        })


mlflow.models.set_model(LeadliftModel())
