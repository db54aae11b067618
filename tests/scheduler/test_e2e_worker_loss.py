"""End to end: a worker SIGKILLed mid-job, and a query that kills its worker every
time. The lease expires, the reaper requeues (or, past the attempt cap, fails) the job,
the dispatcher publishes it again and another worker runs it.

Workers start from tests/poison_worker.py: the real worker, whose DuckDB sleeps or dies
on markers in the SQL (a test-only entry point; production code has no such hook)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from shared.states import JobState
from shared.store.jobs import transitions_of
from shared.store.models import Snapshot
from tests.poison_worker import POISON, sleep_marker
from tests.processes import Process
from tests.scheduler.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

LEASE = 3
JOB_SECONDS = 4


def running_on(workers: list[Process], executor: str) -> Process:
    """The worker whose pool process runs the job: executors are `<queue>.<pid>@host/...`."""
    [worker] = [w for w in workers if f".{w.pid}@" in executor]
    return worker


def test_a_job_whose_worker_is_killed_runs_again_elsewhere_once(cluster: Cluster) -> None:
    cluster.import_dataset()
    cluster.scheduler()
    workers = [cluster.worker("shared", poison=True) for _ in range(2)]
    job_id = cluster.submit(
        f'CREATE MATERIALIZED VIEW "slow_view" AS '
        f"SELECT '{sleep_marker(JOB_SECONDS)}' AS marker, \"x\" FROM {cluster.dataset}")
    [job] = cluster.wait_for_states([job_id], [JobState.RUNNING], timeout=30)
    time.sleep(1.0)  # well into the run: its output is staged, the lease heartbeated

    victim = running_on(workers, job.executor)
    victim.kill()  # SIGKILL to the worker and its pool processes
    killed_at = time.monotonic()

    [job] = cluster.wait_for_states([job_id], timeout=LEASE + JOB_SECONDS + 20)
    took = time.monotonic() - killed_at
    assert job.state == JobState.COMPLETED, (job.failures, cluster.logs())
    assert took < LEASE + JOB_SECONDS + 10, f"completed {took:.1f}s after the kill"
    [survivor] = [w for w in workers if w is not victim]
    assert running_on(workers, job.executor) is survivor
    assert job.attempts == 2
    [lost] = job.failures
    assert lost["message"].startswith("worker lost during attempt 1 (executor ")
    with cluster.store.unit_of_work() as session:
        moves = [(t.from_state, t.to_state, t.attempt) for t in transitions_of(session, job_id)]
        snapshots = session.scalar(select(func.count()).select_from(Snapshot).where(
            Snapshot.dataset_id == job.result["dataset_id"]))
    assert moves == [(None, "pending", 0), ("pending", "running", 1), ("running", "pending", 1),
                     ("pending", "running", 2), ("running", "completed", 2)]
    assert snapshots == 1 and cluster.snapshots_of_job(job_id) == 1


def test_a_query_that_kills_its_worker_every_time_fails_after_the_attempt_cap(
        cluster: Cluster) -> None:
    cluster.import_dataset()
    scheduler = cluster.scheduler()
    workers = [cluster.worker("shared", poison=True, concurrency=1) for _ in range(2)]
    job_id = cluster.submit(f"EXPLAIN SELECT '{POISON}' AS marker, \"x\" FROM {cluster.dataset}")

    # Each attempt: the pool process dies, the lease runs out, the reaper requeues.
    [job] = cluster.wait_for_states([job_id], timeout=3 * (LEASE + 5) + 10)

    assert job.state == JobState.FAILED, (job.failures, cluster.logs())
    assert job.attempts == 3
    assert [f["message"].split(";")[0] for f in job.failures] == [
        f"worker lost during attempt {n} (executor {f['value']['executor']})"
        for n, f in zip((1, 2, 3), job.failures, strict=True)]
    assert "lost on every attempt (3 of at most 3)" in job.failures[-1]["message"]
    assert "failed" in scheduler.log()
    time.sleep(LEASE + 1)
    assert cluster.job(job_id).state == JobState.FAILED  # not in a loop
    # The workers replaced their dead pool processes and still serve.
    assert all(w.alive() for w in workers)
    [ok] = cluster.wait_for_states([cluster.submit()], timeout=30)
    assert ok.state == JobState.COMPLETED
