"""A fresh DuckDB connection per job, locked down before any user SQL reaches it.

The NQL compiler only lets a plain read of the job's datasets through; this connection is
the second wall, so that a gap in the compiler is still not an escape (reliability notes
§3). The order matters and is the one that was seen to work on DuckDB 2.0.0:

1. extension autoinstall/autoload off in `connect()` (they default to on in Python);
2. community extensions off, Python replacement scans off, no progress bar;
3. resource limits: threads, memory, a private temp directory and its size, the time limit;
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


# Starting a DuckDB database costs ~13 ms, a few percent of a small job: a pool process
# makes the next job's database on a background thread while the task returns, is acked
# and the next message is fetched. It is still fresh (never used by a job, configured
# and locked by the job that takes it) and never crosses a fork (kept with its pid).
_spare: tuple[int, Future[duckdb.DuckDBPyConnection]] | None = None
_spare_maker: tuple[int, ThreadPoolExecutor] | None = None


def make_spare() -> None:
    """Start the next job's database now, in the background (call when a job is done)."""
    global _spare, _spare_maker
    pid = os.getpid()
    if _spare is not None and _spare[0] == pid:
        return
    if _spare_maker is None or _spare_maker[0] != pid:
        _spare_maker = (pid, ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-spare"))
    _spare = (pid, _spare_maker[1].submit(_connect))


def _fresh() -> duckdb.DuckDBPyConnection:
    global _spare
    spare, _spare = _spare, None
    if spare is not None and spare[0] == os.getpid():
        try:
            return spare[1].result()
        except duckdb.Error:
            pass  # a spare that failed to start is no reason to fail the job: try again here
    return _connect()


def _apply_limits(con: duckdb.DuckDBPyConnection, limits: Limits) -> None:
    limits.temp_directory.mkdir(parents=True, exist_ok=True)
    for statement in (
        "SET allow_community_extensions = false",
        "SET python_enable_replacements = false",
        "SET enable_progress_bar = false",
        f"SET threads = {int(limits.threads)}",
        f"SET memory_limit = {sql_string(limits.memory_limit)}",
        f"SET temp_directory = {sql_string(limits.temp_directory)}",
        f"SET max_temp_directory_size = {sql_string(limits.max_temp_directory_size)}",
        f"SET max_execution_time = {int(limits.max_execution_ms)}",
    ):
        con.execute(statement)


def _directory(path: Path) -> str:
    # A trailing separator: `/data/datasets/1/` must not also allow `/data/datasets/12`.
    return str(path.resolve()).rstrip("/") + "/"


def open_sandbox(limits: Limits, *, allowed_directories: Sequence[Path],
                 bind: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
                 ) -> duckdb.DuckDBPyConnection:
    """A locked connection that can read (and COPY to) `allowed_directories` only."""
    con = _fresh()
    try:
        _apply_limits(con, limits)
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
