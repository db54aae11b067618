"""The dispatcher's sweep on the store (SQLite and PostgreSQL), through the Publisher
seam; tests/scheduler/test_publish_redis.py publishes to the real Redis."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from scheduler.dispatcher import Dispatcher, forget_publications
from shared.config import Settings
from shared.queues import DEDICATED_QUEUE, SHARED_QUEUE, broker_priority, pool_queue
from shared.states import JobState
from shared.store import Store
from shared.store.jobs import claim, request_cancellation, transitions_of
from shared.store.types import utcnow
from tests.scheduler.helpers import Clock, RecordingPublisher, get, new_job, set_columns


def dispatcher(store: Store, publisher: RecordingPublisher, clock: Clock | None = None,
               **settings: object) -> Dispatcher:
    # The relay itself, with admission off (FIFO); tests/scheduler/test_admission.py
    # covers fair share.
    return Dispatcher(settings=Settings(**{"fair_share": False, **settings}), store=store, publisher=publisher,
                      actor="dispatcher-test", clock=clock or utcnow)


def test_publishes_pending_jobs_in_priority_order_and_marks_them(store: Store) -> None:
    priorities = [0, -2, 2, 1, 0, -1, 2]
    ids = [new_job(store, priority=p) for p in priorities]
    publisher = RecordingPublisher()

    result = dispatcher(store, publisher).sweep()

    # Highest priority first; within a priority, oldest first.
    expected = [job_id for _, _, job_id in
                sorted((-p, i, job_id) for i, (p, job_id) in enumerate(zip(priorities, ids, strict=True)))]
    assert publisher.job_ids == expected
    assert result.published == expected and result.republished == 0
    assert [m.broker_priority for m in publisher.messages] == [
        broker_priority(p) for p in sorted(priorities, reverse=True)]
    for job_id in ids:
        job = get(store, job_id)
        assert job.state == JobState.PENDING and job.published_at is not None

    # Published jobs are not owed a message any more.
    again = RecordingPublisher()
    assert dispatcher(store, again).sweep().published == []


def test_message_routes_by_cluster_and_pool(store: Store) -> None:
    pool = uuid.uuid4()
    shared = new_job(store)
    dedicated = new_job(store, execution_cluster="dedicated", type="materialize-view",
                        nql='CREATE MATERIALIZED VIEW "v" AS SELECT 1')
    pooled = new_job(store, execution_cluster="dedicated", compute_pool_id=pool)
    publisher = RecordingPublisher()
    dispatcher(store, publisher).sweep()

    by_id = {m.job_id: m for m in publisher.messages}
    assert by_id[shared].queue == SHARED_QUEUE
    assert by_id[dedicated].queue == DEDICATED_QUEUE
    assert by_id[pooled].queue == pool_queue(pool)
    assert by_id[dedicated].kwargs == {"job_id": str(dedicated), "job_type": "materialize-view",
                                       "cluster": "dedicated"}


def test_pending_cancellation_is_finalized_and_never_published(store: Store) -> None:
    unstarted = new_job(store)
    running = new_job(store)
    with store.unit_of_work() as session:
        request_cancellation(session, unstarted, actor="user")
        claim(session, running, executor="w1", lease_seconds=30)
    with store.unit_of_work() as session:
        request_cancellation(session, running, actor="user")
    publisher = RecordingPublisher()

    result = dispatcher(store, publisher).sweep()

    assert result.cancelled == 1 and publisher.messages == []
    assert get(store, unstarted).state == JobState.CANCELLED
    # A run in progress is its worker's to finalize (or the reaper's, if it is lost).
    assert get(store, running).state == JobState.PENDING_CANCELLATION
    with store.unit_of_work() as session:
        last = transitions_of(session, unstarted)[-1]
    assert (last.from_state, last.to_state, last.actor) == (
        "pending_cancellation", "cancelled", "dispatcher-test")


def test_run_after_is_respected(store: Store) -> None:
    clock = Clock()
    later = new_job(store)
    now = new_job(store)
    set_columns(store, later, run_after=clock.now + timedelta(seconds=30))
    set_columns(store, now, run_after=clock.now - timedelta(seconds=1))
    publisher = RecordingPublisher()
    sweeper = dispatcher(store, publisher, clock)

    assert sweeper.sweep().published == [now]
    clock.advance(29)
    assert sweeper.sweep().published == []
    clock.advance(2)
    assert sweeper.sweep().published == [later]


def test_failed_publish_leaves_the_rest_unpublished_for_the_next_sweep(store: Store) -> None:
    ids = [new_job(store) for _ in range(5)]
    down = RecordingPublisher(fail_after=2)

    result = dispatcher(store, down).sweep()

    assert result.broker_failed and result.published == ids[:2]
    assert [get(store, j).published_at is None for j in ids] == [False, False, True, True, True]
    up = RecordingPublisher()
    assert dispatcher(store, up).sweep().published == ids[2:]


def test_unpublished_jobs_survive_many_failed_sweeps(store: Store) -> None:
    ids = [new_job(store, priority=p) for p in (0, 2)]
    sweeper = dispatcher(store, RecordingPublisher(fail_after=0))
    for _ in range(3):
        assert sweeper.sweep().broker_failed
    assert all(get(store, j).published_at is None for j in ids)
    sweeper.publisher = RecordingPublisher()
    assert sweeper.sweep().published == [ids[1], ids[0]]


def test_republishes_stale_messages_with_a_doubling_wait(store: Store) -> None:
    clock = Clock()
    job_id = new_job(store)
    publisher = RecordingPublisher()
    sweeper = dispatcher(store, publisher, clock, republish_after_seconds=10,
                         republish_max_seconds=1000)
    assert sweeper.sweep().published == [job_id]            # published at ~t0

    clock.advance(9)
    assert sweeper.sweep().published == []                  # younger than 10 s
    clock.advance(2)                                        # t0+11: stale
    result = sweeper.sweep()
    assert result.published == [job_id] and result.republished == 1
    # Pending 11 s when republished: the next wait is 11 s, not 10.
    clock.advance(10.5)
    assert sweeper.sweep().published == []
    clock.advance(1)
    assert sweeper.sweep().published == [job_id]
    assert len(publisher.messages) == 3


def test_republish_wait_is_capped(store: Store) -> None:
    clock = Clock()
    job_id = new_job(store)
    publisher = RecordingPublisher()
    sweeper = dispatcher(store, publisher, clock, republish_after_seconds=10,
                         republish_max_seconds=60)
    sweeper.sweep()
    clock.advance(500)             # pending for 500 s: uncapped it would wait 500 s next
    assert sweeper.sweep().republished == 1
    clock.advance(59)
    assert sweeper.sweep().published == []
    clock.advance(2)
    assert sweeper.sweep().published == [job_id]


def test_forgotten_publications_are_published_again(store: Store) -> None:
    ids = [new_job(store) for _ in range(3)]
    publisher = RecordingPublisher()
    sweeper = dispatcher(store, publisher)
    sweeper.sweep()
    with store.unit_of_work() as session:
        claim(session, ids[0], executor="w1", lease_seconds=30)

    assert forget_publications(store) == 2   # the running job is not owed a message
    assert sweeper.sweep().published == ids[1:]


class LostQueues:
    """A broker watch that reports one loss (the Redis one is tested on real Redis)."""

    def __init__(self) -> None:
        self.losses = 1
        self.acknowledged = 0

    def lost_messages(self) -> bool:
        return self.losses > self.acknowledged

    def acknowledge(self) -> None:
        self.acknowledged += 1


def test_broker_loss_republishes_every_pending_job_at_once(store: Store) -> None:
    ids = [new_job(store) for _ in range(3)]
    first = RecordingPublisher()
    dispatcher(store, first).sweep()
    watch = LostQueues()
    publisher = RecordingPublisher()
    sweeper = Dispatcher(settings=Settings(fair_share=False), store=store, publisher=publisher, actor="d",
                         broker_watch=watch)

    assert sweeper.sweep().published == ids
    assert watch.acknowledged == 1
    assert sweeper.sweep().published == []


def test_batches_cover_a_backlog_in_priority_order(store: Store) -> None:
    low = [new_job(store, priority=-1) for _ in range(7)]
    high = [new_job(store, priority=1) for _ in range(5)]
    publisher = RecordingPublisher()
    result = dispatcher(store, publisher, dispatch_batch_size=3).sweep()
    assert result.published == high + low


def test_a_job_claimed_and_requeued_during_publish_is_not_marked(sqlite_database: str) -> None:
    """SQLite locks no rows: a worker may claim between our publish and our mark. If that
    run is then requeued, the job must still be owed a message (compare-and-set on the
    attempt). PostgreSQL holds the row lock, so the claim waits for our commit."""
    from shared.store.jobs import failure_entry, requeue

    store = Store.from_url(sqlite_database)
    try:
        job_id = new_job(store)

        def worker_claims_then_loses_it(message: object) -> None:
            with store.unit_of_work() as session:
                attempt = claim(session, job_id, executor="w1", lease_seconds=30)
                assert attempt == 1
                requeue(session, job_id, attempt=1, actor="reaper",
                        failure=failure_entry("worker lost"))

        dispatcher(store, RecordingPublisher(on_publish=worker_claims_then_loses_it)).sweep()
        job = get(store, job_id)
        assert job.state == JobState.PENDING and job.published_at is None
        assert dispatcher(store, RecordingPublisher()).sweep().published == [job_id]
    finally:
        store.dispose()


@pytest.mark.parametrize("state", [JobState.RUNNING, JobState.COMPLETED, JobState.CANCELLED])
def test_jobs_not_pending_are_never_published(store: Store, state: JobState) -> None:
    job_id = new_job(store)
    set_columns(store, job_id, state=state.value, attempts=1)
    publisher = RecordingPublisher()
    dispatcher(store, publisher).sweep()
    assert publisher.messages == []
