"""Shared fixtures: real PostgreSQL and Redis (never fakes), fresh per test session.

Tests that need PostgreSQL or Redis FAIL when the server is unreachable in CI
(`CI=true`) and skip on a laptop without them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from shared.config import Settings
from shared.store import Store
from shared.store.migrate import upgrade
from tests.s3 import MotoServer, running_moto, s3_mode

pytest_plugins = ["tests.api_app"]

PG_ADMIN_URL = os.environ.get("DATAPLANE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} at {host}:{port} is not reachable"
    if IN_CI:
        pytest.fail(message + " (CI must have it: .ci/run starts it)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A real S3 server process (moto_server) for this session, with the test bucket."""
    with running_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def object_storage(request: pytest.FixtureRequest) -> Iterator[str]:
    """`DATAPLANE_TEST_STORAGE=s3`: the whole session keeps data files in moto's bucket.
    Set in the environment, so every Settings() and every process a test starts uses it."""
    if not s3_mode():
        yield "file"
        return
    server: MotoServer = request.getfixturevalue("moto")
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env(prefix=f"session-{uuid.uuid4().hex[:8]}"))
    yield "s3"
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated; dropped at the end."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"dataplane_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'dataplane.sqlite'}"
    upgrade(url)
    return url


_TABLES = ("td_jobs", "job_transitions", "job_tags", "refresh_schedules", "view_progress", "snapshots", "jobs",
           "datasets", "api_tokens", "workers", "companies")
# Webhook tables first: their rows reference jobs (issue 16).
_TABLES = ("webhook_deliveries", "webhook_subscriptions", *_TABLES)


def _truncate(store: Store) -> None:
    with store.unit_of_work() as session:
        for table in _TABLES:
            session.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """The jobs store on each backend, emptied before each test."""
    url = request.getfixturevalue("sqlite_database" if request.param == "sqlite" else "pg_database")
    store = Store.from_url(url)
    _truncate(store)
    yield store
    store.dispose()


@pytest.fixture
def pg_store(pg_database: str) -> Iterator[Store]:
    """PostgreSQL only (concurrency tests, SKIP LOCKED)."""
    store = Store.from_url(pg_database)
    _truncate(store)
    yield store
    store.dispose()


@pytest.fixture(scope="session")
def redis_db() -> int:
    """A Redis database number of its own for this session (flushed on use)."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    # DATAPLANE_TEST_REDIS_DB pins it, so test sessions run side by side never flush each other's.
    pinned = os.environ.get("DATAPLANE_TEST_REDIS_DB")
    return int(pinned) if pinned else 1 + os.getpid() % 14


@pytest.fixture
def redis_url(redis_db: int) -> str:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db)
    client.flushdb()
    client.close()
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    """Settings for an in-process test on a temp data dir (store URL set by the test)."""
    return Settings(data_dir=data_dir, lease_seconds=6)
