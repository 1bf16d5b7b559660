"""The ``spark`` integration plugin (entry point ``spark = "adpipe.integrations.spark.plugin"``).

Registers the Spark integration (``adpipe plugins list --kind integration``) and the ``spark`` source
and sink (``type: spark`` in a config). Importing this module does not import PySpark.
"""

from __future__ import annotations

import adpipe
from adpipe.integrations.spark.io import SparkSink, SparkSource


class SparkIntegration(adpipe.Integration):
    """Spark: a scoring UDF, whole-frame scoring, per-group fitting, and the spark source and sink.

    ``from adpipe.integrations.spark import score_udf, score_frame, fit_per_group``.
    """

    name = "spark"
    requires = ("pyspark",)
    install_hint = "pip install 'adpipe[spark]'"


@adpipe.hookimpl
def adpipe_register(registry):
    registry.add(SparkIntegration)
    registry.add(SparkSource)
    registry.add(SparkSink)
