"""A fresh DuckDB connection per job, locked down before any user SQL reaches it.

The NQL compiler only lets a plain read of the job's datasets through; this connection is
the second wall, so that a gap in the compiler is still not an escape (reliability notes
§3). The order matters and is the one that was seen to work on DuckDB 2.0.0:

1. extension autoinstall/autoload off in `connect()` (they default to on in Python);
2. community extensions off, Python replacement scans off, progress tracked but never
   printed (query_progress() for the watcher), threads,
   memory and temp size limits (for a spare database: before its job is known);
3. the job's limits: a private temp directory and the time limit;
4. `allowed_directories` (must be set while external access is still on);
5. the datasets bound as views over their Parquet files (`bind`);
6. external access off, then the configuration locked: no SET/RESET/PRAGMA after this.

`trusted_connection` is the same minus the lockdown, for SQL we write ourselves over our
own files (column statistics, the importer); it still has the resource limits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb

from shared.config import Settings


def sql_string(value: str | Path) -> str:
    """A SQL string literal. Only for paths we built ourselves."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, kw_only=True)
class Limits:
    threads: int
    memory_limit: str
    temp_directory: Path
    max_temp_directory_size: str
    max_execution_ms: int  # 0: no limit

    @classmethod
    def from_settings(cls, settings: Settings, *, temp_directory: Path,
                      max_execution_ms: int) -> Limits:
        return cls(threads=settings.duckdb_threads, memory_limit=settings.duckdb_memory_limit,
                   temp_directory=temp_directory,
                   max_temp_directory_size=settings.duckdb_max_temp_directory_size,
                   max_execution_ms=max(0, max_execution_ms))


def _connect() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:", config={
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    })


@dataclass(frozen=True)
class _Static:
    """The part of `Limits` that does not depend on the job: a spare gets it in advance."""

    threads: int
    memory_limit: str
    max_temp_directory_size: str

    @classmethod
    def of(cls, limits: Limits) -> _Static:
        return cls(limits.threads, limits.memory_limit, limits.max_temp_directory_size)


def _configure(con: duckdb.DuckDBPyConnection, static: _Static) -> None:
    for statement in (
        "SET allow_community_extensions = false",
        "SET python_enable_replacements = false",
        # Progress *tracking* only, for query_progress() (the watcher samples it with the
        # heartbeat, GET /jobs/{id} statistics.progress); nothing is printed.
        "SET enable_progress_bar = true",
        "SET enable_progress_bar_print = false",
        f"SET threads = {int(static.threads)}",
        f"SET memory_limit = {sql_string(static.memory_limit)}",
        f"SET max_temp_directory_size = {sql_string(static.max_temp_directory_size)}",
    ):
        con.execute(statement)


def _configured(static: _Static | None) -> tuple[duckdb.DuckDBPyConnection, _Static | None]:
    con = _connect()
    try:
        if static is not None:
            _configure(con, static)
    except BaseException:
        con.close()
        raise
    return con, static


# Starting a DuckDB database costs ~20 ms of CPU (it registers every built-in function), a
# large part of a small job, and closing one ~6 ms. So a pool process makes the next job's
# database, with the settings that do not depend on the job, on a background thread while
# the task returns, is acked and the next message fetched; and a finished job's database is
# closed on that thread too. A spare is still fresh (never used by a job, given its job's
# directories, views and lockdown by the job that takes it) and never crosses a fork (kept
# with its pid). DuckDB releases the GIL while it starts and closes.
_spare: tuple[int, Future[tuple[duckdb.DuckDBPyConnection, _Static | None]]] | None = None
_background: tuple[int, ThreadPoolExecutor] | None = None


def _executor() -> ThreadPoolExecutor:
    global _background
    pid = os.getpid()
    if _background is None or _background[0] != pid:
        _background = (pid, ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-spare"))
    return _background[1]


def make_spare(settings: Settings | None = None) -> None:
    """Start the next job's database now, in the background (call when a job is done);
    with `settings`, also give it their job-independent limits."""
    global _spare
    if _spare is not None and _spare[0] == os.getpid():
        return
    static = None if settings is None else _Static(settings.duckdb_threads, settings.duckdb_memory_limit,
                                                   settings.duckdb_max_temp_directory_size)
    _spare = (os.getpid(), _executor().submit(_configured, static))


def retire(con: duckdb.DuckDBPyConnection) -> None:
    """Close a job's database off the job's path (it is never used again)."""
    _executor().submit(con.close)


def _fresh(static: _Static) -> tuple[duckdb.DuckDBPyConnection, bool]:
    """A database never used before, and whether it already has `static`."""
    global _spare
    spare, _spare = _spare, None
    if spare is not None and spare[0] == os.getpid():
        try:
            con, configured = spare[1].result()
        except duckdb.Error:
            pass  # a spare that failed to start is no reason to fail the job: try again here
        else:
            if configured == static:
                return con, True
            con.close()
    return _connect(), False


def _apply_limits(con: duckdb.DuckDBPyConnection, limits: Limits, *, configured: bool = False) -> None:
    if not configured:
        _configure(con, _Static.of(limits))
    limits.temp_directory.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = {sql_string(limits.temp_directory)}")
    con.execute(f"SET max_execution_time = {int(limits.max_execution_ms)}")


def _directory(path: Path) -> str:
    # A trailing separator: `/data/datasets/1/` must not also allow `/data/datasets/12`.
    return str(path.resolve()).rstrip("/") + "/"


def open_sandbox(limits: Limits, *, allowed_directories: Sequence[Path],
                 bind: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
                 ) -> duckdb.DuckDBPyConnection:
    """A locked connection that can read (and COPY to) `allowed_directories` only."""
    con, configured = _fresh(_Static.of(limits))
    try:
        _apply_limits(con, limits, configured=configured)
        directories = ", ".join(sql_string(_directory(p)) for p in allowed_directories)
        con.execute(f"SET allowed_directories = [{directories}]")
        if bind is not None:
            bind(con)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def trusted_connection(limits: Limits) -> duckdb.DuckDBPyConnection:
    """Resource limits, no lockdown: only for SQL that contains no user input."""
    con = _connect()
    try:
        _apply_limits(con, limits)
    except BaseException:
        con.close()
        raise
    return con
