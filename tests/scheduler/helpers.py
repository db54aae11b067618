"""Builders shared by the scheduler tests."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update

from scheduler.publisher import PublishFailed, RunJobMessage
from shared.store import Store
from shared.store.jobs import NewJob, create_job
from shared.store.models import Job
from shared.store.types import utcnow


def new_job(store: Store, **overrides: Any) -> uuid.UUID:
    fields: dict[str, Any] = {"company_id": 1, "user_id": 7, "type": "nql-forecast",
                              "nql": "EXPLAIN SELECT 1"}
    fields.update(overrides)
    with store.unit_of_work() as session:
        job, _ = create_job(session, NewJob(**fields))
        return job.id


def set_columns(store: Store, job_id: uuid.UUID, **values: Any) -> None:
    """Test setup only: write columns directly."""
    with store.unit_of_work() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def get(store: Store, job_id: uuid.UUID) -> Job:
    with store.unit_of_work() as session:
        return session.get_one(Job, job_id)


class RecordingPublisher:
    """The Publisher seam for store-level unit tests: records what would be sent.
    (Integration tests publish to the real Redis through CeleryPublisher.)"""

    def __init__(self, *, fail_after: int | None = None, delay: float = 0.0,
                 on_publish: Callable[[RunJobMessage], None] | None = None) -> None:
        self.messages: list[RunJobMessage] = []
        self.fail_after = fail_after
        self.delay = delay
        self.on_publish = on_publish
        self._lock = threading.Lock()

    def publish(self, message: RunJobMessage) -> None:
        if self.fail_after is not None and len(self.messages) >= self.fail_after:
            raise PublishFailed("broker down (test)")
        if self.delay:
            time.sleep(self.delay)
        if self.on_publish is not None:
            self.on_publish(message)
        with self._lock:
            self.messages.append(message)

    def close(self) -> None:
        pass

    @property
    def job_ids(self) -> list[uuid.UUID]:
        return [m.job_id for m in self.messages]


class Clock:
    """A settable clock for duties (`clock=`), starting at the real now."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now
