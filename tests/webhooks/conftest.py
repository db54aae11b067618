"""Tokens for two companies on the session's PostgreSQL store."""

from __future__ import annotations

import pytest

from shared.store import Store
from shared.store.tokens import create_token


def _bearer(store: Store, company_id: int, user_id: int) -> dict[str, str]:
    with store.unit_of_work() as session:
        return {"Authorization": f"Bearer {create_token(session, company_id=company_id, user_id=user_id)}"}


@pytest.fixture
def auth(pg_store: Store) -> dict[str, str]:
    return _bearer(pg_store, 1, 11)


@pytest.fixture
def other_auth(pg_store: Store) -> dict[str, str]:
    return _bearer(pg_store, 2, 22)
