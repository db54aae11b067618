"""`GET /jobs`, `GET /jobs/{job_id}`, request-cancellation and cancel."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api import errors
from api.deps import CurrentPrincipal, SettingsDep, StoreDep
from api.models.requests import INT64_MAX, ShortText
from api.models.responses import Job, JobPage
from shared.nudge import nudge_dispatcher
from shared.states import JobState, JobType
from shared.store.fairshare import wait_reason
from shared.store.jobs import cancel, get_job, request_cancellation
from shared.store.listing import MAX_PER_PAGE, JobFilter, JobOrder, list_jobs
from shared.store.tokens import Principal
from shared.wire import job_to_wire

router = APIRouter(prefix="/jobs", tags=["jobs"], responses={
    **errors.BAD_REQUEST, **errors.UNAUTHORIZED, **errors.DEFAULT})


def actor(principal: Principal) -> str:
    return f"api:company={principal.company_id}:user={principal.user_id}"


@router.get("", response_model=JobPage, summary="List jobs, newest first by default")
def get_jobs(
    principal: CurrentPrincipal,
    store: StoreDep,
    data_plane_id: uuid.UUID | None = None,
    dataset_id: Annotated[int | None, Query(ge=0, le=INT64_MAX,
                                            description="Jobs whose input has this dataset_id")
                          ] = None,
    state: Annotated[list[JobState], Query(description="Repeat to match any")] = [],  # noqa: B006
    type_: Annotated[list[JobType], Query(alias="type", description="Repeat to match any")
                     ] = [],  # noqa: B006
    tag: Annotated[list[ShortText], Query(description="Repeat: a job with any of them matches")
                   ] = [],  # noqa: B006
    order_by: JobOrder = JobOrder.CREATED_AT_DESC,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX, description="Records to skip")] = 0,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = MAX_PER_PAGE,
    idempotency_key: Annotated[ShortText | None, Query(
        description="Treasure Data's domain-key lookup")] = None,
) -> JSONResponse:
    filters = JobFilter(company_id=principal.company_id, data_plane_id=data_plane_id,
                        dataset_id=dataset_id, states=state, types=type_, tags=tag,
                        idempotency_key=idempotency_key)
    with store.unit_of_work() as session:
        page = list_jobs(session, filters, order_by=order_by, offset=offset, per_page=per_page)
        body: dict[str, Any] = {"current_page": page.current_page,
                                "total_records": page.total_records,
                                "total_pages": page.total_pages}
        # Absent, not null, when there is none: as the seed's example.
        if page.prev_page is not None:
            body["prev_page"] = page.prev_page
        if page.next_page is not None:
            body["next_page"] = page.next_page
        body["records"] = [job_to_wire(job) for job in page.records]
    return JSONResponse(body)


@router.get("/{job_id}", response_model=Job, responses=errors.NOT_FOUND, summary="Get a job")
def get_one(job_id: uuid.UUID, principal: CurrentPrincipal, store: StoreDep,
            settings: SettingsDep) -> JSONResponse:
    with store.unit_of_work() as session:
        job = get_job(session, job_id, company_id=principal.company_id)
        body = job_to_wire(job)
        if job.state == JobState.PENDING:
            body["wait_reason"] = wait_reason(session, settings, job)
        return JSONResponse(body)


@router.post("/{job_id}/request-cancellation", response_model=Job, responses=errors.NOT_FOUND,
             summary="pending|running -> pending_cancellation; a no-op otherwise")
def post_request_cancellation(job_id: uuid.UUID, principal: CurrentPrincipal, store: StoreDep,
                              settings: SettingsDep) -> JSONResponse:
    with store.unit_of_work() as session:
        get_job(session, job_id, company_id=principal.company_id)
        changed = request_cancellation(session, job_id, actor=actor(principal))
        wire = job_to_wire(get_job(session, job_id))
    if changed:
        # A job never started is finalized by the dispatcher: tell it now.
        nudge_dispatcher(settings)
    return JSONResponse(wire)


@router.post("/{job_id}/cancel", response_model=Job, responses=errors.NOT_FOUND,
             summary="Finalize to cancelled (requesting cancellation first if needed); "
                     "a no-op on terminal jobs")
def post_cancel(job_id: uuid.UUID, principal: CurrentPrincipal, store: StoreDep) -> JSONResponse:
    with store.unit_of_work() as session:
        get_job(session, job_id, company_id=principal.company_id)
        cancel(session, job_id, actor=actor(principal))
        return JSONResponse(job_to_wire(get_job(session, job_id)))
