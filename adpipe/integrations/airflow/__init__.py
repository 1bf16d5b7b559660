"""Airflow provider: adpipe pipelines as tasks in Airflow 3 DAGs (``pip install 'adpipe[airflow]'``).

    from adpipe.integrations.airflow import (AdpipeRunOperator, AdpipeFitOperator, AdpipeScoreOperator,
                                             AdpipeBranchOperator, anomalies_found)

Importing this package does not import Airflow; the operators load it on first use. The example DAG is
``adpipe/integrations/airflow/example_dags/adpipe_example.py``.
"""

from __future__ import annotations

from adpipe.integrations.airflow.tasks import anomalies_found

_OPERATORS = ("AdpipeOperator", "AdpipeRunOperator", "AdpipeFitOperator", "AdpipeScoreOperator",
              "AdpipeBranchOperator")


def __getattr__(name: str):
    if name in _OPERATORS:
        from adpipe.integrations.airflow import operators

        return getattr(operators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [*_OPERATORS, "anomalies_found"]
