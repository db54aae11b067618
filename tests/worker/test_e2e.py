"""End to end: a real `dataplane worker` process on real Redis and PostgreSQL.

The dispatcher is not part of this test: like it, the test commits the job row first and
then publishes `RUN_JOB_TASK` with `app.send_task` to the job's queue. One worker process
(concurrency 1, an 8 s job time limit) serves the whole module.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis
from celery import Celery
from sqlalchemy import text

from shared.celery_app import make_app
from shared.config import Settings
from shared.queues import RUN_JOB_TASK, broker_priority, queue_for
from shared.sample_data import SEED_DATASET_ID, SEED_VIEW_NQL, hand_written_seed_query, write_seed_dataset
from shared.states import JobState
from shared.storage import Storage
from shared.store import Store
from shared.store.datasets import snapshot_of_job
from shared.store.jobs import mark_published, request_cancellation, transitions_of
from shared.store.types import utcnow
from tests.processes import Process, start, wait_for
from tests.s3 import local_copies
from worker.importer import import_dataset

from .conftest import job_row, submit
from .queries import BAD_COLUMN_VIEW, HOURS_VIEW, SLOW_VIEW

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]
TIMEOUT_S = 8


@dataclass
class Cluster:
    store: Store
    settings: Settings
    app: Celery
    worker: Process
    seed_file: Path

    def publish(self, job_id: uuid.UUID) -> None:
        """What the dispatcher does once the job row is committed."""
        job = job_row(self.store, job_id)
        with self.store.unit_of_work() as session:
            mark_published(session, job_id)
        self.app.send_task(RUN_JOB_TASK, kwargs={"job_id": str(job_id), "job_type": job.type,
                                                 "cluster": job.execution_cluster},
                           queue=queue_for(job.execution_cluster, job.compute_pool_id),
                           priority=broker_priority(job.priority))

    def submit(self, nql: str, **options: Any) -> uuid.UUID:
        job_id = submit(self.store, nql, **options)
        self.publish(job_id)
        return job_id

    def wait_state(self, job_id: uuid.UUID, *states: JobState, timeout: float = 20) -> Any:
        wait_for(lambda: job_row(self.store, job_id).state in states, timeout=timeout,
                 interval=0.05, message=f"job {job_id} in {states}\n{self.worker.log()[-3000:]}")
        return job_row(self.store, job_id)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pg_database: str,
            redis_db: int) -> Iterator[Cluster]:
    client = redis.Redis(host="127.0.0.1", port=6379, db=redis_db)
    client.flushdb()
    client.close()
    broker = f"redis://127.0.0.1:6379/{redis_db}"
    root = tmp_path_factory.mktemp("e2e")
    settings = Settings(data_dir=root / "data", database_url=pg_database, broker_url=broker,
                        job_timeout_seconds=TIMEOUT_S, lease_seconds=6)
    settings.ensure_dirs()
    store = Store.from_url(pg_database)
    with store.unit_of_work() as session:
        for table in ("job_transitions", "job_tags", "refresh_schedules", "view_progress", "snapshots", "jobs",
                      "datasets"):
            session.execute(text(f"DELETE FROM {table}"))
    seed_file = root / "seed.parquet"
    write_seed_dataset(seed_file, 20_000)
    import_dataset(settings, store, company_id=1, dataset_id=SEED_DATASET_ID, name="seed",
                   source=seed_file)
    env = {"DATAPLANE_DATABASE_URL": pg_database, "DATAPLANE_BROKER_URL": broker,
           "DATAPLANE_DATA_DIR": str(settings.data_dir),
           "DATAPLANE_JOB_TIMEOUT_SECONDS": str(TIMEOUT_S), "DATAPLANE_LEASE_SECONDS": "6",
           "DATAPLANE_RETRY_BACKOFF_SECONDS": "0.2", "DATAPLANE_CANCEL_POLL_SECONDS": "0.1",
           "DATAPLANE_DUCKDB_THREADS": "2", "DATAPLANE_DUCKDB_MEMORY_LIMIT": "1GB"}
    worker = start("worker", ["worker", "--cluster", "shared", "--concurrency", "1"], env,
                   root / "logs")
    app = make_app(settings)
    try:
        wait_for(lambda: " ready." in worker.log() or not worker.alive(), timeout=60,
                 message="worker ready")
        assert worker.alive(), worker.log()
        yield Cluster(store, settings, app, worker, seed_file)
    finally:
        worker.stop()
        app.close()
        store.dispose()


def test_worker_consumes_its_queue_only(cluster: Cluster) -> None:
    log = cluster.worker.log()
    assert "dataplane.shared" in log and "dataplane.dedicated" not in log


def test_seed_view_end_to_end(cluster: Cluster, tmp_path: Path) -> None:
    job_id = cluster.submit(SEED_VIEW_NQL)
    job = cluster.wait_state(job_id, JobState.COMPLETED, JobState.FAILED)
    assert job.state == JobState.COMPLETED, job.failures
    assert job.attempts == 1 and job.executor and job.compiled_sql
    with cluster.store.unit_of_work() as session:
        snapshot = snapshot_of_job(session, job_id)
        assert snapshot is not None
        keys, stats = list(snapshot.files), snapshot.column_stats
    files = [str(p) for p in local_copies(cluster.settings, keys, tmp_path)]
    got = duckdb.sql(f"SELECT * FROM read_parquet({files}) ORDER BY ALL").fetchall()
    con = duckdb.connect()
    con.execute(f"CREATE VIEW seed AS SELECT * FROM '{cluster.seed_file}'")
    expected = con.execute(f"SELECT * FROM ({hand_written_seed_query('seed')}) ORDER BY ALL").fetchall()
    assert got == expected and len(got) > 100
    assert stats and stats["mobile_id"]["count"] == len(got)
    assert job.statistics["records_inserted"] == len(got)


def test_a_duplicate_message_runs_the_job_once(cluster: Cluster) -> None:
    job_id = cluster.submit(HOURS_VIEW)
    cluster.publish(job_id)  # the same job again: a redelivery or a second dispatcher
    cluster.app.send_task(RUN_JOB_TASK, kwargs={"job_id": str(job_id)}, queue="dataplane.shared")
    cluster.wait_state(job_id, JobState.COMPLETED)
    wait_for(lambda: cluster.worker.log().count(f"job {job_id} is completed: duplicate") == 2,
             timeout=10, message="both duplicates consumed")
    job = job_row(cluster.store, job_id)
    assert job.attempts == 1
    with cluster.store.unit_of_work() as session:
        runs = [t for t in transitions_of(session, job_id) if t.to_state == JobState.RUNNING]
        count = session.execute(text("SELECT count(*) FROM snapshots WHERE job_id = :j"),
                                {"j": job_id}).scalar_one()
    assert len(runs) == 1 and count == 1


def test_cancelling_a_running_job_stops_it_within_a_second(cluster: Cluster) -> None:
    job_id = cluster.submit(SLOW_VIEW)
    cluster.wait_state(job_id, JobState.RUNNING)
    time.sleep(1.0)  # well into the query
    with cluster.store.unit_of_work() as session:
        assert request_cancellation(session, job_id, actor="user")
    asked = time.monotonic()
    job = cluster.wait_state(job_id, JobState.CANCELLED, timeout=10)
    assert time.monotonic() - asked < 1.5
    assert job.failures == []
    with cluster.store.unit_of_work() as session:
        assert snapshot_of_job(session, job_id) is None
    staging = cluster.settings.staging_dir
    wait_for(lambda: not any(staging.iterdir()), timeout=5, message="staging cleaned")


def test_cancelling_a_completed_job_is_a_no_op(cluster: Cluster) -> None:
    job_id = cluster.submit(HOURS_VIEW)
    cluster.wait_state(job_id, JobState.COMPLETED)
    with cluster.store.unit_of_work() as session:
        assert not request_cancellation(session, job_id, actor="user")
    assert job_row(cluster.store, job_id).state == JobState.COMPLETED


def test_a_job_cancelled_while_queued_never_starts(cluster: Cluster) -> None:
    job_id = submit(cluster.store, HOURS_VIEW)
    with cluster.store.unit_of_work() as session:
        request_cancellation(session, job_id, actor="user")
    cluster.app.send_task(RUN_JOB_TASK, kwargs={"job_id": str(job_id)}, queue="dataplane.shared")
    job = cluster.wait_state(job_id, JobState.CANCELLED)
    assert job.attempts == 0 and job.started_at is None


def test_a_bad_column_fails_and_the_worker_serves_the_next_job(cluster: Cluster) -> None:
    bad = cluster.submit(BAD_COLUMN_VIEW)
    good = cluster.submit(HOURS_VIEW)
    job = cluster.wait_state(bad, JobState.FAILED, JobState.COMPLETED)
    assert job.state == JobState.FAILED and "nope" in job.failures[0]["message"]
    assert job.failures[0]["value"]["type"] == "ColumnNotFound"
    assert cluster.wait_state(good, JobState.COMPLETED).attempts == 1


def test_a_job_past_its_time_limit_fails_as_timed_out(cluster: Cluster) -> None:
    job_id = cluster.submit(SLOW_VIEW, retry_limit=2)
    started = time.monotonic()
    job = cluster.wait_state(job_id, JobState.FAILED, timeout=TIMEOUT_S + 15)
    assert time.monotonic() - started < TIMEOUT_S + 5
    assert job.failures[-1]["message"] == f"timed out after {TIMEOUT_S} s" and job.attempts == 1


def test_an_infrastructure_error_is_retried_then_fails(cluster: Cluster) -> None:
    dataset = import_dataset(cluster.settings, cluster.store, company_id=1, dataset_id=6500,
                             name="fragile", source=cluster.seed_file)
    Storage.from_settings(cluster.settings).delete(dataset["files"])  # storage lost the file
    job_id = cluster.submit(HOURS_VIEW.replace('"6402"', '"6500"').replace('"hours"', '"f"'),
                            retry_limit=1)
    job = cluster.wait_state(job_id, JobState.PENDING, JobState.FAILED)
    wait_for(lambda: job_row(cluster.store, job_id).infra_retries == 1, timeout=10,
             message="requeued for a retry")
    job = job_row(cluster.store, job_id)
    assert job.state == JobState.PENDING and job.run_after is not None
    while utcnow() < job.run_after:  # the dispatcher would wait for run_after too
        time.sleep(0.05)
    cluster.publish(job_id)
    job = cluster.wait_state(job_id, JobState.FAILED)
    assert job.attempts == 2 and len(job.failures) == 2
    assert all("no such object" in f["message"] for f in job.failures)
