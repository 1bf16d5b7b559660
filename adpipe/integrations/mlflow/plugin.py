"""The ``mlflow`` integration plugin (entry point ``mlflow = "adpipe.integrations.mlflow.plugin"``).

Importing this module does not import MLflow: the functions it calls import it on first use.
"""

from __future__ import annotations

from typing import Any

import adpipe


class MlflowRegistry(adpipe.Integration):
    """MLflow model registry: log adpipe models as pyfunc models and load models:/ URIs.

    A logged model is an MLflow pyfunc model whose artifact is the signed ``.adpipe`` file, so
    ``mlflow.pyfunc.load_model("models:/fraud/1").predict(df)`` and
    ``adpipe score model=models:/fraud/1 config=...`` score the same way.
    """

    name = "mlflow"
    requires = ("mlflow",)
    install_hint = "pip install 'adpipe[mlflow]'"

    class Params(adpipe.Params):
        tracking_uri: str | None = adpipe.Field(
            None, description="MLflow tracking URI; default: MLFLOW_TRACKING_URI, else MLflow's own default")

    def log_model(self, ref: str, **kwargs: Any) -> dict[str, Any]:
        """Log a stored model or model file (see :func:`adpipe.integrations.mlflow.log_model_ref`)."""
        from adpipe.integrations.mlflow import log_model_ref

        return log_model_ref(ref, tracking_uri=self.params.tracking_uri, **kwargs)

    def load_model(self, uri: str, **kwargs: Any):
        """Load ``models:/...`` or ``runs:/...`` (see :func:`adpipe.integrations.mlflow.load_model`)."""
        from adpipe.integrations.mlflow import load_model

        return load_model(uri, tracking_uri=self.params.tracking_uri, **kwargs)


@adpipe.hookimpl
def adpipe_register(registry):
    registry.add(MlflowRegistry)
