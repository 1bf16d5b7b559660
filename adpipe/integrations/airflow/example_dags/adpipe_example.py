"""adpipe example DAGs: a weekly fit, daily scoring of the ``{{ ds }}`` partition, a branch to alerting.

``adpipe_weekly_fit`` fits the pipeline on every partition so far, saves the model as a new version in
the store and promotes it to ``production``. ``adpipe_daily_score`` scores the day's partition with
``payments@production``, then branches: when at least ``min_anomalies`` payments were flagged the
``alert`` task tells the team, otherwise ``all_clear`` runs.

Settings are Airflow Variables (or ``AIRFLOW_VAR_...`` environment variables):

* ``adpipe_config``: the pipeline config (default: ``payments.yaml`` beside this file);
* ``adpipe_data``: the data root, with ``events/ds=YYYY-MM-DD/*.parquet`` in and
  ``scores/ds=YYYY-MM-DD/scores.parquet`` out (default ``/data/payments``);
* ``adpipe_store``: the model store folder shared by the workers (default ``ADPIPE_STORE``);
* ``adpipe_alert_webhook``: optional URL the ``alert`` task POSTs ``{"text": ...}`` to (a Slack
  incoming webhook takes it as it is); without it the alert is only logged.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, Variable, task

from adpipe.integrations.airflow import AdpipeBranchOperator, AdpipeFitOperator, AdpipeScoreOperator

CONFIG = "{{ var.value.get('adpipe_config', '%s') }}" % Path(__file__).with_name("payments.yaml")
DATA = "{{ var.value.get('adpipe_data', '/data/payments') }}"
STORE = "{{ var.value.get('adpipe_store', '') }}"
DEFAULTS = {"owner": "data-engineering", "retries": 2, "retry_delay": timedelta(minutes=15)}
START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG("adpipe_weekly_fit", schedule="@weekly", start_date=START, catchup=False, default_args=DEFAULTS,
         tags=["adpipe"], doc_md="Fit the pipeline on every partition; promote it to production.") as fit_dag:
    AdpipeFitOperator(task_id="fit", config=CONFIG, input_path=DATA + "/events", store=STORE,
                      promote_to="production")

with DAG("adpipe_daily_score", schedule="@daily", start_date=START, catchup=False, default_args=DEFAULTS,
         tags=["adpipe"], params={"min_anomalies": Param(25, type="integer", minimum=1)},
         doc_md="Score the day's payments with the production model; alert when anomalies are found.") as score_dag:
    score = AdpipeScoreOperator(
        task_id="score",
        config=CONFIG,
        model="payments@production",
        store=STORE,
        input_path=DATA + "/events/ds={{ ds }}",
        output_path=DATA + "/scores/ds={{ ds }}/scores.parquet",
    )
    branch = AdpipeBranchOperator(task_id="anomalies_found", summary_task_id="score",
                                  min_anomalies="{{ params.min_anomalies }}", if_anomalies="alert",
                                  if_normal="all_clear")

    @task(retries=3)
    def alert(summary: dict, ds: str | None = None) -> str:
        """Tell the team: POST to the ``adpipe_alert_webhook`` Variable when it is set, and log."""
        import httpx

        text = (f"adpipe: {summary['anomalies']:,} of {summary['rows_scored']:,} payments flagged on {ds} "
                f"(model {summary['model_version']}); results: {', '.join(summary['outputs'])}")
        url = Variable.get("adpipe_alert_webhook", default=None)
        if url:
            httpx.post(url, json={"text": text, "summary": summary}, timeout=10).raise_for_status()
        logging.getLogger(__name__).warning("%s", text)
        return text

    score >> branch >> [alert(score.output), EmptyOperator(task_id="all_clear")]
