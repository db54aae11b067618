"""End to end on real processes: routing by cluster and compute pool, and priority
overtaking a queue (PostgreSQL store, Redis broker, `dataplane scheduler` and
`dataplane worker` subprocesses)."""

from __future__ import annotations

import time
import uuid

import pytest

from shared.nudge import nudge_dispatcher
from shared.states import JobState
from shared.store.fairshare import NO_WORKER, wait_reason
from shared.store.jobs import NewJob, create_job
from tests.processes import wait_for
from tests.scheduler.cluster import COMPANY, Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_jobs_run_only_on_workers_of_their_cluster_and_pool(cluster: Cluster) -> None:
    cluster.import_dataset()
    pool = uuid.uuid4()
    cluster.scheduler()
    cluster.worker("shared")
    shared = cluster.submit()
    dedicated = cluster.submit(execution_cluster="dedicated")
    pooled = cluster.submit(execution_cluster="dedicated", compute_pool_id=pool)

    [done] = cluster.wait_for_states([shared], timeout=30)
    assert done.state == JobState.COMPLETED and done.executor.startswith("dataplane.shared.")
    time.sleep(1.5)  # ample time for a wrongly routed message to be picked up
    for job in cluster.jobs([dedicated, pooled]):
        assert job.state == JobState.PENDING and job.attempts == 0
        # Admission control: nothing is published to a queue no live worker serves.
        assert job.published_at is None
        with cluster.store.unit_of_work() as session:
            assert wait_reason(session, cluster.settings, job) == NO_WORKER

    cluster.worker("dedicated")
    [done] = cluster.wait_for_states([dedicated], timeout=30)
    assert done.state == JobState.COMPLETED
    assert done.executor.startswith("dataplane.dedicated.") and str(pool) not in done.executor
    time.sleep(1.0)
    assert cluster.job(pooled).state == JobState.PENDING  # no worker serves its pool yet

    cluster.worker("dedicated", pool=pool)
    [done] = cluster.wait_for_states([pooled], timeout=30)
    assert done.state == JobState.COMPLETED and str(pool) in done.executor


def test_priority_two_overtakes_a_queue_of_priority_zero(cluster: Cluster) -> None:
    cluster.import_dataset()
    cluster.scheduler()
    cluster.worker("shared", concurrency=1)
    nql = f'EXPLAIN SELECT "x" FROM {cluster.dataset}'
    with cluster.store.unit_of_work() as session:  # 100 jobs committed at once
        normal = [create_job(session, NewJob(company_id=COMPANY, user_id=1, type="nql-forecast",
                                             nql=nql))[0].id for _ in range(100)]
    nudge_dispatcher(cluster.settings)
    # Admission control publishes only what the worker can start soon (here 1 + buffer):
    # the rest wait in the store, where the urgent job goes ahead of them.
    wait_for(lambda: any(j.published_at is not None for j in cluster.jobs(normal)),
             timeout=10, interval=0.01, message="the first jobs to be queued")

    urgent = cluster.submit(nql, priority=2)

    jobs = cluster.wait_for_states([*normal, urgent], timeout=90)
    assert all(j.state == JobState.COMPLETED for j in jobs), [j.failures for j in jobs]
    started = {j.id: j.started_at for j in jobs}
    overtaken = sum(1 for job_id in normal if started[job_id] > started[urgent])
    print(f"the priority-2 job started before {overtaken} of the 100 priority-0 jobs")
    # The worker had run a few before the urgent job was even submitted; it then starts
    # next (the worker reserves a message only when its process is free).
    assert overtaken >= 85, f"only {overtaken} of 100 started after the priority-2 job"


