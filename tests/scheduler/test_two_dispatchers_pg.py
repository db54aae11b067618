"""Two schedulers sweeping the same PostgreSQL at once (FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

import threading
from collections import Counter

from scheduler.dispatcher import Dispatcher
from shared.config import Settings
from shared.store import Store
from tests.scheduler.helpers import RecordingPublisher, get, new_job


def test_two_dispatchers_never_publish_a_job_twice_in_one_round(pg_store: Store,
                                                                pg_database: str) -> None:
    ids = [new_job(pg_store, priority=i % 5 - 2) for i in range(300)]
    stores = [Store.from_url(pg_database) for _ in range(2)]
    # Slow publishes keep both sweeps' transactions open at the same time.
    publishers = [RecordingPublisher(delay=0.002) for _ in range(2)]
    sweepers = [Dispatcher(settings=Settings(dispatch_batch_size=25, fair_share=False), store=s, publisher=p,
                           actor=f"d{n}")
                for n, (s, p) in enumerate(zip(stores, publishers, strict=True))]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def sweep(sweeper: Dispatcher) -> None:
        start.wait()
        try:
            sweeper.sweep()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=sweep, args=(s,)) for s in sweepers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for s in stores:
            s.dispose()

    assert errors == []
    counts = Counter(publishers[0].job_ids + publishers[1].job_ids)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1
    # Both took part: the locks were skipped, not waited for.
    assert publishers[0].messages and publishers[1].messages
    assert all(get(pg_store, job_id).published_at is not None for job_id in ids)
