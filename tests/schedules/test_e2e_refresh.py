"""End to end: a view submitted once with an every-minute REFRESH_SCHEDULE gets a second
snapshot from its schedule, with a real worker and scheduler; archiving the schedule
stops it. The API runs in-process on the same PostgreSQL and Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from shared.config import Settings
from shared.store import Store
from shared.store.tokens import create_token
from shared.store.types import utcnow
from tests.processes import Process, start
from tests.schedules.helpers import refresh_jobs

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.e2e, pytest.mark.slow]

COMPANY, SOURCE_ID = 1, 1
VIEW = ("CREATE MATERIALIZED VIEW \"fresh\" REFRESH_SCHEDULE = '* * * * *' "
        "AS SELECT \"a\", \"b\" FROM company_data.\"1\"")


@pytest.fixture
def e2e_settings(pg_database: str, redis_url: str, data_dir: Path) -> Settings:
    return Settings(database_url=pg_database, broker_url=redis_url, data_dir=data_dir)


@pytest.fixture
def processes(e2e_settings: Settings, pg_store: Store, tmp_path: Path) -> Iterator[list[Process]]:
    from worker.importer import import_dataset

    source = tmp_path / "source.parquet"
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT range AS a, 'row ' || range AS b FROM range(5)) "
                    f"TO '{source}' (FORMAT parquet)")
    import_dataset(e2e_settings, pg_store, company_id=COMPANY, dataset_id=SOURCE_ID,
                   name="source", source=source)
    env = {"DATAPLANE_DATABASE_URL": e2e_settings.database_url,
           "DATAPLANE_BROKER_URL": e2e_settings.broker_url,
           "DATAPLANE_DATA_DIR": str(e2e_settings.data_dir),
           "DATAPLANE_SCHEDULE_INTERVAL_SECONDS": "0.5"}
    started = [start("worker", ["worker", "--cluster", "shared", "--concurrency", "1"], env,
                     tmp_path / "logs"),
               start("scheduler", ["scheduler"], env, tmp_path / "logs")]
    yield started
    for process in started:
        process.stop()


def poll(fetch: Any, predicate: Any, *, timeout: float, message: str,
         procs: list[Process]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if predicate(value):
            return value
        assert all(p.alive() for p in procs), "\n".join(p.log()[-3000:] for p in procs)
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {message}; last: {value}\n"
                         + "\n".join(p.log()[-3000:] for p in procs))


def next_minute(after: datetime) -> datetime:
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


def test_a_scheduled_view_refreshes_itself_until_archived(
        e2e_settings: Settings, pg_store: Store, processes: list[Process]) -> None:
    with pg_store.unit_of_work() as session:
        auth = {"Authorization": "Bearer " + create_token(session, company_id=COMPANY, user_id=7)}
    with TestClient(create_app(e2e_settings, store=pg_store)) as client:
        submitted = client.post("/nql/run", json={"nql": VIEW}, headers=auth)
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["job_id"]
        first = poll(lambda: client.get(f"/jobs/{job_id}", headers=auth).json(),
                     lambda j: j["state"] in ("completed", "failed"), timeout=90,
                     message="the view's first run", procs=processes)
        assert first["state"] == "completed", first
        dataset_id = first["result"]["dataset_id"]

        # The completed view stored its schedule; GET /datasets/{id} shows it.
        dataset = client.get(f"/datasets/{dataset_id}", headers=auth).json()
        schedule = dataset["refresh_schedule"]
        assert schedule is not None, "the worker did not record the view's REFRESH_SCHEDULE"
        assert (schedule["cron"], schedule["status"]) == ("* * * * *", "active")
        assert schedule["next_run_at"] is not None

        # Nobody resubmits: the schedule makes the second snapshot.
        snapshots = poll(
            lambda: client.get(f"/datasets/{dataset_id}/snapshots", headers=auth).json()["snapshots"],
            lambda s: len(s) >= 2, timeout=100, message="a scheduled second snapshot",
            procs=processes)
        newest = snapshots[0]
        refresh = client.get(f"/jobs/{newest['job_id']}", headers=auth).json()
        assert refresh["request_source"]["type"] == "refresh_schedule"
        assert set(refresh["tags"]) >= {"refresh", f"dataset_id={dataset_id}"}
        assert refresh["idempotency_key"].startswith(f"refresh:{dataset_id}:")
        assert newest["row_count"] == 10  # append: the view's 5 rows twice
        listed = client.get("/jobs", headers=auth).json()["records"]
        assert [j["job_id"] for j in listed if j["request_source"]["type"] == "api_user"] == [job_id]

        # Archive it; the next minute passes without a refresh.
        archived = client.delete(f"/datasets/{dataset_id}/refresh-schedule", headers=auth)
        assert archived.status_code == 200 and archived.json()["status"] == "archived"
        made = len(refresh_jobs(pg_store, dataset_id))
        quiet_until = next_minute(utcnow()) + timedelta(seconds=5)
        while utcnow() < quiet_until:
            assert all(p.alive() for p in processes)
            time.sleep(1)
        assert len(refresh_jobs(pg_store, dataset_id)) == made
        shown = client.get(f"/datasets/{dataset_id}", headers=auth).json()["refresh_schedule"]
        assert (shown["status"], shown["next_run_at"]) == ("archived", None)
