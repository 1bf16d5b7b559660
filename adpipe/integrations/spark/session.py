"""The Spark session adpipe uses: the active one, or a local one it starts with sensible settings."""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping

#: settings adpipe applies to a session it starts itself (a session you created is used as it is)
LOCAL_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",  # adpipe shows its own progress
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "50000",
    "spark.sql.session.timeZone": "UTC",
}


def python_workers() -> None:
    """Executors' Python workers run this interpreter (the one with adpipe installed), unless set already."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def get_spark(master: str | None = None, conf: Mapping[str, Any] | None = None, app_name: str = "adpipe"):
    """The active SparkSession, else a new one (``master`` default ``local[*]``) with :data:`LOCAL_DEFAULTS`
    and Spark's log level at ERROR (adpipe reports Spark's errors itself, without JVM stack traces)."""
    python_workers()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name).master(master or "local[*]")
    for key, value in {**LOCAL_DEFAULTS, **(conf or {})}.items():
        builder = builder.config(key, str(value))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
