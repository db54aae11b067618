"""Timestamp arithmetic the dispatcher needs in SQL, on both backends.

SQLite keeps our UTC datetimes as naive ISO text (shared/store/types.py), so
`published_at - updated_at` has no portable spelling; both dialects do agree on
seconds since the epoch."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class epoch_seconds(FunctionElement[float]):  # lower case: reads like SQL
    """Seconds since 1970-01-01 UTC of a UTCDateTime column."""

    type = Float()
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any] | Any) -> None:
        super().__init__(column)


@compiles(epoch_seconds, "postgresql")
def _epoch_pg(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})"


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    # julianday() reads the stored 'YYYY-MM-DD HH:MM:SS.ffffff'; 2440587.5 is 1970-01-01.
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"
