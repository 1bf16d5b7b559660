"""Airflow operators that run adpipe pipelines as tasks (Airflow 3, task SDK).

    from adpipe.integrations.airflow import AdpipeScoreOperator, AdpipeBranchOperator

    score = AdpipeScoreOperator(
        task_id="score",
        config="/opt/adpipe/configs/payments.yaml",
        model="payments@production",
        input_path="/data/events/ds={{ ds }}",
        output_path="/data/scores/ds={{ ds }}/scores.parquet",
    )

Constructors only store their arguments: no file is read and nothing heavy is imported while the
scheduler parses the DAG. ``execute`` runs adpipe in the task's own process and returns a small JSON
summary (rows, anomalies, output locations, model version) as the task's XCom.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from adpipe.integrations.airflow import tasks


class AdpipeOperator(BaseOperator):
    """Run an adpipe pipeline in one of three modes: ``run`` (fit and score), ``fit`` or ``score``.

    :param config: path to the pipeline's YAML config (templated).
    :param mode: ``run`` fits on the training data and scores the source into the sinks; ``fit`` saves a
        new model version to the store; ``score`` scores with a stored ``model``.
    :param overrides: Hydra overrides, ``["threshold.contamination=0.01"]`` or a mapping (templated).
    :param input_path: replaces the source's ``path`` (in fit mode ``fit.source``'s when the config has
        one), e.g. ``"/data/events/ds={{ ds }}"`` (templated).
    :param output_path: replaces the ``path`` of the first sink that has one (templated).
    :param model: ``score`` mode: a model file, ``NAME``, ``NAME@VERSION``, ``NAME@STAGE`` or an MLflow
        ``models:/`` URI (templated).
    :param store: model store folder; default ``ADPIPE_STORE`` or ``~/.adpipe/models`` (templated).
    :param trust: load a model file not signed with this worker's key (it runs code from the file).
    :param promote_to: ``fit`` mode: promote the new version to this stage, e.g. ``production``.

    Errors: an adpipe error fails the task with adpipe's message in the log. Errors a retry cannot fix
    (a broken config, a missing plugin, a model file that fails its checks) fail at once, skipping
    retries; the rest (missing input, a server down, no model yet) follow the task's ``retries``.
    """

    template_fields: Sequence[str] = ("config", "overrides", "input_path", "output_path", "model", "store",
                                      "promote_to")
    template_fields_renderers = {"overrides": "json"}
    ui_color = "#e8f1fb"
    mode: str = "run"

    def __init__(self, *, config: str, mode: str | None = None,
                 overrides: Mapping[str, Any] | Sequence[str] | None = None, input_path: str | None = None,
                 output_path: str | None = None, model: str | None = None, store: str | None = None,
                 trust: bool = False, promote_to: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode or type(self).mode
        if self.mode not in tasks.MODES:
            raise ValueError(f"mode must be one of {', '.join(tasks.MODES)}, got {self.mode!r}")
        self.config = config
        self.overrides = overrides
        self.input_path = input_path
        self.output_path = output_path
        self.model = model
        self.store = store
        self.trust = trust
        self.promote_to = promote_to

    def execute(self, context: Any) -> dict[str, Any]:
        from adpipe.core.errors import AdpipeError

        self.log.info("adpipe %s: config %s", self.mode, self.config)
        try:
            summary = tasks.execute(self.mode, self.config, overrides=self.overrides, input_path=self.input_path,
                                    output_path=self.output_path, model=self.model, store=self.store,
                                    trust=self.trust, promote_to=self.promote_to)
        except AdpipeError as exc:
            message = f"adpipe {self.mode} failed: {type(exc).__name__}: {exc}"
            self.log.error("%s", message)
            if tasks.retryable(exc):
                raise AirflowException(message) from exc
            raise AirflowFailException(message + "\n(not retried: a retry cannot fix this)") from exc
        self.log.info("adpipe %s summary: %s", self.mode, summary)
        return summary


class AdpipeRunOperator(AdpipeOperator):
    """Fit the pipeline on its training data and score its source into its sinks (``adpipe run``)."""

    mode = "run"


class AdpipeFitOperator(AdpipeOperator):
    """Fit the pipeline and save a new model version to the store (``adpipe fit``)."""

    mode = "fit"


class AdpipeScoreOperator(AdpipeOperator):
    """Score the source into the sinks with a stored model, fitting nothing (``adpipe score``)."""

    mode = "score"


class AdpipeBranchOperator(BaseBranchOperator):
    """Follow one branch when an adpipe task found anomalies, another when it did not.

    :param summary_task_id: the adpipe run/score task whose XCom summary decides (templated).
    :param if_anomalies: task id(s) to follow when anomalies >= ``min_anomalies`` (and the anomaly rate
        >= ``min_anomaly_rate`` when given).
    :param if_normal: task id(s) to follow otherwise; ``None`` skips every other downstream task.
    :param min_anomalies: how many anomalies count as "found" (templated, e.g. ``"{{ params.min }}"``).
    :param min_anomaly_rate: optional share of scored rows, 0-1 (templated).
    """

    template_fields: Sequence[str] = ("summary_task_id", "min_anomalies", "min_anomaly_rate")
    ui_color = "#fdf0e1"

    def __init__(self, *, summary_task_id: str, if_anomalies: str | list[str],
                 if_normal: str | list[str] | None = None, min_anomalies: int | str = 1,
                 min_anomaly_rate: float | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.summary_task_id = summary_task_id
        self.if_anomalies = if_anomalies
        self.if_normal = if_normal
        self.min_anomalies = min_anomalies
        self.min_anomaly_rate = min_anomaly_rate

    def choose_branch(self, context: Any) -> str | list[str] | None:
        summary = context["ti"].xcom_pull(task_ids=self.summary_task_id)
        try:
            rate = None if self.min_anomaly_rate in (None, "", "None") else float(self.min_anomaly_rate)
            found = tasks.anomalies_found(summary, int(self.min_anomalies), rate)
        except (TypeError, ValueError) as exc:
            raise AirflowFailException(f"cannot branch on task {self.summary_task_id!r}: {exc}") from exc
        self.log.info("%s: %s anomalies of %s rows -> %s", self.summary_task_id, summary["anomalies"],
                      summary.get("rows_scored"), "anomalies" if found else "normal")
        return self.if_anomalies if found else (self.if_normal or [])
