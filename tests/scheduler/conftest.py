"""Fixtures of the scheduler tests, on top of the shared real PostgreSQL/Redis ones: a
Redis server of the test's own and a deployment of real processes around it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.store import Store
from tests.conftest import IN_CI
from tests.scheduler.cluster import Cluster
from tests.scheduler.redis_server import PrivateRedis, free_port


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = PrivateRedis(free_port(), workdir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cluster(pg_store: Store, pg_database: str, private_redis: PrivateRedis,
            tmp_path: Path) -> Iterator[Cluster]:
    """PostgreSQL + a Redis of the test's own; processes are started by the test and
    stopped at teardown."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    deployment = Cluster(store=pg_store, database_url=pg_database,
                         broker_url=private_redis.url, data_dir=data_dir,
                         log_dir=tmp_path / "logs")
    yield deployment
    deployment.stop_all()
