"""Admission control with fair share: which pending jobs the dispatcher publishes now.

A queue (the shared cluster, the dedicated cluster, or one compute pool) holds at most
its *bound* of jobs in flight (published or running): the total concurrency of the live
workers serving it (their registration rows, shared/store/fairshare.py) plus
`admission_buffer`, so a freed worker process finds its next message already at the
broker. A queue no live worker serves admits nothing: its jobs wait in the store.

When slots are free, each is given in turn to the company with the fewest jobs in
flight on that queue relative to its weight (default 1), skipping companies at their
cap; ties go to the more urgent head job, then the older. Within a company, jobs go by
*effective priority*: priority plus one level per `priority_aging_seconds` waited. That
order does not depend on the clock (it is `priority * N - created_at`), so the database
can sort by it and hand us only each company's first few candidates.

HA: on PostgreSQL the whole pass (count, choose, publish, mark) runs under one
transaction-scoped advisory lock, so two schedulers take turns: the second one counts
what the first one marked, and neither can exceed the bound or publish an attempt twice.
Workers nudge the dispatcher when a job ends, so a freed slot is refilled at once.
The job of a company that stays below every other company's share even with it (a
newcomer behind a burst) is published at the top broker priority step: it then starts on
the next free process, ahead of what is buffered for busier companies (at most
`admission_buffer` jobs), so it waits about one job duration behind a burst.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from scheduler.sqltime import epoch_seconds
from shared.config import Settings
from shared.queues import SHARED_QUEUE
from shared.states import JobState
from shared.store.fairshare import (
    Share,
    bound_of,
    company_rows,
    company_share,
    live_capacity,
    queue_loads,
)
from shared.store.models import Company, Job

_CACHE_SECONDS = 1.0
MAX_PRIORITY = 2  # a job priority whose broker step is served first

# pg_advisory_xact_lock key of the admission pass ('dpadmit' as an integer).
ADMISSION_LOCK_KEY = 0x6470_6164_6D69_74


@dataclass(frozen=True)
class Candidate:
    id: uuid.UUID
    type: str
    execution_cluster: str
    compute_pool_id: uuid.UUID | None
    company_id: int
    priority: int
    attempts: int
    urgency: float  # effective priority in "seconds": priority * N - created_at epoch
    # Even with this job the company stays below every other company's share of the
    # queue: its message goes to the head of the broker queue, ahead of jobs already
    # buffered there for busier companies.
    under_share: bool = False


def lock_admission(session: Session) -> None:
    """Serialize admission passes across schedulers (PostgreSQL; SQLite runs one)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADMISSION_LOCK_KEY})


def candidates(session: Session, settings: Settings, *, cluster: str,
               pool: uuid.UUID | None, per_company: int, now: datetime) -> list[Candidate]:
    """The first `per_company` admittable jobs of each company on one queue."""
    urgency = Job.priority * settings.priority_aging_seconds - epoch_seconds(Job.created_at)
    rank = func.row_number().over(partition_by=Job.company_id,
                                  order_by=(urgency.desc(), Job.created_at, Job.id))
    inner = (
        select(Job.id, Job.type, Job.execution_cluster, Job.compute_pool_id, Job.company_id,
               Job.priority, Job.attempts, urgency.label("urgency"), rank.label("rank"))
        .where(Job.state == JobState.PENDING.value, Job.published_at.is_(None),
               or_(Job.run_after.is_(None), Job.run_after <= now),
               *((Job.execution_cluster == cluster, Job.compute_pool_id.is_(None))
                 if pool is None else (Job.compute_pool_id == pool,)))
        .subquery()
    )
    rows = session.execute(select(inner).where(inner.c.rank <= per_company))
    return [Candidate(r.id, r.type, r.execution_cluster, r.compute_pool_id, r.company_id,
                      r.priority, r.attempts, float(r.urgency)) for r in rows]


def choose(free: int, pending: Iterable[Candidate], flying: dict[int, int],
           shares: dict[int, Share]) -> list[Candidate]:
    """Give `free` slots, one at a time, by fair share (see the module docstring)."""
    queues: dict[int, list[Candidate]] = {}
    for job in sorted(pending, key=lambda j: -j.urgency):
        queues.setdefault(job.company_id, []).append(job)
    counts = dict(flying)
    heads = {company: 0 for company in queues}
    chosen: list[Candidate] = []
    while len(chosen) < free:
        best: tuple[float, float, int] | None = None
        for company, jobs in queues.items():
            i = heads[company]
            if i >= len(jobs):
                continue
            share = shares[company]
            running = counts.get(company, 0)
            if share.max_running is not None and running >= share.max_running:
                continue
            key = (running / share.weight, -jobs[i].urgency, company)
            if best is None or key < best:
                best = key
        if best is None:
            break
        company = best[2]
        job = queues[company][heads[company]]
        mine = (counts.get(company, 0) + 1) / shares[company].weight
        others = [n / shares[o].weight for o, n in counts.items() if o != company and n > 0]
        # Only a clear shortfall jumps the broker queue: boosting a company merely at its
        # share would let it run while another's admitted jobs sit in the buffer.
        chosen.append(replace(job, under_share=True) if others and mine < min(others) else job)
        heads[company] += 1
        counts[company] = counts.get(company, 0) + 1
    return chosen


class Admission:
    """One scheduler's admission passes. Worker capacity and company settings are cached
    for a moment (`_CACHE_SECONDS`): a nudge then costs the lock, one scan of the pending
    and in-flight jobs, the candidates and the mark, not five more reads. A queue with
    work but no known capacity is re-read at once (a worker that just registered)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._capacity: dict[str, int] = {}
        self._capacity_at = -1e9
        self._companies: dict[int, Company] = {}
        self._companies_at = -1e9

    def admit(self, session: Session, now: datetime, *, limit: int) -> list[Candidate]:
        """The jobs to publish now, across all queues (at most `limit`), in publish order.
        The caller holds `lock_admission` and marks them published in this transaction."""
        loads = {q: load for q, load in queue_loads(session, now).items() if load.waiting}
        if not loads:
            return []
        tick = time.monotonic()
        if tick - self._capacity_at > _CACHE_SECONDS or any(
                not self._capacity.get(q) for q in loads):
            self._capacity = live_capacity(session, self.settings, now)
            self._capacity_at = tick
        admitted: list[Candidate] = []
        for queue, load in sorted(loads.items()):
            free = min(bound_of(self._capacity.get(queue, 0), self.settings)
                       - sum(load.flying.values()), limit - len(admitted), load.waiting)
            if free <= 0:
                continue
            pending = candidates(session, self.settings, cluster=load.cluster, pool=load.pool,
                                 per_company=free, now=now)
            companies = {job.company_id for job in pending} | set(load.flying)
            rows = self._company_rows(session, tick)
            shares = {company: company_share(self.settings, rows.get(company),
                                             shared_cluster=queue == SHARED_QUEUE)
                      for company in companies}
            admitted += choose(free, pending, load.flying, shares)
        return admitted

    def _company_rows(self, session: Session, tick: float) -> dict[int, Company]:
        if tick - self._companies_at > _CACHE_SECONDS:
            self._companies = company_rows(session)
            self._companies_at = tick
        return self._companies
