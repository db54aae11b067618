"""The dispatcher: the relay of a transactional outbox whose outbox is the jobs table.

The API commits a job `pending` with `published_at` NULL ("a message is owed") and
only then nudges us, so a worker can always find the job a message names. Each sweep:

1. finalizes `pending_cancellation` jobs that never started (no lease) to `cancelled`;
2. publishes every pending job that is owed a message and whose `run_after` has
   passed, highest priority first, then oldest first; and marks it published.

A message is only a hint (the worker's claim is a compare-and-set), so the relay is
at-least-once: publish first, mark afterwards. A publish that fails (broker down)
leaves the job unpublished for the next sweep, so an outage delays jobs and loses
none. Messages can still vanish after a successful publish (Redis restarted without
persistence, a worker killed between receiving and claiming); so a job published
long ago and still pending is published again. The wait before a republish doubles
with the time the job has been pending (`republish_after_seconds`, capped at
`republish_max_seconds`): a deep backlog then costs a few duplicates per job, not one
per interval. The broker watch (broker_watch.py) handles a Redis restart at once.

On PostgreSQL the rows of a batch are locked `FOR UPDATE SKIP LOCKED` from selection
until they are marked, so two schedulers can sweep at once without publishing a job
twice in one round. SQLite serializes writers and runs one scheduler.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from scheduler.admission import MAX_PRIORITY, Admission, lock_admission
from scheduler.broker_watch import BrokerWatch
from scheduler.publisher import Publisher, PublishFailed, RunJobMessage
from scheduler.sqltime import epoch_seconds
from shared.config import Settings
from shared.states import JobState
from shared.store import Store
from shared.store.db import execute_dml
from shared.store.jobs import finalize_cancel
from shared.store.models import Job
from shared.store.types import utcnow

log = logging.getLogger(__name__)

# One sweep stops starting new batches after this long, so the reaper (same thread)
# still runs while a huge backlog is being published; the rest goes next sweep.
_SWEEP_BUDGET_SECONDS = 5.0


@dataclass
class SweepResult:
    published: list[uuid.UUID] = field(default_factory=list)
    republished: int = 0
    cancelled: int = 0
    broker_failed: bool = False


@dataclass(frozen=True)
class _Owed:
    id: uuid.UUID
    type: str
    execution_cluster: str
    compute_pool_id: uuid.UUID | None
    priority: int
    attempts: int
    published_at: datetime | None


def owed_messages(now: datetime, *, republish_after: float, republish_max: float,
                  limit: int, unpublished: bool = True,
                  ) -> Select[uuid.UUID, str, str, uuid.UUID | None, int, int, datetime | None]:
    """Pending jobs owed a message, most urgent first, locked for this transaction.
    With `unpublished=False` only the republishes (admission decides the first publish)."""
    first_wait = now - timedelta(seconds=republish_after)
    longest_wait = now - timedelta(seconds=republish_max)
    # Republish when published_at + max(R, published_at - updated_at) < now, i.e. the
    # wait doubles with the time pending (updated_at = when it last became pending).
    stale = and_(
        Job.published_at < first_wait,
        or_(Job.published_at < longest_wait,
            2 * epoch_seconds(Job.published_at) - epoch_seconds(Job.updated_at)
            < now.timestamp()),
    )
    return (
        select(Job.id, Job.type, Job.execution_cluster, Job.compute_pool_id, Job.priority,
               Job.attempts, Job.published_at)
        .where(Job.state == JobState.PENDING.value,
               or_(Job.published_at.is_(None), stale) if unpublished else stale,
               or_(Job.run_after.is_(None), Job.run_after <= now))
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL only
    )


def _mark_published(session: Session, rows: list[_Owed], now: datetime) -> None:
    if not rows:
        return
    # Compare-and-set on the attempt: if a worker claimed the job meanwhile (possible
    # on SQLite, which does not lock rows) and it already went back to pending, that
    # later pending spell is owed its own message and must stay unmarked.
    stmt = (
        update(Job)
        .where(Job.id == bindparam("b_id"), Job.attempts == bindparam("b_attempts"),
               Job.state == JobState.PENDING.value)
        .values(published_at=now)
    )
    session.connection().execute(
        stmt, [{"b_id": row.id, "b_attempts": row.attempts} for row in rows])


def finalize_unstarted_cancellations(store: Store, *, actor: str, limit: int) -> int:
    """`pending_cancellation` jobs without a lease never started (or their run was
    already requeued): nobody else will finalize them."""
    with store.unit_of_work() as session:
        ids = session.scalars(
            select(Job.id)
            .where(Job.state == JobState.PENDING_CANCELLATION.value,
                   Job.lease_expires_at.is_(None))
            .limit(limit)
        ).all()
    cancelled = 0
    for job_id in ids:
        with store.unit_of_work() as session:
            cancelled += finalize_cancel(
                session, job_id, actor=actor, reason="cancelled before it started",
                where=(Job.lease_expires_at.is_(None),))
    return cancelled


class Dispatcher:
    """The dispatch duty: run on a timer and whenever the API nudges."""

    name = "dispatcher"
    on_nudge = True

    def __init__(self, *, settings: Settings, store: Store, publisher: Publisher, actor: str,
                 broker_watch: BrokerWatch | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.actor = actor
        self.broker_watch = broker_watch
        self.clock = clock
        self.interval = settings.dispatch_interval_seconds
        self._broker_down_since: float | None = None
        self.admission = Admission(settings)
        self._republish_checked = -1e9

    def run(self) -> None:
        result = self.sweep()
        if result.published or result.cancelled:
            log.info("dispatched %d job(s) (%d republished), finalized %d cancellation(s)",
                     len(result.published), result.republished, result.cancelled)

    def sweep(self) -> SweepResult:
        result = SweepResult()
        if self.broker_watch is not None and self.broker_watch.lost_messages():
            forgotten = forget_publications(self.store)
            # Also seen on a first start against a fresh broker; only a loss is news.
            log.log(logging.WARNING if forgotten else logging.INFO,
                    "broker restarted or lost its data: republishing %d pending job(s)",
                    forgotten)
            self.broker_watch.acknowledge()
        result.cancelled = finalize_unstarted_cancellations(
            self.store, actor=self.actor, limit=self.settings.dispatch_batch_size)
        started = time.monotonic()
        # Under admission control this pass only republishes (lost messages, minutes
        # old): once per interval is enough, a nudge need not pay for it.
        relay = (not self.settings.fair_share
                 or started - self._republish_checked >= self.interval)
        while relay and time.monotonic() - started < _SWEEP_BUDGET_SECONDS:
            self._republish_checked = started
            sent = self._publish_batch(result)
            if result.broker_failed or sent < self.settings.dispatch_batch_size:
                break
        if self.settings.fair_share:
            while not result.broker_failed and time.monotonic() - started < _SWEEP_BUDGET_SECONDS:
                if self._admit_batch(result) < self.settings.dispatch_batch_size:
                    break
        self._note_broker(ok=not result.broker_failed)
        return result

    def _publish_batch(self, result: SweepResult) -> int:
        now = self.clock()
        query = owed_messages(now, republish_after=self.settings.republish_after_seconds,
                              republish_max=self.settings.republish_max_seconds,
                              limit=self.settings.dispatch_batch_size,
                              unpublished=not self.settings.fair_share)
        with self.store.unit_of_work() as session:
            rows = [_Owed(*row) for row in session.execute(query)]
            sent = self._send(rows, result)
            # Marked in the same transaction that holds the row locks: a second
            # scheduler skips them now and finds them published afterwards.
            _mark_published(session, sent, now)
        result.published.extend(row.id for row in sent)
        result.republished += sum(1 for row in sent if row.published_at is not None)
        return len(rows)

    def _admit_batch(self, result: SweepResult) -> int:
        """First publishes under admission control (scheduler/admission.py)."""
        with self.store.unit_of_work() as session:
            lock_admission(session)  # held until commit, i.e. until they are marked
            now = self.clock()
            chosen = self.admission.admit(session, now, limit=self.settings.dispatch_batch_size)
            rows = [_Owed(c.id, c.type, c.execution_cluster, c.compute_pool_id,
                          MAX_PRIORITY if c.under_share else c.priority, c.attempts, None)
                    for c in chosen]
            sent = self._send(rows, result)
            _mark_published(session, sent, now)
        result.published.extend(row.id for row in sent)
        return len(sent)

    def _send(self, rows: list[_Owed], result: SweepResult) -> list[_Owed]:
        """Publish in order until the broker fails; the ones that went out."""
        sent: list[_Owed] = []
        for row in rows:
            message = RunJobMessage.for_job(
                job_id=row.id, job_type=row.type, execution_cluster=row.execution_cluster,
                compute_pool_id=row.compute_pool_id, priority=row.priority)
            try:
                self.publisher.publish(message)
            except PublishFailed as error:
                self._log_broker_failure(error)
                result.broker_failed = True
                break
            sent.append(row)
        return sent

    def _log_broker_failure(self, error: Exception) -> None:
        if self._broker_down_since is None:
            self._broker_down_since = time.monotonic()
            log.warning("broker unavailable, jobs stay pending until it is back: %s", error)
        else:
            log.debug("broker still unavailable: %s", error)

    def _note_broker(self, *, ok: bool) -> None:
        if ok and self._broker_down_since is not None:
            log.warning("broker is back after %.1fs",
                        time.monotonic() - self._broker_down_since)
            self._broker_down_since = None


def forget_publications(store: Store) -> int:
    """Treat every pending job as owed a message again (its message may be gone)."""
    with store.unit_of_work() as session:
        stmt = (
            update(Job)
            .where(Job.state == JobState.PENDING.value, Job.published_at.is_not(None))
            .values(published_at=None)
        )
        return execute_dml(session, stmt)
