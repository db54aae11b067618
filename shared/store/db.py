"""Engines and the unit of work.

Repositories never commit: `unit_of_work(session_factory)` owns the transaction,
once per task step or HTTP request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import CursorResult, Engine, Executable, create_engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers (API) run beside the writer (workers); busy_timeout
            # makes concurrent writers wait instead of failing with "database is locked".
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def execute_dml(session: Session, stmt: Executable, params: Any = None) -> int:
    """Run an UPDATE/DELETE without touching the session's identity map; rows affected."""
    result = session.execute(stmt, params, execution_options={"synchronize_session": False})
    assert isinstance(result, CursorResult)
    return result.rowcount


def is_disconnect(error: BaseException) -> bool:
    """A connection-level failure of the store (server gone, restarting, refusing), not a
    SQL error: the request was fine and may succeed once the store is back."""
    return isinstance(error, OperationalError | InterfaceError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory.begin() as session:
        yield session
