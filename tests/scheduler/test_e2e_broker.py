"""End to end: the broker is down when jobs are submitted, and the broker restarts and
forgets its queues. Jobs are delayed, never lost (real scheduler and worker processes on
a redis-server of the test's own, without persistence)."""

from __future__ import annotations

import time

import pytest
import redis

from shared.queues import SHARED_QUEUE
from shared.states import JobState
from shared.store.fairshare import register_worker
from tests.processes import wait_for
from tests.scheduler.cluster import Cluster
from tests.scheduler.redis_server import PrivateRedis

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_jobs_submitted_while_the_broker_is_down_run_once_it_is_back(
        cluster: Cluster, private_redis: PrivateRedis) -> None:
    cluster.import_dataset()
    scheduler = cluster.scheduler()
    cluster.worker("shared")
    [warm] = cluster.wait_for_states([cluster.submit()], timeout=30)
    assert warm.state == JobState.COMPLETED

    private_redis.stop()
    ids = [cluster.submit(priority=p) for p in (0, 1, 2)]  # the nudges go nowhere either
    time.sleep(3)  # several sweeps, each failing to publish within its timeout
    for job in cluster.jobs(ids):
        assert job.state == JobState.PENDING and job.published_at is None
    assert scheduler.alive()

    private_redis.start()
    jobs = cluster.wait_for_states(ids, timeout=60)
    assert [j.state for j in jobs] == [JobState.COMPLETED] * 3
    assert all(j.attempts == 1 for j in jobs)
    assert "broker unavailable" in scheduler.log() and "broker is back" in scheduler.log()


def test_a_redis_restart_that_empties_the_queues_loses_no_job(
        cluster: Cluster, private_redis: PrivateRedis) -> None:
    # Far beyond the test: only noticing the restart can bring the messages back.
    cluster.overrides["DATAPLANE_REPUBLISH_AFTER_SECONDS"] = "3600"
    # Admission control publishes only to a queue some worker serves: a registered one
    # that consumes nothing yet (kept live for the whole test by a long TTL).
    cluster.overrides["DATAPLANE_WORKER_TTL_SECONDS"] = "3600"
    with cluster.store.unit_of_work() as session:
        register_worker(session, name="not-consuming", queue=SHARED_QUEUE, concurrency=5)
    cluster.import_dataset()
    scheduler = cluster.scheduler()
    ids = [cluster.submit() for _ in range(5)]  # no consumer yet: they wait in the queue
    wait_for(lambda: all(j.published_at is not None for j in cluster.jobs(ids)), timeout=15,
             message="the jobs to be published")
    client = redis.Redis.from_url(private_redis.url)
    assert _queued(client) == 5

    private_redis.restart()  # killed without saving: the 5 messages are gone
    client = redis.Redis.from_url(private_redis.url)
    wait_for(lambda: _queued(client) == 5, timeout=15,
             message="the dispatcher to publish the jobs again")
    assert "republishing 5 pending job(s)" in scheduler.log()

    cluster.worker("shared")
    jobs = cluster.wait_for_states(ids, timeout=30)
    assert [j.state for j in jobs] == [JobState.COMPLETED] * 5


def _queued(client: redis.Redis) -> int:
    try:
        return sum(int(client.llen(key)) for key in client.scan_iter(f"{SHARED_QUEUE}*"))
    except redis.ConnectionError:
        return -1
