"""The MLflow pyfunc wrapper around an adpipe model file (imports MLflow: load it lazily).

MLflow pickles the wrapper instance by reference to this module, so serving needs adpipe installed.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

ARTIFACT = "model"  # key of the .adpipe file in the pyfunc's artifacts


class AdpipePyfunc(mlflow.pyfunc.PythonModel):
    """Scores a DataFrame with the adpipe model logged as the artifact ``model``.

    The strict trust policy applies when the file is loaded; pass
    ``model_config={"trusted": True}`` to ``mlflow.pyfunc.load_model`` to load a file signed elsewhere.
    """

    def load_context(self, context):
        from adpipe.core.model import load

        options = context.model_config or {}
        self.model = load(context.artifacts[ARTIFACT], trusted=bool(options.get("trusted", False)),
                          strict_versions=bool(options.get("strict_versions", False)))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        # a DataFrame type hint: MLflow checks the input against the logged signature, not the hint
        return self.model.score(model_input)
