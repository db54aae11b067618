from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared.errors import AuthenticationFailed
from shared.store import Store
from shared.store.jobs import NewJob, create_job
from shared.store.models import Job, JobTransition
from shared.store.tokens import authenticate, create_token, revoke_token


def _submit(store: Store, company_id: int, key: str | None) -> tuple[str, bool]:
    with store.unit_of_work() as session:
        job, created = create_job(session, NewJob(company_id=company_id, user_id=1, type="nql-forecast",
                                                  nql="EXPLAIN SELECT 1", idempotency_key=key))
        return str(job.id), created


def test_same_key_same_company_same_job(store: Store) -> None:
    first, created = _submit(store, 1, "k-1")
    again, created_again = _submit(store, 1, "k-1")
    assert created and not created_again and first == again
    with store.unit_of_work() as session:
        assert session.scalar(select(func.count(Job.id))) == 1
        assert session.scalar(select(func.count(JobTransition.id))) == 1


def test_same_key_other_company_other_job(store: Store) -> None:
    first, _ = _submit(store, 1, "k-1")
    other, created = _submit(store, 2, "k-1")
    assert created and first != other


def test_no_key_gets_a_unique_one(store: Store) -> None:
    first, _ = _submit(store, 1, None)
    second, _ = _submit(store, 1, None)
    assert first != second
    with store.unit_of_work() as session:
        keys = set(session.scalars(select(Job.idempotency_key)))
    assert keys == {first, second}


def test_tokens(store: Store) -> None:
    with store.unit_of_work() as session:
        token = create_token(session, company_id=4, user_id=9)
    with store.unit_of_work() as session:
        principal = authenticate(session, token)
        assert (principal.company_id, principal.user_id) == (4, 9)
        with pytest.raises(AuthenticationFailed):
            authenticate(session, token + "x")
        assert revoke_token(session, token)
    with store.unit_of_work() as session, pytest.raises(AuthenticationFailed):
        authenticate(session, token)
