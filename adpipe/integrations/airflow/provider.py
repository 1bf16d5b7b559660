"""Provider metadata for Airflow (entry point ``apache_airflow_provider``), so ``airflow providers list``
shows adpipe. Airflow calls :func:`get_provider_info` without importing the operators."""

from __future__ import annotations

from typing import Any

MODULES = ["adpipe.integrations.airflow.operators"]


def get_provider_info() -> dict[str, Any]:
    from adpipe import __version__

    return {
        "package-name": "adpipe",
        "name": "adpipe",
        "description": "Anomaly-detection pipelines (adpipe) as Airflow tasks: run, fit and score operators "
                       "and a branch on the anomalies found.",
        "versions": [__version__],
        "integrations": [{"integration-name": "adpipe", "tags": ["software"]}],
        "operators": [{"integration-name": "adpipe", "python-modules": MODULES}],
    }
