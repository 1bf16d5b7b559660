"""The ``spark`` integration plugin (entry point ``spark = "adpipe.integrations.spark.plugin"``).

Registers the Spark integration (``adpipe plugins list --kind integration``). Importing this module
does not import PySpark.
"""

from __future__ import annotations

import adpipe


class SparkIntegration(adpipe.Integration):
    """Spark: a scoring UDF, whole-frame scoring and per-group fitting.

    ``from adpipe.integrations.spark import score_udf, score_frame, fit_per_group``.
    """

    name = "spark"
    requires = ("pyspark",)
    install_hint = "pip install 'adpipe[spark]'"


@adpipe.hookimpl
def adpipe_register(registry):
    registry.add(SparkIntegration)
