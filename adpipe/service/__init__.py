"""adpipe as an HTTP service: ``adpipe serve`` (FastAPI on uvicorn).

Needs the ``service`` extra: ``pip install 'adpipe[service]'``. Endpoints live under ``/v1``;
``/openapi.json`` and ``/docs`` describe them, ``/dashboard`` shows runs, models, anomalies and drift.
"""
