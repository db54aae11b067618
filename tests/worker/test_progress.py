"""A running job's progress: DuckDB's query_progress() on the locked-down job connection,
sampled by the watcher with its heartbeat and shown as statistics.progress."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import duckdb
import pytest

from shared.config import Settings
from shared.store import Store
from shared.wire import job_to_wire
from worker.watch import Watcher

from .conftest import job_row
from .test_sandbox import sandbox  # noqa: F401 - the locked-down connection fixture
from .test_watch import _claimed

LONG = "SELECT count(*) FROM range(3000000000) t(i) WHERE i % 7 = 3"


@pytest.mark.postgres
def test_heartbeat_records_query_progress_of_the_sandboxed_run(
        pg_store: Store, wsettings: Settings,
        sandbox: tuple[duckdb.DuckDBPyConnection, Path]) -> None:  # noqa: F811
    con, _ = sandbox
    job_id = _claimed(pg_store)
    seen: list[int] = []
    with Watcher(pg_store, job_id, 1, deadline=time.monotonic() + 60, poll_seconds=0.05,
                 heartbeat_seconds=0.2, lease_seconds=30) as watcher:
        watcher.attach(con)
        worker = threading.Thread(target=lambda: _run_until_interrupted(con), daemon=True)
        worker.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(set(seen)) < 3:
            progress = job_to_wire(job_row(pg_store, job_id))["statistics"].get("progress")
            if progress is not None:
                seen.append(progress)
            time.sleep(0.1)
        con.interrupt()
        worker.join(timeout=10)
    assert len(set(seen)) >= 2, seen  # it moved
    assert all(0 <= p <= 100 for p in seen) and seen == sorted(seen)
    # The lockdown still holds: no SET after the sandbox locked the configuration.
    with pytest.raises(duckdb.Error):
        con.execute("SET enable_progress_bar_print = true")


def _run_until_interrupted(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # interrupted at the end of the test
        con.execute(LONG).fetchall()
