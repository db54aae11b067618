"""API test fixtures: the app on the real PostgreSQL store and Redis broker, tokens, datasets.

In-process tests drive `create_app(settings)` through Starlette's TestClient; tests that
need a worker, or a process whose memory is measured, start real `dataplane` processes
(`tests/processes.py`)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from shared.store import Store
from shared.store.datasets import create_dataset
from shared.store.tokens import create_token

COMPANY, OTHER_COMPANY = 1, 2
USER, OTHER_USER = 11, 22

# A dataset's schema is all the compiler needs: these have no data (no snapshot).
EVENTS_ID, EVENTS_NAME = 101, "events"
EVENTS_SCHEMA = (("user_id", "BIGINT"), ("country", "VARCHAR"), ("amount", "DOUBLE"),
                 ("seen_at", "TIMESTAMP"), ("location", "STRUCT(lat DOUBLE, lon DOUBLE)"))
OTHER_EVENTS_ID = 202  # company 2's dataset, same name and schema


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_token(store: Store, company_id: int = COMPANY, user_id: int = USER) -> str:
    with store.unit_of_work() as session:
        return create_token(session, company_id=company_id, user_id=user_id)


def make_dataset(store: Store, *, dataset_id: int, company_id: int = COMPANY,
                 name: str = EVENTS_NAME,
                 schema: Sequence[Sequence[str]] = EVENTS_SCHEMA) -> None:
    with store.unit_of_work() as session:
        create_dataset(session, company_id=company_id, name=name, schema=schema,
                       dataset_id=dataset_id)



@pytest.fixture
def token(pg_store: Store) -> str:
    return make_token(pg_store)


@pytest.fixture
def other_token(pg_store: Store) -> str:
    return make_token(pg_store, OTHER_COMPANY, OTHER_USER)


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return bearer(token)


@pytest.fixture
def other_auth(other_token: str) -> dict[str, str]:
    return bearer(other_token)


@pytest.fixture
def datasets(pg_store: Store) -> None:
    """`events` for each company (ids 101 and 202), schema only."""
    make_dataset(pg_store, dataset_id=EVENTS_ID)
    make_dataset(pg_store, dataset_id=OTHER_EVENTS_ID, company_id=OTHER_COMPANY)
