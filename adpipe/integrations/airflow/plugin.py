"""The ``airflow`` integration plugin (entry point ``airflow = "adpipe.integrations.airflow.plugin"``).

Registering it makes ``adpipe plugins list`` show the Airflow provider beside every other plugin.
Importing this module does not import Airflow.
"""

from __future__ import annotations

from typing import Any

import adpipe


class AirflowProvider(adpipe.Integration):
    """Airflow provider: run, fit and score operators, a branch on anomalies, an example DAG.

    Use the operators in DAG files (``from adpipe.integrations.airflow import AdpipeScoreOperator``);
    Airflow finds the provider through the ``apache_airflow_provider`` entry point.
    """

    name = "airflow"
    requires = ("airflow",)
    install_hint = "pip install 'adpipe[airflow]'"

    def provider_info(self) -> dict[str, Any]:
        """What ``airflow providers get adpipe`` shows."""
        from adpipe.integrations.airflow.provider import get_provider_info

        return get_provider_info()

    @staticmethod
    def example_dags() -> str:
        """The folder holding the example DAG (point ``AIRFLOW__CORE__DAGS_FOLDER`` at a copy)."""
        from pathlib import Path

        return str(Path(__file__).with_name("example_dags"))


@adpipe.hookimpl
def adpipe_register(registry):
    registry.add(AirflowProvider)
