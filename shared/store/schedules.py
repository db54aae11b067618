"""Refresh schedules on the store: one row per materialized-view dataset (its
REFRESH_SCHEDULE), and the refresh jobs they make.

- `record_view_schedule`: the worker stores a view's schedule when its job completes.
- `put_schedule` / `archive_schedule` / `refresh_now`: the HTTP endpoints.
- `due_schedule` + `fire_schedule`: the scheduler's due check and one refresh, in the
  caller's transaction. A schedule's `next_run_at` is its next due slot (UTC); firing
  advances it to the first slot after *now* (so downtime costs one catch-up run, not
  one per missed slot) with a compare-and-set, and the refresh job's idempotency key is
  `refresh:<dataset>:<slot>`: two schedulers racing converge on one job even where
  `FOR UPDATE SKIP LOCKED` does not exist (SQLite).

`@once` (NQL's default) is stored too, as status `pending` with no next run: GET
/datasets/{id} then shows it, and a later PUT can turn it into a recurring schedule.
Functions take a Session and never commit: the caller's unit of work does.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.errors import InvalidRequest
from shared.schedule_expr import InvalidSchedule, ScheduleExpr, next_run_after, parse_schedule
from shared.states import JobState, JobType
from shared.store.db import execute_dml
from shared.store.jobs import NewJob, create_job
from shared.store.models import Dataset, Job, JobTag, RefreshSchedule
from shared.store.progress import FULL_REFRESH_TAG
from shared.store.types import utcnow
from shared.wire import iso

log = logging.getLogger(__name__)

REFRESH_TAG = "refresh"
SCHEDULE_SOURCE = "refresh_schedule"  # request_source.type of a job the schedule made
_IN_FLIGHT = (JobState.PENDING.value, JobState.RUNNING.value, JobState.PENDING_CANCELLATION.value)


class ScheduleStatus(StrEnum):
    ACTIVE = "active"  # runs on its cron
    PENDING = "pending"  # kept, not run (also every @once schedule)
    ARCHIVED = "archived"  # deleted by the user, kept for the record


def dataset_tag(dataset_id: int) -> str:
    return f"dataset_id={dataset_id}"


def refresh_key(dataset_id: int, slot: datetime) -> str:
    return f"refresh:{dataset_id}:{iso(slot)}"


def get_schedule(session: Session, dataset_id: int, *, lock: bool = False) -> RefreshSchedule | None:
    stmt = select(RefreshSchedule).where(RefreshSchedule.dataset_id == dataset_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def _next_run(expr: ScheduleExpr, status: str, now: datetime) -> datetime | None:
    return next_run_after(expr, now) if status == ScheduleStatus.ACTIVE else None


def _upsert(session: Session, dataset_id: int, values: dict[str, Any], now: datetime) -> RefreshSchedule:
    """Insert the row if missing (racing inserts: one wins, none fails), lock it, update it."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(RefreshSchedule)
        .values(dataset_id=dataset_id, created_at=now, updated_at=now, **values)
        .on_conflict_do_nothing(index_elements=["dataset_id"])
    )
    schedule = get_schedule(session, dataset_id, lock=True)
    assert schedule is not None
    for key, value in values.items():
        setattr(schedule, key, value)
    schedule.updated_at = now
    session.flush()
    return schedule


def _keeps_slot(schedule: RefreshSchedule | None, expr: ScheduleExpr, status: str) -> bool:
    """An unchanged active schedule keeps its next slot: re-saving it must not skip a run."""
    return (schedule is not None and schedule.status == ScheduleStatus.ACTIVE == status
            and schedule.cron == expr.expr and schedule.cron_zone_id == expr.zone_id
            and schedule.next_run_at is not None)


def record_view_schedule(session: Session, *, dataset_id: int, job: Job,
                         refresh_schedule: str | None,
                         now: datetime | None = None) -> RefreshSchedule | None:
    """Store a completed view job's REFRESH_SCHEDULE on its dataset (in the completion
    transaction). A refresh job (tags `refresh`, `dataset_id=<id>`) leaves the schedule as it is: it runs the
    schedule, it does not redefine it (the user may have changed it with PUT meanwhile).
    A new submission of the view does redefine it, keeping a zone set with PUT."""
    if {REFRESH_TAG, dataset_tag(dataset_id)} <= set(job.tags or []):
        return get_schedule(session, dataset_id)
    now = now or utcnow()
    existing = get_schedule(session, dataset_id, lock=True)
    try:
        expr = parse_schedule(refresh_schedule, existing.cron_zone_id if existing else None)
    except InvalidSchedule as e:
        # Submission rejects these with a 400; failing a finished job over it would be worse.
        log.warning("dataset %s: REFRESH_SCHEDULE not stored: %s", dataset_id, e.message)
        return existing
    status = ScheduleStatus.ACTIVE if expr.recurring else ScheduleStatus.PENDING
    keep = _keeps_slot(existing, expr, status)
    return _upsert(session, dataset_id, {
        "company_id": job.company_id, "user_id": job.user_id, "nql": job.nql,
        "cron": expr.expr, "cron_zone_id": expr.zone_id,
        "execution_cluster": job.execution_cluster, "compute_pool_id": job.compute_pool_id,
        "stats_enabled": job.stats_enabled, "status": status.value,
        "next_run_at": existing.next_run_at if keep and existing else _next_run(expr, status, now),
    }, now)


@dataclass(frozen=True, kw_only=True)
class ScheduleChange:
    """A PUT body; None fields keep the current value (or the default on creation)."""

    cron: str | None = None
    cron_zone_id: str | None = None
    execution_cluster: str | None = None
    compute_pool_id: uuid.UUID | None = None
    stats_enabled: bool | None = None
    status: ScheduleStatus | None = None


def put_schedule(session: Session, *, dataset: Dataset, user_id: int, change: ScheduleChange,
                 now: datetime | None = None) -> RefreshSchedule:
    """Create or update a dataset's schedule. Raises InvalidRequest (400) for a bad cron or
    zone, a dataset with no view to refresh, or an active `@once`."""
    now = now or utcnow()
    existing = get_schedule(session, dataset.id, lock=True)
    nql = existing.nql if existing else dataset.view_nql
    if not nql:
        raise InvalidRequest(f"Dataset {dataset.id} is not a materialized view: "
                             "it has no NQL to refresh")
    cron = change.cron if change.cron is not None else (existing.cron if existing else None)
    if cron is None:
        raise InvalidRequest("cron is required to create a refresh schedule")
    zone = change.cron_zone_id or (existing.cron_zone_id if existing else None)
    expr = parse_schedule(cron, zone)
    status = change.status or (ScheduleStatus(existing.status) if existing else ScheduleStatus.ACTIVE)
    if status == ScheduleStatus.ACTIVE and not expr.recurring:
        raise InvalidRequest("An '@once' schedule never runs on its own: give a recurring "
                             "cron, or status 'pending'")
    cluster = change.execution_cluster or (existing.execution_cluster if existing else "shared")
    pool = change.compute_pool_id
    if pool is None and existing is not None and cluster == existing.execution_cluster:
        pool = existing.compute_pool_id  # a pool is kept only while its cluster is
    if pool is not None and cluster != "dedicated":
        raise InvalidRequest("compute_pool_id goes with execution_cluster 'dedicated'")
    stats = change.stats_enabled if change.stats_enabled is not None else (
        existing.stats_enabled if existing else True)
    return _upsert(session, dataset.id, {
        # Refresh jobs run as whoever last defined the schedule.
        "company_id": dataset.company_id, "user_id": user_id,
        "nql": nql, "cron": expr.expr, "cron_zone_id": expr.zone_id,
        "execution_cluster": cluster, "compute_pool_id": pool, "stats_enabled": stats,
        "status": status.value,
        "next_run_at": existing.next_run_at if _keeps_slot(existing, expr, status) and existing
        else _next_run(expr, status, now),
    }, now)


def archive_schedule(session: Session, *, dataset_id: int,
                     now: datetime | None = None) -> RefreshSchedule | None:
    """DELETE: archived schedules never run (kept so GET shows what was there)."""
    schedule = get_schedule(session, dataset_id, lock=True)
    if schedule is not None:
        schedule.status = ScheduleStatus.ARCHIVED.value
        schedule.next_run_at = None
        schedule.updated_at = now or utcnow()
        session.flush()
    return schedule


def in_flight_refresh(session: Session, *, company_id: int, dataset_id: int) -> Job | None:
    """A materialize-view job writing this dataset that has not ended, if any."""
    tagged = select(JobTag.job_id).where(JobTag.company_id == company_id,
                                         JobTag.tag == dataset_tag(dataset_id))
    return session.scalars(
        select(Job).where(
            Job.company_id == company_id, Job.type == JobType.MATERIALIZE_VIEW.value,
            Job.state.in_(_IN_FLIGHT),
            or_(Job.dataset_id == dataset_id, Job.id.in_(tagged)),
        ).order_by(Job.created_at).limit(1)
    ).first()


def _refresh_job(*, company_id: int, dataset_id: int, nql: str, user_id: int, source_type: str,
                 idempotency_key: str | None, execution_cluster: str,
                 compute_pool_id: uuid.UUID | None, stats_enabled: bool,
                 full: bool = False) -> NewJob:
    """The materialize-view job that refreshes a view: found by its tags `refresh` and
    `dataset_id=<id>` (and its dataset_id)."""
    return NewJob(
        company_id=company_id, user_id=user_id, type=JobType.MATERIALIZE_VIEW.value, nql=nql,
        request_source_type=source_type, idempotency_key=idempotency_key, dataset_id=dataset_id,
        stats_enabled=stats_enabled,
        tags=(REFRESH_TAG, dataset_tag(dataset_id), *((FULL_REFRESH_TAG,) if full else ())),
        execution_cluster=execution_cluster, compute_pool_id=compute_pool_id,
    )


def refresh_now(session: Session, *, dataset: Dataset, user_id: int,
                execution_cluster: str | None = None, refresh_type: str | None = None) -> tuple[Job, bool]:
    """POST refresh-materialized-view: a refresh job now, with the schedule's settings when
    there is one. Returns (job, False) for a job already writing the dataset instead: a
    second one would only queue behind it. `refresh_type` 'full' makes an incremental view
    ignore its recorded progress and rebuild from all of its inputs (tag `refresh_type=full`);
    'incremental' (the default, and what schedules run) reads only what is new."""
    running = in_flight_refresh(session, company_id=dataset.company_id, dataset_id=dataset.id)
    if running is not None:
        return running, False
    schedule = get_schedule(session, dataset.id)
    nql = schedule.nql if schedule else dataset.view_nql
    if not nql:
        raise InvalidRequest(f"Dataset {dataset.id} is not a materialized view: "
                             "it has no NQL to refresh")
    own_cluster = schedule.execution_cluster if schedule else "shared"
    cluster = execution_cluster or own_cluster
    return create_job(session, _refresh_job(
        company_id=dataset.company_id, dataset_id=dataset.id, nql=nql, user_id=user_id,
        source_type="api_user", idempotency_key=None, execution_cluster=cluster,
        compute_pool_id=schedule.compute_pool_id if schedule and cluster == own_cluster else None,
        stats_enabled=schedule.stats_enabled if schedule else True,
        full=refresh_type == "full",
    ), actor="api")


def due_schedule(session: Session, *, now: datetime,
                 exclude: frozenset[int] = frozenset()) -> RefreshSchedule | None:
    """The most overdue active schedule, locked (SKIP LOCKED: another scheduler has it)."""
    stmt = (
        select(RefreshSchedule)
        .where(RefreshSchedule.status == ScheduleStatus.ACTIVE.value,
               RefreshSchedule.next_run_at <= now)
        .order_by(RefreshSchedule.next_run_at).limit(1)
        .with_for_update(skip_locked=True)
    )
    if exclude:
        stmt = stmt.where(RefreshSchedule.dataset_id.not_in(exclude))
    return session.scalars(stmt).first()


class FireOutcome(StrEnum):
    CREATED = "created"
    EXISTED = "existed"  # another scheduler made this slot's job first
    SKIPPED = "skipped"  # the previous refresh is still pending or running
    LOST = "lost"  # the schedule changed under us (another scheduler, a PUT)


@dataclass(frozen=True)
class Fired:
    dataset_id: int
    slot: datetime
    outcome: FireOutcome
    job_id: uuid.UUID | None
    next_run_at: datetime | None


def fire_schedule(session: Session, schedule: RefreshSchedule, *, now: datetime) -> Fired:
    """One due schedule: advance it past `now` and make its refresh job, or skip it."""
    slot = schedule.next_run_at
    assert slot is not None
    following = next_run_after(parse_schedule(schedule.cron, schedule.cron_zone_id), now)
    busy = in_flight_refresh(session, company_id=schedule.company_id,
                             dataset_id=schedule.dataset_id)
    # Advanced even when skipped: a skipped slot is not owed later.
    values: dict[str, Any] = {"next_run_at": following, "updated_at": now}
    if busy is None:
        values["last_scheduled_for"] = slot
    advanced = execute_dml(
        session,
        update(RefreshSchedule)
        .where(RefreshSchedule.dataset_id == schedule.dataset_id,
               RefreshSchedule.status == ScheduleStatus.ACTIVE.value,
               RefreshSchedule.next_run_at == slot)
        .values(**values),
    )
    if advanced != 1:
        return Fired(schedule.dataset_id, slot, FireOutcome.LOST, None, following)
    if busy is not None:
        return Fired(schedule.dataset_id, slot, FireOutcome.SKIPPED, busy.id, following)
    job, created = create_job(session, _refresh_job(
        company_id=schedule.company_id, dataset_id=schedule.dataset_id, nql=schedule.nql,
        user_id=schedule.user_id, source_type=SCHEDULE_SOURCE,
        idempotency_key=refresh_key(schedule.dataset_id, slot),
        execution_cluster=schedule.execution_cluster, compute_pool_id=schedule.compute_pool_id,
        stats_enabled=schedule.stats_enabled,
    ), actor="scheduler")
    return Fired(schedule.dataset_id, slot, FireOutcome.CREATED if created else FireOutcome.EXISTED,
                 job.id, following)


def overdue_schedule_counts(session: Session, now: datetime, *,
                            grace_seconds: float = 120.0) -> dict[str, float]:
    """For /metrics: schedules by status, and active ones more than `grace_seconds` late
    (the scheduler is down or failing) with the worst lateness."""
    counts: dict[str, float] = {status.value: 0 for status in ScheduleStatus}
    for status, n in session.execute(
        select(RefreshSchedule.status, func.count()).group_by(RefreshSchedule.status)
    ):
        counts[status] = n
    late_before = now - timedelta(seconds=grace_seconds)
    overdue, oldest = session.execute(
        select(func.count(), func.min(RefreshSchedule.next_run_at)).where(
            RefreshSchedule.status == ScheduleStatus.ACTIVE.value,
            RefreshSchedule.next_run_at < late_before)
    ).one()
    counts["overdue"] = overdue
    counts["max_overdue_seconds"] = (now - oldest).total_seconds() if oldest else 0.0
    return counts


def schedule_to_wire(schedule: RefreshSchedule | None) -> dict[str, Any] | None:
    """The schedule as `GET /datasets/{id}` and the schedule endpoints show it."""
    if schedule is None:
        return None
    return {
        "dataset_id": schedule.dataset_id,
        "cron": schedule.cron,
        "cron_zone_id": schedule.cron_zone_id,
        "execution_cluster": schedule.execution_cluster,
        "compute_pool_id": str(schedule.compute_pool_id) if schedule.compute_pool_id else None,
        "stats_enabled": schedule.stats_enabled,
        "status": schedule.status,
        "next_run_at": iso(schedule.next_run_at),
        "last_scheduled_for": iso(schedule.last_scheduled_for),
        "created_at": iso(schedule.created_at),
        "updated_at": iso(schedule.updated_at),
    }
