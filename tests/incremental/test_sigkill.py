"""A real `dataplane worker` process SIGKILLed in the middle of an incremental refresh: the
view's progress does not move and nothing is published; once the reaper has taken the job
back, the next refresh reads the same delta again and counts every input row once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from scheduler.reaper import Reaper
from shared.celery_app import make_app
from shared.config import Settings
from shared.queues import RUN_JOB_TASK, broker_priority, queue_for
from shared.states import JobState
from shared.store import Store
from shared.store.datasets import snapshot_of_job
from shared.store.jobs import mark_published
from shared.store.types import utcnow
from tests.processes import start, wait_for
from tests.worker.conftest import job_row, submit

from .helpers import Events, progress, view_rows
from .test_delta_views import COUNT_FAST, COUNT_SLOW, refresh

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


def test_sigkill_during_an_incremental_refresh(pg_store: Store, pg_database: str, redis_url: str,
                                               tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_database, broker_url=redis_url,
                        job_timeout_seconds=60, lease_seconds=3, duckdb_threads=2,
                        duckdb_memory_limit="1GB", cancel_poll_seconds=0.1)
    settings.ensure_dirs()
    events = Events(settings, pg_store, tmp_path)
    events.write(100)
    refresh(pg_store, settings, COUNT_FAST)
    before = progress(pg_store, "cnt")
    events.write(4000)

    env = {"DATAPLANE_DATABASE_URL": pg_database, "DATAPLANE_BROKER_URL": redis_url,
           "DATAPLANE_DATA_DIR": str(settings.data_dir), "DATAPLANE_JOB_TIMEOUT_SECONDS": "60",
           "DATAPLANE_LEASE_SECONDS": "3", "DATAPLANE_DUCKDB_THREADS": "2",
           "DATAPLANE_DUCKDB_MEMORY_LIMIT": "1GB"}
    worker = start("worker", ["worker", "--cluster", "shared", "--concurrency", "1"], env, tmp_path / "logs")
    app = make_app(settings)
    try:
        wait_for(lambda: " ready." in worker.log() or not worker.alive(), timeout=60, message="worker ready")
        job_id = submit(pg_store, COUNT_SLOW)
        job = job_row(pg_store, job_id)
        with pg_store.unit_of_work() as session:
            mark_published(session, job_id)
        app.send_task(RUN_JOB_TASK, kwargs={"job_id": str(job_id), "job_type": job.type,
                                            "cluster": job.execution_cluster},
                      queue=queue_for(job.execution_cluster, job.compute_pool_id),
                      priority=broker_priority(job.priority))
        wait_for(lambda: job_row(pg_store, job_id).state == JobState.RUNNING, timeout=30,
                 message=f"running\n{worker.log()[-2000:]}")
        time.sleep(1.0)  # inside DuckDB's three-way join over the 4000 new rows
        worker.kill()
    finally:
        worker.stop()
        app.close()
    assert progress(pg_store, "cnt") == before
    with pg_store.unit_of_work() as session:
        assert snapshot_of_job(session, job_id) is None
    # The lease runs out; the reaper takes the job back from the dead worker.
    time.sleep(settings.lease_seconds + 0.5)
    Reaper(settings=settings, store=pg_store, actor="test-reaper", clock=utcnow).reap()
    assert job_row(pg_store, job_id).state != JobState.RUNNING
    assert progress(pg_store, "cnt") == before
    job = refresh(pg_store, settings, COUNT_FAST)  # the same delta, read again
    assert job.statistics["refresh"] == "incremental" and job.statistics["rows_read"] == 4000
    assert sum(row[0] for row in view_rows(settings, pg_store, "cnt", tmp_path)) == 4100
