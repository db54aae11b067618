"""Admission control and fair share in the dispatcher, on the store (SQLite and
PostgreSQL) through the Publisher seam; tests/scheduler/test_e2e_fair_share.py runs it
with real scheduler and worker processes."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import timedelta

from sqlalchemy import update

from scheduler.admission import Candidate, choose
from scheduler.dispatcher import Dispatcher
from shared.config import Settings
from shared.queues import SHARED_QUEUE, broker_priority, pool_queue
from shared.states import JobState
from shared.store import Store
from shared.store.fairshare import (
    CLUSTER_FULL,
    COMPANY_CAP,
    NO_WORKER,
    Share,
    in_flight,
    prune_workers,
    register_worker,
    set_company,
    wait_reason,
)
from shared.store.jobs import claim, complete
from shared.store.models import Job, Worker
from shared.store.types import utcnow
from tests.scheduler.helpers import RecordingPublisher, get, new_job, set_columns


def sweeper(store: Store, publisher: RecordingPublisher, **settings: object) -> Dispatcher:
    return Dispatcher(settings=Settings(**settings), store=store, publisher=publisher,
                      actor="dispatcher-test")


def worker(store: Store, queue: str = SHARED_QUEUE, concurrency: int = 2,
           name: str | None = None) -> None:
    with store.unit_of_work() as session:
        register_worker(session, name=name or f"w-{uuid.uuid4()}", queue=queue,
                        concurrency=concurrency)


def finish(store: Store, job_id: uuid.UUID) -> None:
    with store.unit_of_work() as session:
        attempt = claim(session, job_id, executor="w", lease_seconds=30)
        assert attempt is not None
        complete(session, job_id, attempt=attempt, executor="w", result={}, statistics={})


def test_nothing_is_admitted_without_a_live_worker(store: Store) -> None:
    job = new_job(store)
    publisher = RecordingPublisher()
    settings = Settings()
    assert sweeper(store, publisher).sweep().published == []
    with store.unit_of_work() as session:
        assert wait_reason(session, settings, session.get_one(Job, job)) == NO_WORKER

    # A worker seen too long ago does not count either.
    worker(store)
    with store.unit_of_work() as session:
        session.execute(update(Worker).values(last_seen=utcnow() - timedelta(seconds=60)))
    assert sweeper(store, publisher).sweep().published == []

    worker(store, concurrency=1)
    assert sweeper(store, publisher).sweep().published == [job]


def test_bound_is_live_concurrency_plus_buffer_and_refills_as_jobs_end(store: Store) -> None:
    ids = [new_job(store) for _ in range(10)]
    worker(store, concurrency=2)
    worker(store, concurrency=1)
    publisher = RecordingPublisher()
    assert sweeper(store, publisher, admission_buffer=1).sweep().published == ids[:4]
    with store.unit_of_work() as session:
        assert wait_reason(session, Settings(), session.get_one(Job, ids[4])) == CLUSTER_FULL
    assert sweeper(store, publisher, admission_buffer=1).sweep().published == []
    finish(store, ids[0])
    finish(store, ids[1])
    assert sweeper(store, publisher, admission_buffer=1).sweep().published == ids[4:6]
    # Another queue's workers add nothing to the shared cluster.
    worker(store, queue=pool_queue(uuid.uuid4()), concurrency=8)
    assert sweeper(store, publisher, admission_buffer=1).sweep().published == []


def test_a_second_company_goes_next_whatever_the_first_one_queued(store: Store) -> None:
    burst = [new_job(store, company_id=1) for _ in range(20)]
    worker(store, concurrency=2)
    publisher = RecordingPublisher()
    assert sweeper(store, publisher, admission_buffer=1).sweep().published == burst[:3]
    small = new_job(store, company_id=2)
    finish(store, burst[0])
    assert sweeper(store, publisher, admission_buffer=1).sweep().published == [small]
    # Nothing of company 2 was in flight: its job goes ahead of the buffered burst job.
    assert publisher.messages[-1].broker_priority == broker_priority(2)
    assert publisher.messages[1].broker_priority == broker_priority(0)  # burst[1]
    finish(store, burst[1])
    assert sweeper(store, publisher, admission_buffer=1).sweep().published == [burst[3]]


def test_a_company_at_its_cap_waits_without_blocking_others(store: Store) -> None:
    capped = [new_job(store, company_id=1) for _ in range(5)]
    other = [new_job(store, company_id=2) for _ in range(5)]
    worker(store, concurrency=6)
    publisher = RecordingPublisher()
    with store.unit_of_work() as session:
        set_company(session, 1, max_running=1)
    published = sweeper(store, publisher, admission_buffer=0).sweep().published
    assert Counter(get(store, j).company_id for j in published) == {1: 1, 2: 5}
    with store.unit_of_work() as session:
        assert wait_reason(session, Settings(), session.get_one(Job, capped[1])) == COMPANY_CAP
    assert set(other) <= set(published)

    # The deployment default applies on the shared cluster when the company has none.
    more = [new_job(store, company_id=3) for _ in range(5)]
    worker(store, concurrency=10)
    published = sweeper(store, publisher, admission_buffer=0,
                        shared_max_running_per_company=2).sweep().published
    assert Counter(get(store, j).company_id for j in published) == {3: 2}
    assert set(published) <= set(more)


def test_priority_orders_a_company_s_own_jobs_and_ages(store: Store) -> None:
    old_low = new_job(store, priority=-2)
    set_columns(store, old_low, created_at=utcnow() - timedelta(seconds=100))
    low = new_job(store, priority=-1)
    high = new_job(store, priority=2)
    worker(store, concurrency=1)
    publisher = RecordingPublisher()
    # Aging one level per 10 s: waiting 100 s lifts -2 to an effective 8.
    assert sweeper(store, publisher, admission_buffer=0,
                   priority_aging_seconds=10).sweep().published == [old_low]
    finish(store, old_low)
    # Without that much wait, priority decides.
    assert sweeper(store, publisher, admission_buffer=0,
                   priority_aging_seconds=1000).sweep().published == [high]
    finish(store, high)
    assert sweeper(store, publisher, admission_buffer=0).sweep().published == [low]


def test_fifo_setting_publishes_everything_at_once(store: Store) -> None:
    ids = [new_job(store, company_id=1 + i % 2) for i in range(6)]
    publisher = RecordingPublisher()
    assert sweeper(store, publisher, fair_share=False).sweep().published == ids


def _candidates(company: int, n: int, start: float = 0.0) -> list[Candidate]:
    return [Candidate(uuid.uuid4(), "nql-forecast", "shared", None, company, 0, 0,
                      -(start + i)) for i in range(n)]


def test_weights_split_slots_in_proportion() -> None:
    pending = _candidates(1, 100) + _candidates(2, 100)
    shares = {1: Share(2, None), 2: Share(1, None)}
    chosen = choose(30, pending, {}, shares)
    assert Counter(c.company_id for c in chosen) == {1: 20, 2: 10}
    # Already running jobs count: company 1 has its share, the next slots go to 2.
    assert {c.company_id for c in choose(3, pending, {1: 8, 2: 1}, shares)} == {2}


def test_two_dispatchers_never_exceed_the_bound_nor_publish_twice(pg_store: Store,
                                                                 pg_database: str) -> None:
    ids = [new_job(pg_store, company_id=1 + i % 3) for i in range(120)]
    worker(pg_store, concurrency=7)
    stores = [Store.from_url(pg_database) for _ in range(2)]
    publishers = [RecordingPublisher(delay=0.002) for _ in range(2)]
    settings = Settings(admission_buffer=3, dispatch_batch_size=25)
    sweepers = [Dispatcher(settings=settings, store=s, publisher=p, actor=f"d{n}")
                for n, (s, p) in enumerate(zip(stores, publishers, strict=True))]
    errors: list[BaseException] = []
    over: list[int] = []

    def run(sweeper: Dispatcher) -> None:
        try:
            for _ in range(30):
                sweeper.sweep()
                with pg_store.unit_of_work() as session:
                    flying = sum(in_flight(session).get(SHARED_QUEUE, {}).values())
                if flying > 10:
                    over.append(flying)
                # Finish one published job, as a worker would, to free a slot.
                with pg_store.unit_of_work() as session:
                    job = session.scalars(
                        Job.__table__.select().with_only_columns(Job.id)
                        .where(Job.state == JobState.PENDING.value, Job.published_at.is_not(None))
                        .limit(1).with_for_update(skip_locked=True)).first()
                    if job is not None:
                        attempt = claim(session, job, executor="w", lease_seconds=30)
                        assert attempt is not None
                        complete(session, job, attempt=attempt, executor="w", result={},
                                 statistics={})
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(s,)) for s in sweepers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for s in stores:
            s.dispose()
    assert errors == []
    assert over == []
    counts = Counter(publishers[0].job_ids + publishers[1].job_ids)
    assert counts and max(counts.values()) == 1
    assert set(counts) <= set(ids)
    assert publishers[0].messages and publishers[1].messages


def test_workers_gone_for_a_day_are_forgotten(store: Store) -> None:
    worker(store, name="old")
    worker(store, name="new")
    with store.unit_of_work() as session:
        session.execute(update(Worker).where(Worker.name == "old")
                        .values(last_seen=utcnow() - timedelta(days=2)))
        prune_workers(session, older_than=timedelta(days=1))
    with store.unit_of_work() as session:
        assert [w.name for w in session.query(Worker)] == ["new"]
