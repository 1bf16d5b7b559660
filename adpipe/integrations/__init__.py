"""Integrations that run adpipe inside other systems (Airflow, Spark)."""
