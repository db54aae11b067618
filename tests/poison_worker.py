"""Test-only worker entry point: the real `dataplane worker`, whose DuckDB misbehaves on
markers in the SQL it runs. Never used outside tests; production code has no hook.

    python -m tests.poison_worker worker --cluster shared --concurrency 1

A job's NQL selects a marker as a string literal; the compiled SQL keeps it, so the
run's DuckDB statement carries it:

- `'dataplane-test-poison'`: the pool process dies with `os._exit(137)` when the
  statement starts, as if DuckDB crashed or the OOM killer struck. The job is already
  claimed and leased, so only the reaper can get it going again.
- `'dataplane-test-sleep-<seconds>'`: the statement runs, then the process sleeps that
  long before going on (the watcher thread keeps the lease alive meanwhile): a job
  that is slow in the middle, with its output already staged.

The hook wraps `duckdb.connect`, so it does not depend on how the worker is organised,
only on it running the job's SQL through DuckDB. The NQL checker passes SQL to DuckDB
as a parameter, never in the statement text, so it never trips a marker.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any

import duckdb

POISON = "dataplane-test-poison"
SLEEP = re.compile(r"dataplane-test-sleep-(\d+(?:\.\d+)?)")


def poison_nql(relation: str) -> str:
    return f"EXPLAIN SELECT '{POISON}' AS marker, \"x\" FROM {relation}"


def sleep_marker(seconds: float) -> str:
    return f"dataplane-test-sleep-{seconds:g}"


class _Connection:
    """A DuckDB connection that reads the markers; everything else passes through."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        text = query if isinstance(query, str) else ""
        if POISON in text:
            sys.stderr.write(f"poison_worker: killing pool process {os.getpid()}\n")
            sys.stderr.flush()
            os._exit(137)
        result = self._con.execute(query, *args, **kwargs)
        if match := SLEEP.search(text):
            time.sleep(float(match.group(1)))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def install() -> None:
    real_connect = duckdb.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        return _Connection(real_connect(*args, **kwargs))

    duckdb.connect = connect  # type: ignore[assignment]


if __name__ == "__main__":
    install()  # before the worker imports anything, so forked pool processes inherit it
    from dataplane.cli import main

    main(prog_name="dataplane")
