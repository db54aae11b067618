"""Builders for the schedule tests: view datasets, their jobs, and a look at the jobs
the schedules made."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from shared.store import Store
from shared.store.datasets import create_dataset, get_dataset
from shared.store.jobs import NewJob, create_job
from shared.store.models import Job, RefreshSchedule
from shared.store.schedules import REFRESH_TAG, ScheduleChange, put_schedule

COMPANY = 1
USER = 7


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def view_nql(name: str, schedule: str | None = None) -> str:
    option = f" REFRESH_SCHEDULE='{schedule}'" if schedule else ""
    return f'CREATE MATERIALIZED VIEW "{name}"{option} AS SELECT a FROM company_data."1"'


def make_view(store: Store, dataset_id: int, *, company_id: int = COMPANY,
              schedule: str | None = None) -> None:
    with store.unit_of_work() as session:
        create_dataset(session, company_id=company_id, name=f"view_{dataset_id}",
                       schema=[["a", "BIGINT"]], dataset_id=dataset_id,
                       view_nql=view_nql(f"view_{dataset_id}", schedule))


def scheduled_view(store: Store, dataset_id: int, cron: str, *, now: datetime,
                   zone: str | None = None, company_id: int = COMPANY) -> None:
    """A view dataset with an active schedule, as PUT /refresh-schedule makes it at `now`."""
    make_view(store, dataset_id, company_id=company_id)
    with store.unit_of_work() as session:
        put_schedule(session, dataset=get_dataset(session, dataset_id), user_id=USER,
                     change=ScheduleChange(cron=cron, cron_zone_id=zone), now=now)


def view_job(store: Store, dataset_id: int, *, schedule: str | None = None,
             **overrides: Any) -> Job:
    fields: dict[str, Any] = {
        "company_id": COMPANY, "user_id": USER, "type": "materialize-view",
        "nql": view_nql(f"view_{dataset_id}", schedule), "dataset_id": dataset_id}
    fields.update(overrides)
    with store.unit_of_work() as session:
        job, _ = create_job(session, NewJob(**fields))
        return job


def refresh_jobs(store: Store, dataset_id: int | None = None) -> list[Job]:
    with store.unit_of_work() as session:
        jobs = session.scalars(select(Job).order_by(Job.created_at)).all()
        return [j for j in jobs if REFRESH_TAG in (j.tags or [])
                and (dataset_id is None or j.dataset_id == dataset_id)]


def schedule_of(store: Store, dataset_id: int) -> RefreshSchedule | None:
    with store.unit_of_work() as session:
        return session.get(RefreshSchedule, dataset_id)
