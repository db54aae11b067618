"""GET /healthz (store and broker reachability) and GET /metrics (Prometheus text)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from shared.config import Settings
from shared.queues import SHARED_QUEUE, pool_queue
from shared.store import Store
from tests.api.test_jobs import add_job

pytestmark = pytest.mark.postgres

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"
CLOSED_PORT_PG = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample; labels given must all match."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z_]+)(\{(.*)\})? (\S+)", line)
        assert match, f"not a Prometheus sample line: {line!r}"
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if match.group(1) == name and all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    raise AssertionError(f"no sample {name}{labels}")


def test_healthz_ok(client: TestClient):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["store"]["ok"] and body["checks"]["broker"]["ok"]


@pytest.mark.parametrize("broken", ["broker", "store"])
def test_healthz_503_when_a_dependency_is_unreachable(api_settings: Settings, broken: str):
    changes = {"broker_url": CLOSED_PORT_REDIS} if broken == "broker" else {
        "database_url": CLOSED_PORT_PG}
    settings = api_settings.model_copy(update=changes)
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        response = client.get("/healthz")
        assert time.monotonic() - started < 5
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks[broken]["ok"] is False and checks[broken]["detail"]
    assert all(c["ok"] for name, c in checks.items() if name != broken)


def test_metrics(client, pg_store: Store, api_settings: Settings):
    add_job(pg_store)
    add_job(pg_store, type_="materialize-view")
    add_job(pg_store, state="completed")
    broker = redis.Redis.from_url(api_settings.celery_broker_url)
    broker.lpush(SHARED_QUEUE, b"m1", b"m2")
    broker.lpush(SHARED_QUEUE + "\x06\x163", b"urgent")
    broker.lpush(pool_queue("3f1c4b8e-3f9a-4c1e-9a53-5d3c2b1a0f00"), b"m3")
    broker.close()

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert metric(text, "dataplane_jobs", state="pending", type="nql-forecast") == 1
    assert metric(text, "dataplane_jobs", state="pending", type="materialize-view") == 1
    assert metric(text, "dataplane_jobs", state="completed", type="nql-forecast") == 1
    assert metric(text, "dataplane_jobs", state="failed", type="nql-forecast") == 0
    assert metric(text, "dataplane_queue_depth", queue=SHARED_QUEUE, priority="0") == 2
    assert metric(text, "dataplane_queue_depth", queue=SHARED_QUEUE, priority="3") == 1
    assert metric(text, "dataplane_queue_depth",
                  queue="dataplane.dedicated.3f1c4b8e-3f9a-4c1e-9a53-5d3c2b1a0f00") == 1
    assert metric(text, "dataplane_broker_up") == 1
    assert metric(text, "dataplane_oldest_pending_job_age_seconds") > 0
    done = {"type": "nql-forecast", "state": "completed"}
    assert metric(text, "dataplane_job_duration_seconds_count", **done) == 1
    assert metric(text, "dataplane_job_duration_seconds_bucket", le="+Inf", **done) == 1
    assert metric(text, "dataplane_job_duration_seconds_bucket", le="3600", **done) == 1
    assert metric(text, "dataplane_refresh_schedules_overdue") == 0


def test_metrics_with_the_broker_down_still_answer(api_settings: Settings, pg_store: Store):
    settings = api_settings.model_copy(update={"broker_url": CLOSED_PORT_REDIS})
    with TestClient(create_app(settings, store=pg_store)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert metric(response.text, "dataplane_broker_up") == 0


def test_metrics_on_the_embedded_defaults(sqlite_database: str, data_dir: Path):
    """SQLite store and SQLite broker: no Redis queues, every other family present."""
    store = Store.from_url(sqlite_database)
    add_job(store)
    settings = Settings(database_url=sqlite_database, data_dir=data_dir)
    with TestClient(create_app(settings, store=store)) as client:
        text = client.get("/metrics").text
        assert client.get("/healthz").status_code == 200
    assert metric(text, "dataplane_jobs", state="pending", type="nql-forecast") >= 1
    assert metric(text, "dataplane_oldest_pending_job_age_seconds") >= 0
    assert "dataplane_queue_depth{" not in text
