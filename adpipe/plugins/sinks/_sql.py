"""SQLAlchemy plumbing of the sql sink: connect, create the keyed table, upsert rows."""

from __future__ import annotations

from typing import Any, Iterator

import pandas as pd
import sqlalchemy as sa
from pandas.api import types as pdt
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from adpipe.core.errors import SinkError

DatabaseError = sa.exc.SQLAlchemyError

#: dialects with INSERT ... ON CONFLICT (key) DO UPDATE; others delete-by-key then insert
ON_CONFLICT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def masked(url: str) -> str:
    """The URL with its password replaced by ***, safe to print."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def scrub(message: str, url: str) -> str:
    """Remove the password from a driver's message, in case the driver echoed it."""
    try:
        password = make_url(url).password
    except Exception:
        password = None
    return message.replace(password, "***") if password else message


def db_message(exc: Exception, url: str) -> str:
    orig = getattr(exc, "orig", None)
    return scrub(str(orig if orig is not None else exc).strip(), url)


def connect(url: str) -> sa.Engine:
    """An engine for ``url``, after one test connection; SinkError (password masked) if it fails."""
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, ValueError) as exc:
        raise SinkError(
            f"Cannot use the database URL {masked(url)}: {scrub(str(exc), url)}",
            hint="URLs look like postgresql+psycopg://user:password@host:5432/db or sqlite:///results.db; "
            "the driver (e.g. psycopg) must be installed",
        ) from exc
    try:
        with engine.connect():
            pass
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        engine.dispose()
        raise SinkError(
            f"Cannot connect to the database {masked(url)}: {db_message(exc, url)}",
            hint="check that the server is running and reachable, and the user, password and database name",
        ) from exc
    return engine


def column_type(dtype: Any, is_key: bool, dialect: str) -> sa.types.TypeEngine:
    if pdt.is_bool_dtype(dtype):
        return sa.Boolean()
    if pdt.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pdt.is_float_dtype(dtype):
        return sa.Double()
    if isinstance(dtype, pd.DatetimeTZDtype):
        return sa.DateTime(timezone=True)
    if pdt.is_datetime64_dtype(dtype):
        return sa.DateTime()
    if pdt.is_timedelta64_dtype(dtype):
        return sa.Interval()
    # text; servers that cannot index unbounded text get a bounded key column
    return sa.Text() if not is_key or dialect in ON_CONFLICT else sa.String(255)


def keyed_table(name: str, schema: str | None, frame: pd.DataFrame, key: list[str], dialect: str) -> sa.Table:
    """The table definition for ``frame``: a column per frame column, primary key on ``key``."""
    columns = [
        sa.Column(c, column_type(frame[c].dtype, c in key, dialect), primary_key=c in key, autoincrement=False)
        for c in frame.columns
    ]
    return sa.Table(name, sa.MetaData(), *columns, schema=schema)


def ensure_table(engine: sa.Engine, name: str, schema: str | None, frame: pd.DataFrame, key: list[str]) -> sa.Table:
    """Reflect the table, or create it from ``frame``'s dtypes with a primary key on ``key``."""
    inspector = sa.inspect(engine)
    if schema and not inspector.has_schema(schema):
        raise SinkError(
            f"The database has no schema '{schema}'.", hint=f"create it (CREATE SCHEMA {schema}) or fix the sink's `schema`"
        )
    if not inspector.has_table(name, schema=schema):
        keyed_table(name, schema, frame, key, engine.dialect.name).metadata.create_all(engine, checkfirst=True)
    return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine)


def unique_on(table: sa.Table, key: list[str]) -> bool:
    """Whether the table has a primary key, unique constraint or unique index on exactly ``key``."""
    wanted = set(key)
    constraints = [c for c in table.constraints if isinstance(c, (sa.PrimaryKeyConstraint, sa.UniqueConstraint))]
    return any(set(c.columns.keys()) == wanted for c in constraints) or any(
        ix.unique and set(ix.columns.keys()) == wanted for ix in table.indexes
    )


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values, missing values as None."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def chunks(rows: list, size: int) -> Iterator[list]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def upsert(conn: sa.Connection, table: sa.Table, rows: list[dict], key: list[str], on_conflict: bool) -> None:
    """Insert ``rows``, replacing the rows with the same key (so a replayed batch leaves one row per key)."""
    columns = list(rows[0])
    insert = ON_CONFLICT.get(conn.dialect.name) if on_conflict else None
    if insert is not None:
        stmt = insert(table)
        update = {c: stmt.excluded[c] for c in columns if c not in key}
        stmt = (stmt.on_conflict_do_update(index_elements=key, set_=update) if update
                else stmt.on_conflict_do_nothing(index_elements=key))  # fmt: skip
        conn.execute(stmt, rows)
        return
    match = sa.and_(*(table.c[k] == sa.bindparam(f"key_{i}") for i, k in enumerate(key)))
    conn.execute(table.delete().where(match), [{f"key_{i}": r[k] for i, k in enumerate(key)} for r in rows])
    conn.execute(table.insert(), rows)
