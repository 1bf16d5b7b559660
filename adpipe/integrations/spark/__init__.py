"""Spark integration: score and fit at cluster scale (``pip install 'adpipe[spark]'``).

    from adpipe.integrations.spark import score_udf, score_frame, fit_per_group

    udf = score_udf("fraud@production")                     # a pandas UDF (iterator form)
    df.withColumn("adpipe", udf(F.struct(*udf.feature_columns)))
    scored = score_frame(df, "fraud@production")             # df + the result columns (mapInPandas)
    per_merchant = fit_per_group(df, "merchant_id", "configs/fraud.yaml")   # applyInPandas

Importing this package does not import PySpark; the functions do on first use. Executors' Python
workers must have adpipe installed; a session adpipe starts itself points them at this interpreter.
"""

from __future__ import annotations

_EXPORTS = {
    "score_udf": "adpipe.integrations.spark.scoring",
    "score_frame": "adpipe.integrations.spark.scoring",
    "check_columns": "adpipe.integrations.spark.scoring",
    "ModelHandle": "adpipe.integrations.spark.scoring",
    "fit_per_group": "adpipe.integrations.spark.groups",
    "get_spark": "adpipe.integrations.spark.session",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
