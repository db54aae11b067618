"""A materialized view's refresh schedule and refresh, after the Narrative API:

    GET    /datasets/{id}/refresh-schedule
    PUT    /datasets/{id}/refresh-schedule       create or update (POST: the same)
    DELETE /datasets/{id}/refresh-schedule       archive: it stops running, GET still shows it
    POST   /datasets/{id}/refresh-materialized-view   run the view now; returns the job

Plus `schedule_lines`, the schedules' part of `GET /metrics`. The logic is in
shared/store/schedules.py; these handlers only open a unit of work around it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from sqlalchemy.orm import Session

from api import errors
from api.datasets import owned_dataset
from api.deps import CurrentPrincipal, SettingsDep, StoreDep
from api.models.requests import ExecutionClusterObject, ShortText
from api.models.responses import Job
from shared.config import Settings
from shared.errors import NotFound
from shared.nudge import nudge_dispatcher
from shared.states import ExecutionCluster
from shared.store.schedules import (
    ScheduleChange,
    ScheduleStatus,
    archive_schedule,
    get_schedule,
    overdue_schedule_counts,
    put_schedule,
    refresh_now,
    schedule_to_wire,
)
from shared.store.types import utcnow
from shared.wire import job_to_wire

router = APIRouter(prefix="/datasets", tags=["refresh schedules"], responses={
    **errors.BAD_REQUEST, **errors.UNAUTHORIZED, **errors.NOT_FOUND, **errors.DEFAULT})

DatasetId = Annotated[int, Path(ge=0, le=2**63 - 1)]
Cluster = ExecutionCluster | ExecutionClusterObject


def _cluster(value: Cluster | None) -> str | None:
    if isinstance(value, ExecutionClusterObject):
        return value.type.value
    return value.value if value is not None else None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScheduleBody(_Body):
    """Fields left out keep their current value (defaults when the schedule is new)."""

    cron: ShortText | None = Field(default=None, description="'@hourly', '@daily', '@weekly', "
                                   "'@monthly', '@once' or a 5-field cron expression")
    cron_zone_id: ShortText | None = Field(default=None, description="IANA zone; default UTC")
    execution_cluster: Cluster | None = Field(
        default=None, description="'shared' or 'dedicated', also as {\"type\": ...}")
    compute_pool_id: uuid.UUID | None = None
    stats_enabled: StrictBool | None = None
    status: ScheduleStatus | None = Field(
        default=None, description="active runs on the cron; pending and archived do not")


class RefreshBody(_Body):
    execution_cluster: Cluster | None = None
    type: Literal["full", "incremental"] | None = Field(default=None, description=(
        "incremental (default): DELTA inputs read only what was added since the view's last "
        "successful run; full: ignore that progress and rebuild the view from all of its inputs"))


def _schedule_or_404(session: Session, dataset_id: int) -> dict[str, object]:
    wire = schedule_to_wire(get_schedule(session, dataset_id))
    if wire is None:
        raise NotFound(f"Dataset {dataset_id} has no refresh schedule")
    return wire


@router.get("/{dataset_id}/refresh-schedule", summary="A materialized view's refresh schedule")
def get_refresh_schedule(dataset_id: DatasetId, principal: CurrentPrincipal,
                         store: StoreDep) -> JSONResponse:
    with store.unit_of_work() as session:
        owned_dataset(session, dataset_id, company_id=principal.company_id)
        return JSONResponse(_schedule_or_404(session, dataset_id))


@router.put("/{dataset_id}/refresh-schedule", status_code=200,
            responses={201: {"description": "The schedule was created"}},
            summary="Create or update a materialized view's refresh schedule")
@router.post("/{dataset_id}/refresh-schedule", status_code=200, include_in_schema=False)
def put_refresh_schedule(dataset_id: DatasetId, body: ScheduleBody,
                         principal: CurrentPrincipal, store: StoreDep) -> JSONResponse:
    change = ScheduleChange(
        cron=body.cron, cron_zone_id=body.cron_zone_id,
        execution_cluster=_cluster(body.execution_cluster),
        compute_pool_id=body.compute_pool_id, stats_enabled=body.stats_enabled,
        status=body.status)
    with store.unit_of_work() as session:
        dataset = owned_dataset(session, dataset_id, company_id=principal.company_id)
        created = get_schedule(session, dataset_id) is None
        schedule = put_schedule(session, dataset=dataset, user_id=principal.user_id,
                                change=change)
        wire = schedule_to_wire(schedule)
    return JSONResponse(wire, status_code=201 if created else 200)


@router.delete("/{dataset_id}/refresh-schedule",
               summary="Archive a refresh schedule (it stops running)")
def delete_refresh_schedule(dataset_id: DatasetId, principal: CurrentPrincipal,
                            store: StoreDep) -> JSONResponse:
    with store.unit_of_work() as session:
        owned_dataset(session, dataset_id, company_id=principal.company_id)
        archive_schedule(session, dataset_id=dataset_id)
        return JSONResponse(_schedule_or_404(session, dataset_id))


@router.post("/{dataset_id}/refresh-materialized-view", status_code=201, response_model=Job,
             responses={200: {"model": Job, "description": "A job already writing this "
                              "dataset (nothing new was created)"}},
             summary="Run a materialized view now")
def refresh_materialized_view(dataset_id: DatasetId, principal: CurrentPrincipal,
                              store: StoreDep, settings: SettingsDep,
                              body: RefreshBody | None = None) -> JSONResponse:
    cluster = _cluster(body.execution_cluster) if body else None
    with store.unit_of_work() as session:
        dataset = owned_dataset(session, dataset_id, company_id=principal.company_id)
        job, created = refresh_now(session, dataset=dataset, user_id=principal.user_id,
                                   execution_cluster=cluster, refresh_type=body.type if body else None)
        wire = job_to_wire(job)
    if created:
        nudge_dispatcher(settings)  # after the commit, so the dispatcher finds the row
    return JSONResponse(wire, status_code=201 if created else 200)


def schedule_lines(session: Session, settings: Settings) -> list[str]:
    """The refresh schedules' lines of `GET /metrics` (Prometheus text format)."""
    counts = overdue_schedule_counts(session, utcnow(),
                                     grace_seconds=settings.schedule_overdue_seconds)
    lines = ["# HELP dataplane_refresh_schedules Refresh schedules by status.",
             "# TYPE dataplane_refresh_schedules gauge"]
    lines += [f'dataplane_refresh_schedules{{status="{s.value}"}} {int(counts[s.value])}'
              for s in ScheduleStatus]
    lines += [
        "# HELP dataplane_refresh_schedules_overdue Active schedules more than "
        f"{settings.schedule_overdue_seconds:g}s past their due time (the scheduler is not "
        "keeping up).",
        "# TYPE dataplane_refresh_schedules_overdue gauge",
        f"dataplane_refresh_schedules_overdue {int(counts['overdue'])}",
        "# HELP dataplane_refresh_schedule_max_overdue_seconds How late the most overdue "
        "active schedule is (0 when none is overdue).",
        "# TYPE dataplane_refresh_schedule_max_overdue_seconds gauge",
        f"dataplane_refresh_schedule_max_overdue_seconds {counts['max_overdue_seconds']:.3f}",
    ]
    return lines
