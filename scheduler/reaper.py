"""The reaper: runs whose worker was lost (SIGKILL, OOM, host gone) go back to pending.

A running job holds a lease its worker extends every lease/3 seconds; a lease that
expired means nobody is working on the job any more. We requeue it for another run
(the dispatcher publishes it at once), or fail it once the job has lost its worker
`max_attempts` times: a query that kills its worker every time (a poison query) must
end `failed`, not crash workers forever. A `pending_cancellation` job whose worker
was lost is finalized `cancelled`.

Every change is a compare-and-set that includes `lease_expires_at < now`: a worker
that heartbeats between our read and our write keeps its job. The old run, if it is
merely slow and not dead, is fenced off by its attempt number.

A lease only proves a worker lost if the worker could have renewed it. While the store
is unreachable nobody can heartbeat, so leases expire under live workers; reaping them
when the store comes back would throw their work away and, worse, count it against the
poison-query cap (a PostgreSQL restart failed healthy jobs as "worker lost" in
bench/faults.py). So when the reaper itself cannot reach the store, it reaps nothing
until the store has been reachable again for one whole lease period.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from shared.config import Settings
from shared.states import JobState
from shared.store import Store
from shared.store.jobs import fail, failure_entry, finalize_cancel, requeue
from shared.store.models import Job
from shared.store.types import utcnow

log = logging.getLogger(__name__)

LOST_PREFIX = "worker lost during attempt"


@dataclass
class ReapResult:
    requeued: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)
    cancelled: list[uuid.UUID] = field(default_factory=list)


@dataclass(frozen=True)
class Expired:
    id: uuid.UUID
    state: str
    attempts: int
    infra_retries: int
    executor: str | None


def lost_runs(attempts: int, infra_retries: int) -> int:
    """Runs of this job that lost their worker, the current one included. Runs ended by
    an infrastructure error were retried under retry_limit and do not count; every
    other run ended the job, so only these two kinds ever went back to pending."""
    return attempts - infra_retries


class Reaper:
    """The reaper duty (timer only)."""

    name = "reaper"
    on_nudge = False

    def __init__(self, *, settings: Settings, store: Store, actor: str,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.actor = actor
        self.clock = clock
        self.interval = settings.reaper_interval_seconds
        self._store_down = False
        self._store_back_at: datetime | None = None

    def run(self) -> None:
        result = self.reap()
        for job_id in result.requeued:
            log.warning("job %s: worker lost, requeued", job_id)
        for job_id in result.failed:
            log.warning("job %s: worker lost on its last allowed attempt, failed", job_id)
        for job_id in result.cancelled:
            log.info("job %s: worker lost while cancelling, finalized cancelled", job_id)

    def reap(self, *, limit: int = 500) -> ReapResult:
        now = self.clock()
        result = ReapResult()
        try:
            expired = self.find_expired(now, limit=limit)
        except DBAPIError:
            self._store_down, self._store_back_at = True, None
            raise
        if self._in_outage_grace(now):
            return result
        for row in expired:
            outcome = self.reap_one(row, now)
            if outcome is not None:
                getattr(result, outcome).append(row.id)
        return result

    def _in_outage_grace(self, now: datetime) -> bool:
        """True for one lease period after the store came back from an outage."""
        if self._store_down:
            self._store_down, self._store_back_at = False, now
            log.warning("store reachable again: no reaping for %ss, so workers can renew "
                        "the leases that expired during the outage", self.settings.lease_seconds)
        if self._store_back_at is None:
            return False
        if (now - self._store_back_at).total_seconds() < self.settings.lease_seconds:
            return True
        self._store_back_at = None
        return False

    def find_expired(self, now: datetime, *, limit: int = 500) -> list[Expired]:
        with self.store.unit_of_work() as session:
            return [Expired(*row) for row in session.execute(
                select(Job.id, Job.state, Job.attempts, Job.infra_retries, Job.executor)
                .where(Job.state.in_([JobState.RUNNING.value,
                                      JobState.PENDING_CANCELLATION.value]),
                       Job.lease_expires_at < now)
                .order_by(Job.lease_expires_at)
                .limit(limit)
            )]

    def reap_one(self, row: Expired, now: datetime) -> str | None:
        """Requeue, fail or finalize one expired run; returns which (a ReapResult field),
        or None when the run turned out alive (heartbeat) or already ended."""
        # One transaction per job: a conflict on one never undoes another.
        with self.store.unit_of_work() as session:
            expired = (Job.lease_expires_at < now,)
            if row.state == JobState.PENDING_CANCELLATION.value:
                done = finalize_cancel(
                    session, row.id, actor=self.actor, attempt=row.attempts, where=expired,
                    reason=f"{LOST_PREFIX} {row.attempts} (executor {row.executor}) "
                           "while cancelling")
                return "cancelled" if done else None
            if lost_runs(row.attempts, row.infra_retries) < self.settings.max_attempts:
                done = requeue(session, row.id, attempt=row.attempts, actor=self.actor,
                               failure=self._lost(row), where=expired)
                return "requeued" if done else None
            done = fail(session, row.id, attempt=row.attempts, actor=self.actor,
                        failure=self._given_up(row), where=expired)
            return "failed" if done else None

    @staticmethod
    def _lost(row: Expired) -> dict[str, Any]:
        return failure_entry(
            f"{LOST_PREFIX} {row.attempts} (executor {row.executor})",
            {"reason": "worker_lost", "attempt": row.attempts, "executor": row.executor})

    def _given_up(self, row: Expired) -> dict[str, Any]:
        lost = lost_runs(row.attempts, row.infra_retries)
        every = "on every attempt" if lost == row.attempts else f"on {lost} attempts"
        return failure_entry(
            f"{LOST_PREFIX} {row.attempts} (executor {row.executor}); the worker was lost "
            f"{every} ({lost} of at most {self.settings.max_attempts}), so the job is not "
            "retried again: the query may be crashing its worker (out of memory?)",
            {"reason": "worker_lost", "attempt": row.attempts, "executor": row.executor,
             "lost_attempts": lost, "max_attempts": self.settings.max_attempts})
