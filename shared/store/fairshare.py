"""The store side of fair share and admission control (issue 12).

Workers register themselves in `workers` (one row per Celery node, refreshed every
`worker_registration_seconds`); a queue's capacity is the total concurrency of the rows
seen within `worker_ttl_seconds`. A job is *in flight* on its queue from the moment the
dispatcher publishes it (pending, `published_at` set) until it ends: that is what the
admission bound and a company's cap count. Per-company weight and cap live in `companies`.

The dispatcher (scheduler/admission.py), the API (`wait_reason`) and /metrics read these.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.queues import SHARED_QUEUE, queue_for
from shared.states import JobState
from shared.store.models import Company, Job, Worker
from shared.store.types import utcnow

RUNNING_STATES = (JobState.RUNNING.value, JobState.PENDING_CANCELLATION.value)

# Why a pending job waits (GET /jobs/{id} `wait_reason`, `dataplane jobs show`).
NO_WORKER = "no worker serves its pool"
COMPANY_CAP = "company cap reached"
CLUSTER_FULL = "cluster full"
BACKOFF = "retry backoff"
AT_BROKER = "queued for a worker"
ADMITTING = "being admitted"


# --- workers ----------------------------------------------------------------------


def register_worker(session: Session, *, name: str, queue: str, concurrency: int,
                    now: datetime | None = None) -> None:
    """Insert or refresh this worker's row (one statement, either backend)."""
    now = now or utcnow()
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(Worker).values(name=name, queue=queue, concurrency=concurrency,
                                         started_at=now, last_seen=now)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"queue": queue, "concurrency": concurrency, "last_seen": now}))


def unregister_worker(session: Session, name: str) -> None:
    session.execute(delete(Worker).where(Worker.name == name))


def prune_workers(session: Session, *, older_than: timedelta) -> None:
    """Forget workers killed without unregistering (they stopped counting long ago)."""
    session.execute(delete(Worker).where(Worker.last_seen < utcnow() - older_than))


def live_capacity(session: Session, settings: Settings,
                  now: datetime | None = None) -> dict[str, int]:
    """queue -> total concurrency of the workers seen recently."""
    since = (now or utcnow()) - timedelta(seconds=settings.worker_ttl_seconds)
    rows = session.execute(
        select(Worker.queue, func.sum(Worker.concurrency))
        .where(Worker.last_seen >= since).group_by(Worker.queue))
    return {queue: int(total or 0) for queue, total in rows}


def bound_of(capacity: int, settings: Settings) -> int:
    """How many jobs a queue may have in flight: its workers' slots plus a small buffer,
    and nothing at all when no live worker serves it."""
    return capacity + settings.admission_buffer if capacity > 0 else 0


# --- companies -----------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    weight: int
    max_running: int | None  # None: no cap


def company_share(settings: Settings, row: Company | None, *, shared_cluster: bool) -> Share:
    weight = row.weight if row is not None and row.weight > 0 else 1
    if row is not None and row.max_running is not None:
        cap: int | None = row.max_running if row.max_running > 0 else None
    elif shared_cluster and settings.shared_max_running_per_company > 0:
        cap = settings.shared_max_running_per_company
    else:
        cap = None
    return Share(weight, cap)


def company_rows(session: Session, ids: set[int] | None = None) -> dict[int, Company]:
    stmt = select(Company).order_by(Company.company_id)
    if ids is not None:
        if not ids:
            return {}
        stmt = stmt.where(Company.company_id.in_(ids))
    return {row.company_id: row for row in session.scalars(stmt)}


def set_company(session: Session, company_id: int, *, weight: int | None = None,
                max_running: int | None = None, clear_max_running: bool = False) -> Company:
    row = session.get(Company, company_id)
    if row is None:
        row = Company(company_id=company_id, weight=1, max_running=None)
        session.add(row)
    if weight is not None:
        row.weight = weight
    if max_running is not None:
        row.max_running = max_running
    elif clear_max_running:
        row.max_running = None
    row.updated_at = utcnow()
    session.flush()
    return row


# --- jobs in flight and waiting ------------------------------------------------------


def _in_flight_clause() -> ColumnElement[bool]:
    return or_(Job.state.in_(RUNNING_STATES),
               and_(Job.state == JobState.PENDING.value, Job.published_at.is_not(None)))


def in_flight(session: Session) -> dict[str, dict[int, int]]:
    """queue -> company -> jobs published or running there."""
    rows = session.execute(
        select(Job.execution_cluster, Job.compute_pool_id, Job.company_id, func.count())
        .where(_in_flight_clause())
        .group_by(Job.execution_cluster, Job.compute_pool_id, Job.company_id))
    out: dict[str, dict[int, int]] = defaultdict(dict)
    for cluster, pool, company, count in rows:
        by_company = out[queue_for(cluster, pool)]
        by_company[company] = by_company.get(company, 0) + int(count)
    return out


@dataclass
class QueueLoad:
    cluster: str
    pool: uuid.UUID | None
    waiting: int = 0  # pending, not yet published, due
    flying: dict[int, int] = field(default_factory=dict)  # company -> in flight


def queue_loads(session: Session, now: datetime) -> dict[str, QueueLoad]:
    """queue -> what waits for admission there and what is in flight, in one scan."""
    waiting = and_(Job.state == JobState.PENDING.value, Job.published_at.is_(None),
                   or_(Job.run_after.is_(None), Job.run_after <= now))
    rows = session.execute(
        select(Job.execution_cluster, Job.compute_pool_id, Job.company_id,
               func.count().filter(waiting), func.count().filter(_in_flight_clause()))
        .where(Job.state.in_((JobState.PENDING.value, *RUNNING_STATES)))
        .group_by(Job.execution_cluster, Job.compute_pool_id, Job.company_id))
    loads: dict[str, QueueLoad] = {}
    for cluster, pool, company, n_waiting, n_flying in rows:
        queue = queue_for(cluster, pool)
        load = loads.get(queue)
        if load is None:
            load = loads[queue] = QueueLoad(cluster, pool)
        if n_waiting:
            load.waiting += int(n_waiting)
            # A pool's jobs may name either cluster; admission selects by the pool alone.
            load.cluster, load.pool = cluster, pool
        if n_flying:
            load.flying[company] = load.flying.get(company, 0) + int(n_flying)
    return loads


def waiting_queues(session: Session, now: datetime) -> dict[str, tuple[str, uuid.UUID | None]]:
    """queue -> (cluster, pool) of the queues with pending jobs not yet admitted."""
    rows = session.execute(
        select(Job.execution_cluster, Job.compute_pool_id)
        .where(Job.state == JobState.PENDING.value, Job.published_at.is_(None),
               or_(Job.run_after.is_(None), Job.run_after <= now))
        .group_by(Job.execution_cluster, Job.compute_pool_id))
    return {queue_for(cluster, pool): (cluster, pool) for cluster, pool in rows}


@dataclass(frozen=True)
class CompanyLoad:
    cluster: str
    company_id: int
    queued: int
    running: int


def load_by_company(session: Session) -> list[CompanyLoad]:
    """Pending and running jobs per (cluster, company), for /metrics."""
    rows = session.execute(
        select(Job.execution_cluster, Job.company_id, Job.state, func.count())
        .where(Job.state.in_((JobState.PENDING.value, *RUNNING_STATES)))
        .group_by(Job.execution_cluster, Job.company_id, Job.state))
    acc: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for cluster, company, state, count in rows:
        acc[(cluster, company)][0 if state == JobState.PENDING.value else 1] += int(count)
    return [CompanyLoad(cluster, company, queued, running)
            for (cluster, company), (queued, running) in sorted(acc.items())]


def wait_reason(session: Session, settings: Settings, job: Job) -> str | None:
    """Why a pending job has not started yet; None for any other state."""
    if job.state != JobState.PENDING.value:
        return None
    now = utcnow()
    if job.run_after is not None and job.run_after > now:
        return BACKOFF
    if job.published_at is not None:
        return AT_BROKER
    if not settings.fair_share:
        return ADMITTING
    queue = queue_for(job.execution_cluster, job.compute_pool_id)
    bound = bound_of(live_capacity(session, settings, now).get(queue, 0), settings)
    if bound == 0:
        return NO_WORKER
    flights = in_flight(session).get(queue, {})
    share = company_share(settings, session.get(Company, job.company_id),
                          shared_cluster=queue == SHARED_QUEUE)
    if share.max_running is not None and flights.get(job.company_id, 0) >= share.max_running:
        return COMPANY_CAP
    if sum(flights.values()) >= bound:
        return CLUSTER_FULL
    return ADMITTING
