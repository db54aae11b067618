"""Schedulers racing on real PostgreSQL (threads, each its own connection), and the
overdue counts /metrics shows."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import text

from scheduler.schedules import refresh_due
from shared.store import Store
from shared.store.schedules import overdue_schedule_counts
from tests.schedules.helpers import refresh_jobs, scheduled_view, utc
from tests.store.test_concurrency_pg import race

NOW = utc(2026, 5, 4, 10, 17, 30)
SCHEDULERS = 8


def test_racing_schedulers_make_one_job_per_schedule_and_slot(pg_store: Store) -> None:
    datasets = range(100, 120)
    for dataset_id in datasets:
        scheduled_view(pg_store, dataset_id, "* * * * *", now=NOW)
    minutes = (18, 19, 20)
    for minute in minutes:
        # Their clocks disagree by up to a second and a half after the slot.
        nows = [utc(2026, 5, 4, 10, minute) + timedelta(milliseconds=200 * i)
                for i in range(SCHEDULERS)]
        race([partial(refresh_due, pg_store, now=now) for now in nows])
        with pg_store.unit_of_work() as session:  # the worker's part: all done
            session.execute(text("UPDATE jobs SET state = 'completed'"))
    keys = [job.idempotency_key for job in refresh_jobs(pg_store)]
    assert sorted(keys) == sorted(f"refresh:{d}:2026-05-04T10:{m}:00Z"
                                  for d in datasets for m in minutes)


def counts_at(store: Store, now: datetime) -> dict[str, float]:
    with store.unit_of_work() as session:
        return overdue_schedule_counts(session, now, grace_seconds=120)


def test_overdue_counts(store: Store) -> None:
    for dataset_id in range(10, 14):
        scheduled_view(store, dataset_id, "@hourly", now=NOW)
    assert counts_at(store, NOW) == {"active": 4, "pending": 0, "archived": 0, "overdue": 0,
                                     "max_overdue_seconds": 0.0}
    # The scheduler has been down since 11:00: 15 minutes late is overdue.
    late = utc(2026, 5, 4, 11, 15)
    assert (counts_at(store, late)["overdue"], counts_at(store, late)["max_overdue_seconds"]) == (4, 900.0)
    refresh_due(store, now=late)
    assert (counts_at(store, late)["overdue"], counts_at(store, late)["max_overdue_seconds"]) == (0, 0.0)
