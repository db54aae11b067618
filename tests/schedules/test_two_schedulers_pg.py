"""Two `dataplane scheduler` processes on one PostgreSQL (high availability) for a minute,
with every-minute schedules: exactly one refresh job per schedule and minute.

The test plays the worker by marking refresh jobs completed as they appear, so each
minute's refresh is not skipped for its predecessor still being pending."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.store import Store
from shared.store.types import utcnow
from tests.processes import Process, start, wait_for
from tests.schedules.helpers import refresh_jobs, scheduled_view

DATASETS = range(200, 205)
WINDOW_SECONDS = 65  # covers at least one minute boundary with 5 s to spare
GRACE_SECONDS = 3  # a slot this close to the end may not have been fired yet

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.e2e, pytest.mark.slow]


def minute_boundaries(after: datetime, until: datetime) -> list[datetime]:
    first = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    out = []
    while first <= until:
        out.append(first)
        first += timedelta(minutes=1)
    return out


def test_two_schedulers_make_one_refresh_per_minute(pg_store: Store, pg_database: str,
                                                    redis_url: str, tmp_path: Path) -> None:
    created_at = utcnow()
    for dataset_id in DATASETS:
        scheduled_view(pg_store, dataset_id, "* * * * *", now=created_at)
    env = {"DATAPLANE_DATABASE_URL": pg_database, "DATAPLANE_BROKER_URL": redis_url,
           "DATAPLANE_DATA_DIR": str(tmp_path / "data"),
           "DATAPLANE_SCHEDULE_INTERVAL_SECONDS": "0.2"}
    schedulers: list[Process] = []
    try:
        schedulers = [start(f"scheduler{n}", ["scheduler"], env, tmp_path / "logs") for n in (1, 2)]
        wait_for(lambda: all("scheduler running" in p.log() for p in schedulers), timeout=30,
                 message="both schedulers to start")
        deadline = time.monotonic() + WINDOW_SECONDS
        while time.monotonic() < deadline:
            assert all(p.alive() for p in schedulers), [p.log() for p in schedulers]
            with pg_store.unit_of_work() as session:  # the worker's part
                session.execute(text("UPDATE jobs SET state = 'completed' WHERE state = 'pending'"))
            time.sleep(0.2)
        ended_at = utcnow()
    finally:
        for process in schedulers:
            process.stop()

    jobs = refresh_jobs(pg_store)
    per_slot = Counter((job.dataset_id, job.idempotency_key) for job in jobs)
    assert max(per_slot.values(), default=0) == 1
    fired = {(job.dataset_id, job.idempotency_key) for job in jobs}
    must = {(d, f"refresh:{d}:{b.isoformat().replace('+00:00', 'Z')}") for d in DATASETS
            for b in minute_boundaries(created_at, ended_at - timedelta(seconds=GRACE_SECONDS))}
    may = {(d, f"refresh:{d}:{b.isoformat().replace('+00:00', 'Z')}") for d in DATASETS
           for b in minute_boundaries(created_at, ended_at)}
    assert must and must <= fired <= may, (sorted(must), sorted(fired))
    made_by = [p.log().count("refresh of dataset") for p in schedulers]
    print(f"\n{len(jobs)} refresh jobs for {len(fired) // len(DATASETS)} minute(s) x "
          f"{len(DATASETS)} schedules; log lines per scheduler: {made_by}")
