"""SQL sink: upsert result rows into a database table on their key (SQLAlchemy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ConfigDict, SecretStr, model_validator

import adpipe
from adpipe.core.errors import SinkError


class SqlSink(adpipe.Sink):
    """Upsert results into a SQL table keyed on the id columns (PostgreSQL, SQLite, ...)."""

    name = "sql"

    class Params(adpipe.Params):
        model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

        url: SecretStr | None = adpipe.Field(
            None, description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host:5432/db (never printed); "
            "a relative sqlite:/// path is relative to the working directory: use `path` instead"
        )
        path: Path | None = adpipe.Field(
            None, description="SQLite database file, instead of `url`; relative paths resolve against the "
            "config file's folder"
        )
        table: str = adpipe.Field(min_length=1, description="table name; created when missing")
        db_schema: str | None = adpipe.Field(None, alias="schema", min_length=1, description="database schema")
        key: list[str] | None = adpipe.Field(
            None, min_length=1, description="key columns (upsert on them); default: the pipeline's id columns"
        )
        chunksize: int = adpipe.Field(10_000, ge=1, description="rows sent per statement round trip")

        @model_validator(mode="after")
        def _one_target(self):
            if (self.url is None) == (self.path is None):
                raise ValueError("give exactly one of `url` (any database) or `path` (a SQLite file)")
            return self

    engine = None
    table = None
    _on_conflict = False
    key: list[str] = []

    @property
    def url(self) -> str:
        if self.params.path is not None:
            return f"sqlite:///{self.params.path.resolve()}"
        return self.params.url.get_secret_value()

    @property
    def qualified_table(self) -> str:
        schema = self.params.db_schema
        return f"{schema}.{self.params.table}" if schema else self.params.table

    def open(self, context: Any = None) -> None:
        from adpipe.plugins.sinks import _sql

        self.close(True)
        self.key = list(self.params.key or getattr(context, "id_columns", None) or [])
        if not self.key:
            raise SinkError(
                f"The sql sink for table '{self.qualified_table}' needs key columns to upsert on.",
                hint="set the sink's `key`, or the pipeline's `columns.id`",
            )
        if self.params.path is not None:
            try:
                self.params.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SinkError(f"Cannot create the folder of SQLite file '{self.params.path}': {exc}") from exc
        self.engine = _sql.connect(self.url)

    def write(self, frame: pd.DataFrame) -> None:
        from adpipe.plugins.sinks import _sql

        if self.engine is None:
            raise SinkError("The sql sink was written to before open().", hint="call open(context) first")
        frame = frame.rename(columns=str)  # SQL names columns with strings
        missing = [k for k in self.key if k not in frame.columns]
        if missing:
            raise SinkError(
                f"Result frame for table '{self.qualified_table}' lacks key column(s) {missing}; "
                f"it has {list(frame.columns)}.",
                hint="the sink's `key` must name columns of the output (the id columns)",
            )
        if frame.empty:
            return
        nulls = frame[self.key].isna().any(axis=1)
        if nulls.any():
            raise SinkError(
                f"{int(nulls.sum())} row(s) for table '{self.qualified_table}' have a missing key ({self.key}).",
                hint="key columns must identify every record; drop or fill rows without a key upstream",
            )
        frame = frame.drop_duplicates(subset=self.key, keep="last")  # one row per key, the latest wins
        try:
            if self.table is None:
                self.table = _sql.ensure_table(self.engine, self.params.table, self.params.db_schema, frame, self.key)
                self._on_conflict = _sql.unique_on(self.table, self.key)
            extra = [c for c in frame.columns if c not in self.table.c]
            if extra:
                raise SinkError(
                    f"Table '{self.qualified_table}' has no column(s) {extra} for this output.",
                    hint="add the columns to the table, or write to a new table",
                )
            rows = _sql.records(frame)
            with self.engine.begin() as conn:  # one transaction per batch
                for chunk in _sql.chunks(rows, self.params.chunksize):
                    _sql.upsert(conn, self.table, chunk, self.key, self._on_conflict)
        except _sql.DatabaseError as exc:
            raise SinkError(
                f"Writing {len(frame)} rows to table '{self.qualified_table}' at {_sql.masked(self.url)} failed: "
                f"{_sql.db_message(exc, self.url)}",
                hint="check that the table's columns and types match the output (or write to a new table)",
            ) from exc

    def close(self, success: bool) -> None:
        """Release the connection pool (each batch was already committed on its own)."""
        if self.engine is not None:
            self.engine.dispose()
        self.engine = self.table = None

    def outputs(self) -> list[str]:
        from adpipe.plugins.sinks._sql import masked

        return [f"{masked(self.url)}#{self.qualified_table}"]

    def __repr__(self) -> str:
        target = f"path={str(self.params.path)!r}" if self.params.path else "url=<hidden>"
        return f"SqlSink({target}, table={self.qualified_table!r}, key={self.params.key!r})"
