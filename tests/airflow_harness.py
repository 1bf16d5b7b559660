"""Run one DAG with ``dag.test()`` in a fresh process and print its outcome as JSON (tests/test_airflow.py).

    python tests/airflow_harness.py DAG_FILE '[{"dag_id": ..., "date": "2026-11-20", "conf": {...}}, ...]'

Runs are made one after another in one process (Airflow's start-up is paid once); each prints one
``HARNESS-RESULT`` line.

Airflow configures logging and its database at import, so the tests run it in its own process with a
temporary AIRFLOW_HOME rather than inside pytest's.
"""

import importlib.util
import json
import sys
from datetime import datetime, timezone

from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.sdk import DAG
from airflow.utils.session import create_session

path, runs = sys.argv[1], json.loads(sys.argv[2])
spec = importlib.util.spec_from_file_location("dag_under_test", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dags = {v.dag_id: v for v in vars(module).values() if isinstance(v, DAG)}
for wanted in runs:
    dag_id = wanted["dag_id"]
    day = datetime.fromisoformat(wanted["date"]).replace(tzinfo=timezone.utc)
    run = dags[dag_id].test(logical_date=day, run_conf=wanted.get("conf"))
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run.run_id).all()
        xcoms = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run.run_id, key="return_value").all()
        result = {
            "dag_id": dag_id,
            "state": str(run.state),
            "tasks": {ti.task_id: str(ti.state) for ti in tis},
            "tries": {ti.task_id: ti.try_number for ti in tis},
            "xcom": {x.task_id: x.value for x in xcoms},
        }
    print("HARNESS-RESULT " + json.dumps(result, default=str), flush=True)
