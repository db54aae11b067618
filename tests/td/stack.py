"""Real `dataplane api`, scheduler and worker processes for the Treasure Data tests, with
the demo dataset imported as `seed` (company 1) and a token for companies 1 and 2."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
import tdclient
from sqlalchemy import text

from shared.config import Settings
from shared.sample_data import SEED_DATASET_ID, write_seed_dataset
from shared.storage import Storage
from shared.store import Store
from shared.store.tokens import create_token
from tests.e2e.devmode import free_port
from tests.processes import Process, start, wait_for
from worker.importer import import_dataset

# Unqualified: TD resolves table names in the database (`company_data`) of the issue call.
QUERY = ('SELECT "timestamp_object"."hour" AS h, "event_timestamp" AS ts FROM seed '
         'WHERE "timestamp_object"."hour" < 3 ORDER BY ts LIMIT 300 ROWS')
TD_DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$")


@dataclass
class Stack:
    url: str
    key: str
    other_key: str
    store: Store
    storage: Storage
    processes: list[Process]
    settings: Settings

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-2500:]}" for p in self.processes)

    def client(self, key: str | None = None, *, slash: bool = True) -> tdclient.Client:
        return tdclient.Client(apikey=key or self.key, endpoint=self.url + ("/" if slash else ""),
                               max_cumul_retry_delay=0)

    def http(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"TD1 {key or self.key}"})


def make_stack(tmp_path_factory: pytest.TempPathFactory, pg_database: str, redis_db: int, *,
               ttl_seconds: int, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    broker = f"redis://127.0.0.1:6379/{redis_db}"
    redis.Redis.from_url(broker).flushdb()
    root = tmp_path_factory.mktemp("td-e2e")
    settings = Settings(data_dir=root / "data", database_url=pg_database, broker_url=broker)
    settings.ensure_dirs()
    store = Store.from_url(pg_database)
    with store.unit_of_work() as session:
        for table in ("td_jobs", "job_transitions", "job_tags", "refresh_schedules",
                      "snapshots", "jobs", "datasets", "api_tokens"):
            session.execute(text(f"DELETE FROM {table}"))
    seed_file = root / "seed.parquet"
    write_seed_dataset(seed_file, 20_000)
    import_dataset(settings, store, company_id=1, dataset_id=SEED_DATASET_ID, name="seed",
                   source=seed_file)
    with store.unit_of_work() as session:
        key = create_token(session, company_id=1, user_id=7)
        other_key = create_token(session, company_id=2, user_id=8)
    env = {"DATAPLANE_DATABASE_URL": pg_database, "DATAPLANE_BROKER_URL": broker,
           "DATAPLANE_DATA_DIR": str(settings.data_dir), "DATAPLANE_CANCEL_POLL_SECONDS": "0.1",
           "DATAPLANE_DISPATCH_INTERVAL_SECONDS": "0.5",
           "DATAPLANE_QUERY_RESULT_TTL_SECONDS": str(ttl_seconds),
           "DATAPLANE_RESULT_TTL_INTERVAL_SECONDS": "0.5", **(extra_env or {})}
    port = free_port()
    logs = root / "logs"
    processes = [start("worker", ["worker", "--cluster", "shared", "--concurrency", "1"], env, logs),
                 start("scheduler", ["scheduler"], env, logs),
                 start("api", ["api", "--port", str(port), "--no-access-log"], env, logs)]
    url = f"http://127.0.0.1:{port}"
    stack = Stack(url, key, other_key, store, Storage.from_settings(settings), processes, settings)
    try:
        def api_up() -> bool:
            try:
                return httpx.get(url + "/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False
        wait_for(lambda: api_up() or not processes[2].alive(), timeout=60, interval=0.2,
                 message="api healthy")
        wait_for(lambda: " ready." in processes[0].log() or not processes[0].alive(),
                 timeout=60, message="worker ready")
        assert all(p.alive() for p in processes), stack.logs()
        yield stack
    finally:
        for process in reversed(processes):
            process.stop()
        store.dispose()


def finished(job: Any, stack: Stack) -> None:
    job.wait(timeout=90, wait_interval=1)
    assert job.finished(), stack.logs()
