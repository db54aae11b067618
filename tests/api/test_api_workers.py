"""`dataplane api --workers 2`: two server processes on one port, each with its own app
(store pool, compile threads, nudge sender), serving submissions that real workers run."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest
import redis
from sqlalchemy import text

from shared.config import Settings
from shared.store import Store
from shared.store.tokens import create_token
from tests.e2e.devmode import free_port
from tests.processes import start, wait_for
from worker.importer import import_dataset

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def test_two_api_processes_serve_and_their_jobs_run(tmp_path: Path, pg_database: str, redis_db: int) -> None:
    broker = f"redis://127.0.0.1:6379/{redis_db}"
    redis.Redis.from_url(broker).flushdb()
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_database, broker_url=broker)
    settings.ensure_dirs()
    store = Store.from_url(pg_database)
    with store.unit_of_work() as session:
        for table in ("job_transitions", "job_tags", "refresh_schedules", "view_progress", "snapshots", "jobs",
                      "datasets"):
            session.execute(text(f"DELETE FROM {table}"))
    source = tmp_path / "tiny.parquet"
    import duckdb

    duckdb.sql(f"COPY (SELECT range AS x FROM range(10)) TO '{source}' (FORMAT parquet)")
    import_dataset(settings, store, company_id=1, dataset_id=1, name="tiny", source=source)
    with store.unit_of_work() as session:
        token = create_token(session, company_id=1, user_id=7)
    env = {"DATAPLANE_DATABASE_URL": pg_database, "DATAPLANE_BROKER_URL": broker,
           "DATAPLANE_DATA_DIR": str(settings.data_dir), "DATAPLANE_DISPATCH_INTERVAL_SECONDS": "0.5"}
    port = free_port()
    logs = tmp_path / "logs"
    processes = [start("api", ["api", "--port", str(port), "--no-access-log", "--workers", "2"], env, logs),
                 start("scheduler", ["scheduler"], env, logs),
                 start("worker", ["worker", "--cluster", "shared", "--concurrency", "1"], env, logs)]
    api = processes[0]
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False
        wait_for(lambda: up() or not api.alive(), timeout=90, interval=0.2, message="api healthy")
        assert api.alive(), api.log()[-3000:]
        # uvicorn's supervisor and its two server processes (each made its own app).
        wait_for(lambda: len(psutil.Process(api.pid).children()) >= 2, timeout=30, message="2 server processes")
        wait_for(lambda: api.log().count("Application startup complete") >= 2, timeout=60,
                 message="both server processes started")
        assert api.log().count("Application startup complete") == 2, api.log()[-3000:]
        ids = []
        for n in range(8):  # a fresh connection each: the kernel spreads them over both processes
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
                nql = f'EXPLAIN SELECT "x" FROM company_data."1" WHERE "x" > {n}'
                response = http.post("/nql/run", json={"nql": nql})
                assert response.status_code == 201, response.text
                ids.append((n, response.json()["job_id"]))
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            for n, job_id in ids:
                wait_for(lambda job_id=job_id: http.get(f"/jobs/{job_id}").json()["state"] == "completed",
                         timeout=60, interval=0.1, message=f"job {job_id} completed")
                assert http.get(f"/jobs/{job_id}").json()["result"]["rows"] == 9 - n
            bad = http.post("/nql/run", json={"nql": 'EXPLAIN SELECT "nope" FROM company_data."1"'})
            assert bad.status_code == 400 and "nope" in bad.json()["detail"]
    finally:
        for process in processes:
            process.stop()
        store.dispose()
