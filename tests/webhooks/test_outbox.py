"""The outbox on both backends: a delivery per matching subscription for every committed
transition, in the transition's own transaction (a rollback makes none), filters, and
the lease/ordering/retry rules of handing deliveries out."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from shared.states import JobState
from shared.store import Store
from shared.store.jobs import NewJob, cancel, claim, complete, create_job, transitions_of
from shared.store.models import WebhookDelivery, WebhookSubscription
from shared.store.types import utcnow
from shared.store.webhooks import (
    FAILED,
    Outcome,
    RetryPolicy,
    create_subscription,
    lease_for_sending,
    next_in_chain,
    record_outcome,
    take_lease,
)


def _sub(store: Store, company_id: int = 1, **filters: object) -> uuid.UUID:
    with store.unit_of_work() as session:
        return create_subscription(session, company_id=company_id, user_id=1, name="s",
                                   url="https://example.com/h", **filters).id  # type: ignore[arg-type]


def _job(store: Store, company_id: int = 1, type_: str = "nql-forecast") -> uuid.UUID:
    with store.unit_of_work() as session:
        job, _ = create_job(session, NewJob(company_id=company_id, user_id=1, type=type_,
                                            nql="EXPLAIN SELECT 1"))
        return job.id


def _run(store: Store, job_id: uuid.UUID) -> None:
    with store.unit_of_work() as session:
        attempt = claim(session, job_id, executor="w", lease_seconds=30)
        assert attempt is not None
    with store.unit_of_work() as session:
        assert complete(session, job_id, attempt=attempt, executor="w", result={"r": 1},
                        statistics={})


def _deliveries(store: Store, sub: uuid.UUID) -> list[WebhookDelivery]:
    with store.unit_of_work() as session:
        return list(session.scalars(select(WebhookDelivery)
                                    .where(WebhookDelivery.subscription_id == sub)
                                    .order_by(WebhookDelivery.transition_id)))


def test_one_delivery_per_transition_with_the_job_as_of_that_commit(store: Store) -> None:
    every, completed_only = _sub(store), _sub(store, states=["completed"])
    other_company = _sub(store, company_id=2)
    job_id = _job(store)
    _run(store, job_id)
    with store.unit_of_work() as session:
        log = transitions_of(session, job_id)
    rows = _deliveries(store, every)
    assert [r.transition_id for r in rows] == [t.id for t in log]
    assert [(r.previous_state, r.state) for r in rows] == [
        (None, "pending"), ("pending", "running"), ("running", "completed")]
    snapshots = [json.loads(r.payload or "") for r in rows]
    assert [s["state"] for s in snapshots] == ["pending", "running", "completed"]
    assert snapshots[0]["job_id"] == str(job_id) and snapshots[2]["result"] == {"r": 1}
    assert snapshots[1]["started_at"] is not None and snapshots[1]["ended_at"] is None
    assert [r.state for r in _deliveries(store, completed_only)] == ["completed"]
    assert _deliveries(store, other_company) == []


def test_filters_by_job_id_and_type_and_disabled_subscriptions(store: Store) -> None:
    wanted = _job(store)
    by_id = _sub(store, job_ids=[wanted])
    by_type = _sub(store, job_types=["materialize-view"])
    disabled = _sub(store)
    with store.unit_of_work() as session:
        session.get_one(WebhookSubscription, disabled).enabled = False
    other = _job(store)
    view = _job(store, type_="materialize-view")
    for job_id in (wanted, other, view):
        with store.unit_of_work() as session:
            cancel(session, job_id, actor="t")
    assert {r.job_id for r in _deliveries(store, by_id)} == {wanted}
    assert {r.job_id for r in _deliveries(store, by_type)} == {view}
    assert _deliveries(store, disabled) == []


def test_a_rolled_back_transition_makes_no_delivery(store: Store) -> None:
    sub = _sub(store)
    job_id = _job(store)
    with pytest.raises(RuntimeError), store.unit_of_work() as session:
        cancel(session, job_id, actor="t")
        raise RuntimeError("rollback")
    assert [r.state for r in _deliveries(store, sub)] == ["pending"]


def test_only_the_oldest_pending_event_of_a_job_is_handed_out_and_a_lease_is_exclusive(
        store: Store) -> None:
    sub = _sub(store)
    first, second = _job(store), _job(store)
    with store.unit_of_work() as session:
        cancel(session, first, actor="t")
    with store.unit_of_work() as session:
        leased = lease_for_sending(session, lease_seconds=30)
    by_id = {r.id: r for r in _deliveries(store, sub)}
    # One head per job: each job's `pending` event, not its later ones.
    assert sorted(by_id[i].job_id.hex for i, _ in leased) == sorted([first.hex, second.hex])
    assert all(by_id[i].state == "pending" for i, _ in leased)
    with store.unit_of_work() as session:
        assert lease_for_sending(session, lease_seconds=30) == []  # all leased
    delivery_id, token = next(pair for pair in leased if by_id[pair[0]].job_id == first)
    with store.unit_of_work() as session:
        send = take_lease(session, delivery_id, token, lease_seconds=30)
        assert send is not None and send.secret.startswith("whsec_")
    with store.unit_of_work() as session:  # a duplicate message: the token was swapped
        assert take_lease(session, delivery_id, token, lease_seconds=30) is None
    policy = RetryPolicy(base_seconds=5, max_hours=24, disable_after=5)
    with store.unit_of_work() as session:
        assert record_outcome(session, send, Outcome(200, None, "ok"), policy) == "delivered"
        nxt = next_in_chain(session, send, lease_seconds=30)
    assert nxt is not None and by_id[nxt[0]].state == "pending_cancellation"


def test_failures_back_off_then_fail_and_disable_the_subscription(store: Store) -> None:
    sub = _sub(store)
    job_ids = [_job(store) for _ in range(2)]
    policy = RetryPolicy(base_seconds=1, max_hours=0.001, disable_after=2)  # 3.6 s of retries
    waits = []
    for _ in range(10):
        with store.unit_of_work() as session:
            leased = lease_for_sending(session, lease_seconds=30, now=utcnow() + timedelta(hours=1))
        if not leased:
            break
        for delivery_id, token in leased:
            with store.unit_of_work() as session:
                send = take_lease(session, delivery_id, token, lease_seconds=30)
                if send is None:
                    continue
                before = utcnow()
                status = record_outcome(session, send, Outcome(500, None, "boom"), policy)
                row = session.get_one(WebhookDelivery, delivery_id)
                if status == "pending":
                    waits.append((row.attempts, (row.next_attempt_at - before).total_seconds()))
    for attempts, wait in waits:  # base * 2^(n-1), +-20% jitter
        assert 0.8 * 2 ** (attempts - 1) - 0.01 <= wait <= 1.2 * 2 ** (attempts - 1) + 0.01
    rows = _deliveries(store, sub)
    assert {r.status for r in rows} == {FAILED}
    with store.unit_of_work() as session:
        subscription = session.get_one(WebhookSubscription, sub)
        assert not subscription.enabled
        assert "2 failed deliveries in a row" in (subscription.disabled_reason or "")
    # A disabled subscription gets no new events.
    with store.unit_of_work() as session:
        cancel(session, job_ids[0], actor="t")
    assert len(_deliveries(store, sub)) == len(rows)
    assert JobState.CANCELLED


def test_enqueue_counts_what_it_made_and_renders_nothing_without_a_match(store: Store) -> None:
    # The count decides whether the job's wire snapshot is rendered (a SELECT, JSON and an
    # UPDATE per transition): with no matching subscription it must be 0, not "unknown".
    from shared.store.models import JobTransition
    from shared.store.webhooks import enqueue_deliveries

    job_id = _job(store)
    _sub(store, company_id=2)
    _sub(store, states=["failed"])

    def enqueue() -> int:
        with store.unit_of_work() as session:
            transition = session.scalars(select(JobTransition).where(JobTransition.job_id == job_id)).one()
            return enqueue_deliveries(session, job_id=job_id, transition_id=transition.id,
                                      previous=None, target=JobState.COMPLETED, at=utcnow())
    assert enqueue() == 0
    first, second = _sub(store), _sub(store, states=["completed"])
    assert enqueue() == 2
    assert [json.loads(r.payload or "")["job_id"] for s in (first, second) for r in _deliveries(store, s)] \
        == [str(job_id)] * 2
