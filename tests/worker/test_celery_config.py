"""Pool processes are recycled by memory, not by task count (a replacement stalls a job)."""

from __future__ import annotations

import pytest

from shared.celery_app import (
    CHILD_MEMORY_HEADROOM_KIB,
    DEFAULT_CHILD_MEMORY_CAP_KIB,
    celery_config,
    child_memory_cap_kib,
)
from shared.config import Settings


@pytest.mark.parametrize(("limit", "limit_kib"), [
    ("2GB", 2 * 1000**3 // 1024), ("512MB", 512 * 1000**2 // 1024), ("4GiB", 4 * 1024**2),
    ("1.5 GB", int(1.5 * 1000**3) // 1024),
])
def test_cap_is_the_duckdb_limit_plus_headroom(limit: str, limit_kib: int) -> None:
    assert child_memory_cap_kib(Settings(duckdb_memory_limit=limit)) == limit_kib + CHILD_MEMORY_HEADROOM_KIB


def test_unparseable_limit_gets_the_default_cap() -> None:
    assert child_memory_cap_kib(Settings(duckdb_memory_limit="80%")) == DEFAULT_CHILD_MEMORY_CAP_KIB


def test_config_recycles_by_memory() -> None:
    config = celery_config(Settings(duckdb_memory_limit="1GB"))
    assert config["worker_max_memory_per_child"] == child_memory_cap_kib(Settings(duckdb_memory_limit="1GB"))
    assert config["worker_max_tasks_per_child"] >= 1000
