"""A real deployment for benchmarks: a fresh PostgreSQL database, a Redis db of its own,
a data dir, and `dataplane scheduler` / `dataplane worker` processes."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import redis
from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.config import Settings  # noqa: E402
from shared.store import Store  # noqa: E402
from shared.store.migrate import upgrade  # noqa: E402
from shared.store.models import Job  # noqa: E402
from tests.processes import Process, start  # noqa: E402

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# The trivial job of the throughput and latency benches: a forecast over `tiny_dataset()`.
TRIVIAL_NQL = 'EXPLAIN SELECT "x", "label" FROM company_data."1" WHERE "x" > 1'
TRIVIAL_ENV = {"DATAPLANE_DUCKDB_THREADS": "1", "DATAPLANE_DUCKDB_MEMORY_LIMIT": "512MB"}
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# On a shared machine each engineer's runs get their own Redis dbs and database names:
# DATAPLANE_TEST_REDIS_DB=N moves a bench's dbs (15, 14, 13 by default) to N alone.
_OWN_DB = os.environ.get("DATAPLANE_TEST_REDIS_DB")


def bench_redis_db(default: int) -> int:
    return int(_OWN_DB) if _OWN_DB else default


def drop_database(name: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def fresh_database(name: str) -> str:
    """An empty, migrated PostgreSQL database `name` (dropped first if it exists)."""
    drop_database(name)
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    return url


def fresh_redis(db: int) -> str:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    client.flushdb()
    client.close()
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")


def api_args(port: int, workers: int = 1) -> list[str]:
    """`dataplane api` arguments (`--workers` only when > 1: older checkouts lack it)."""
    return ["api", "--port", str(port), "--no-access-log", *(["--workers", str(workers)] if workers > 1 else [])]


def wait_healthy(base: str, *, timeout: float = 90) -> None:
    """Until the API at `base` answers /healthz with 200."""
    import httpx

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False
    wait_until(healthy, timeout=timeout, interval=0.2)


@dataclass
class BenchSystem:
    name: str
    redis_db: int
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    code_root: Path = ROOT  # the checkout whose scheduler and workers run (A/B runs)
    # DATAPLANE_STORAGE_URL and S3 variables (e.g. `MotoServer.env()`): data in a bucket
    storage_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"dataplane-bench-{self.name}-"))
        self.data_dir = self.tmp / "data"
        suffix = f"_{_OWN_DB}" if _OWN_DB else ""
        self.database_url = fresh_database(f"dataplane_bench_{self.name}{suffix}")
        self.redis_db = bench_redis_db(self.redis_db)
        self.broker_url = fresh_redis(self.redis_db)
        storage: dict[str, Any] = {key.removeprefix("DATAPLANE_").lower(): value
                                   for key, value in self.storage_env.items()}
        self.settings = Settings(data_dir=self.data_dir, database_url=self.database_url,
                                 broker_url=self.broker_url, **storage)
        self.settings.ensure_dirs()
        self.store = Store.from_settings(self.settings)

    @property
    def env(self) -> dict[str, str]:
        return {"DATAPLANE_DATABASE_URL": self.database_url, "DATAPLANE_BROKER_URL": self.broker_url,
                "DATAPLANE_DATA_DIR": str(self.data_dir), **self.storage_env, **self.extra_env}

    def start(self, name: str, args: list[str]) -> Process:
        process = start(name, args, self.env, self.tmp / "logs", cwd=self.code_root)
        self.processes.append(process)
        return process

    def workers(self, count: int, *, cluster: str = "shared", concurrency: int = 1) -> list[Process]:
        started = [self.start(f"worker{i}", ["worker", "--cluster", cluster, "--concurrency", str(concurrency),
                                             "--loglevel", "warning"]) for i in range(count)]
        wait_until(lambda: all("[queues]" in p.log() for p in started), timeout=60)
        return started

    def scheduler(self) -> Process:
        process = self.start("scheduler", ["scheduler"])
        wait_until(lambda: "scheduler running" in process.log(), timeout=30)
        return process

    def tiny_dataset(self, dataset_id: int = 1, rows: int = 5) -> None:
        from worker.importer import import_dataset

        source = self.tmp / "tiny.parquet"
        duckdb.sql(f"COPY (SELECT range AS x, 'v' || range AS label FROM range({rows})) "
                   f"TO '{source}' (FORMAT parquet)")
        import_dataset(self.settings, self.store, company_id=1, dataset_id=dataset_id, name="tiny", source=source)

    def drop_cache(self) -> None:
        """Empty the workers' input cache (they share this data dir): the next job reads cold."""
        objects = self.settings.cache_dir / "objects"
        if objects.exists():
            shutil.rmtree(objects)
            objects.mkdir()

    def count(self, *states: str) -> int:
        with self.store.unit_of_work() as session:
            return session.scalar(select(func.count(Job.id)).where(Job.state.in_(states))) or 0

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes.clear()
        self.store.dispose()


def bare_workers(count: int, *, broker_url: str, log_dir: Path, backend_url: str = "") -> list[Process]:
    from tests.processes import start_command

    env = {"BARE_BROKER_URL": broker_url, "BARE_BACKEND_URL": backend_url}
    started = [start_command(f"bare{i}", [sys.executable, "-m", "celery", "-A", "bench.bare_celery", "worker",
                                          "--concurrency", "1", "--pool", "prefork", "--queues", "bare",
                                          "--hostname", f"bare{i}@%h", "--without-mingle", "--without-gossip",
                                          "--loglevel", "warning"], env, log_dir)
               for i in range(count)]
    try:
        wait_until(lambda: all("[queues]" in p.log() for p in started), timeout=60)
    except TimeoutError:
        for process in started:
            process.stop()
        raise
    return started
