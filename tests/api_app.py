"""Fixtures for tests that drive the real FastAPI app in-process on PostgreSQL and Redis
(registered for the whole suite by tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from shared.config import Settings
from shared.store import Store


@pytest.fixture
def api_settings(pg_database: str, redis_url: str, data_dir: Path) -> Settings:
    return Settings(database_url=pg_database, broker_url=redis_url, data_dir=data_dir)


@pytest.fixture
def client(api_settings: Settings, pg_store: Store) -> Iterator[TestClient]:
    """The app on an emptied PostgreSQL store; unhandled errors raise in the test."""
    with TestClient(create_app(api_settings, store=pg_store)) as test_client:
        yield test_client
