"""`POST /nql/run`, `POST /nql/validate`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api import errors
from api.deps import CurrentPrincipal, SettingsDep, StoreDep
from api.models.requests import RunRequest, ValidateRequest
from api.models.responses import Job, Validation
from api.submission import submit, validate
from shared.nudge import nudge_dispatcher
from shared.wire import job_to_wire

router = APIRouter(prefix="/nql", tags=["nql"], responses={
    **errors.BAD_REQUEST, **errors.UNAUTHORIZED, **errors.TOO_LARGE, **errors.DEFAULT})


@router.post("/run", status_code=201, response_model=Job,
             responses={200: {"model": Job, "description": "The existing job of this "
                              "idempotency_key (nothing new was created)"}},
             summary="Submit a CREATE MATERIALIZED VIEW or EXPLAIN statement as a job")
def run(body: RunRequest, principal: CurrentPrincipal, store: StoreDep,
        settings: SettingsDep) -> JSONResponse:
    with store.unit_of_work() as session:
        job, created = submit(session, principal, body)
        wire = job_to_wire(job)
    if created:
        # After the commit, so the dispatcher finds the row; it never blocks or raises.
        nudge_dispatcher(settings)
    return JSONResponse(wire, status_code=201 if created else 200)


@router.post("/validate", response_model=Validation,
             summary="Check a statement: its kind, output columns and view options")
def validate_statement(body: ValidateRequest, principal: CurrentPrincipal,
                       store: StoreDep) -> JSONResponse:
    with store.unit_of_work() as session:
        return JSONResponse(validate(session, principal, body.nql))
