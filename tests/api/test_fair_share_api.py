"""What the API shows of fair share: GET /jobs/{id}'s wait_reason and statistics.progress,
and the per-company gauges and queue-wait histogram of /metrics."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from shared.queues import SHARED_QUEUE
from shared.store import Store
from shared.store.fairshare import (
    AT_BROKER,
    CLUSTER_FULL,
    COMPANY_CAP,
    NO_WORKER,
    register_worker,
    set_company,
)
from shared.store.jobs import claim, heartbeat, mark_published
from tests.api.test_jobs import add_job
from tests.api.test_ops import metric

pytestmark = pytest.mark.postgres


def _claim(store: Store, job_id: str) -> None:
    with store.unit_of_work() as session:
        assert claim(session, uuid.UUID(job_id), executor="w", lease_seconds=60) == 1


def test_pending_job_says_why_it_waits(client: TestClient, auth: dict[str, str],
                                       pg_store: Store) -> None:
    def reason(job_id: str) -> str | None:
        body = client.get(f"/jobs/{job_id}", headers=auth).json()
        return body.get("wait_reason")

    first, second = add_job(pg_store), add_job(pg_store)
    assert reason(first) == NO_WORKER
    with pg_store.unit_of_work() as session:
        register_worker(session, name="w1", queue=SHARED_QUEUE, concurrency=1)
        mark_published(session, uuid.UUID(first))
    assert reason(first) == AT_BROKER
    # In flight: one published job; the bound is 1 + buffer 1.
    third = add_job(pg_store, company_id=2)
    _claim(pg_store, first)
    with pg_store.unit_of_work() as session:
        mark_published(session, uuid.UUID(third))
    assert reason(second) == CLUSTER_FULL
    with pg_store.unit_of_work() as session:
        set_company(session, 1, max_running=1)
    assert reason(second) == COMPANY_CAP
    # Only pending jobs carry a reason; the list does not compute them.
    body = client.get(f"/jobs/{first}", headers=auth).json()
    assert body["state"] == "running" and body.get("wait_reason") is None
    listed = client.get("/jobs", headers=auth).json()["records"]
    assert all(record.get("wait_reason") is None for record in listed)


def test_running_job_shows_its_progress(client: TestClient, auth: dict[str, str],
                                        pg_store: Store) -> None:
    job_id = add_job(pg_store)
    _claim(pg_store, job_id)
    assert "progress" not in client.get(f"/jobs/{job_id}", headers=auth).json()["statistics"]
    with pg_store.unit_of_work() as session:
        heartbeat(session, uuid.UUID(job_id), attempt=1, lease_seconds=60, progress=42)
    statistics = client.get(f"/jobs/{job_id}", headers=auth).json()["statistics"]
    assert statistics["progress"] == 42


def test_metrics_per_company_and_queue_wait(client: TestClient, pg_store: Store) -> None:
    add_job(pg_store, company_id=1)
    add_job(pg_store, company_id=1)
    running = add_job(pg_store, company_id=2)
    _claim(pg_store, running)
    add_job(pg_store, company_id=3, state="completed")
    with pg_store.unit_of_work() as session:
        register_worker(session, name="w1", queue=SHARED_QUEUE, concurrency=4)

    text = client.get("/metrics").text
    assert metric(text, "dataplane_company_jobs_queued", cluster="shared", company_id="1") == 2
    assert metric(text, "dataplane_company_jobs_running", cluster="shared", company_id="2") == 1
    assert metric(text, "dataplane_company_jobs_queued", cluster="shared", company_id="2") == 0
    assert metric(text, "dataplane_queue_capacity", queue=SHARED_QUEUE) == 4
    assert metric(text, "dataplane_queue_in_flight", queue=SHARED_QUEUE) == 1
    assert metric(text, "dataplane_queue_wait_seconds_count", cluster="shared") == 2
    assert metric(text, "dataplane_queue_wait_seconds_bucket", cluster="shared", le="+Inf") == 2
    assert metric(text, "dataplane_queue_wait_seconds_bucket", cluster="shared", le="900") == 2


def test_submit_wait_line_shows_wait_reason_then_progress(
        client: TestClient, auth: dict[str, str], pg_store: Store,
        capsys: pytest.CaptureFixture[str]) -> None:
    from dataplane.client_cli import _wait
    from shared.store.jobs import complete

    job_id = add_job(pg_store)
    client.headers.update(auth)
    done: dict[str, object] = {}
    waiter = threading.Thread(target=lambda: done.update(_wait(client, job_id)), daemon=True)
    waiter.start()
    time.sleep(0.6)
    with pg_store.unit_of_work() as session:
        assert claim(session, uuid.UUID(job_id), executor="w", lease_seconds=60) == 1
        heartbeat(session, uuid.UUID(job_id), attempt=1, lease_seconds=60, progress=42)
    time.sleep(0.6)
    with pg_store.unit_of_work() as session:
        complete(session, uuid.UUID(job_id), attempt=1, executor="w", result={"rows": 0},
                 statistics={})
    waiter.join(timeout=10)
    assert done.get("state") == "completed"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("pending") and f"({NO_WORKER})" in lines[0]
    assert lines[1].startswith("running") and "42%" in lines[1]
    assert lines[2].startswith("completed")
