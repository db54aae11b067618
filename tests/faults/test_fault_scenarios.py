"""CI-sized runs of bench/faults.py's scenarios: 30 request-cancellation timings, and
PostgreSQL restarts during 20 jobs. Each runs on a PostgreSQL and a Redis of its own (free
ports; the shared 5432/6379 servers are never touched), with a scheduler and 3 workers,
and must end with every invariant holding (bench/_faults/invariants.py)."""

from __future__ import annotations

import time

import pytest

from bench._faults.scenarios import Options, ScenarioResult, run_cancel, run_postgres
from bench._faults.servers import missing_tools
from tests.conftest import IN_CI

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(autouse=True)
def _private_servers_possible() -> None:
    missing = missing_tools()
    if missing:
        message = f"cannot run private PostgreSQL/Redis servers: missing {', '.join(missing)}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _assert_sound(result: ScenarioResult) -> None:
    report = result.report
    details = "\n".join([*result.lines(), *result.problems])
    assert report.lost == [], details
    assert report.not_terminal() == [], details
    assert report.max_snapshots() <= 1, details
    assert report.log_mismatches() == [], details
    assert report.violations == {}, details
    assert result.missing_files == [], details
    assert result.all_terminal_after is not None and result.all_terminal_after <= result.bound, details
    assert result.ok, details


def test_random_cancellation_timings_leave_every_job_sound() -> None:
    started = time.monotonic()
    result = run_cancel(Options(jobs=30, seed=7))
    _assert_sound(result)
    states = result.report.by_state()
    # 30 timings + one calibration job per worker slot; most requests land before the end
    assert sum(states.values()) == 33, states
    assert states["cancelled"] >= 15, states
    assert set(states) <= {"cancelled", "completed"}, states
    assert len(result.events) == 30
    assert time.monotonic() - started < 90


def test_postgres_restarts_during_jobs_lose_none_and_run_none_twice() -> None:
    started = time.monotonic()
    result = run_postgres(Options(jobs=20, seed=11))
    _assert_sound(result)
    assert len(result.report.records) == 20
    assert result.events and all(e.kind.startswith("postgres_restart") for e in result.events)
    # a job may fail only as the lease path fails it (3 runs cut off by restarts), never otherwise
    for record in result.report.present:
        if record.state == "failed":
            assert record.attempts == 3 and all(
                f["value"].get("reason") == "worker_lost" for f in record.failures), record
        else:
            assert record.state == "completed", record
    assert time.monotonic() - started < 90
