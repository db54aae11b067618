"""`POST /v3/export/run/{db}/{table}` and `POST /v3/job/result_export/{id}`: `export` jobs
(shared/exports.py, worker/export.py). Target credentials are encrypted before they are
stored and appear in no answer; a server without DATAPLANE_SECRET_KEY answers 400."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import errors
from api.deps import SettingsDep, StoreDep
from api.models.requests import MAX_RETRY_LIMIT
from api.td.auth import TdPrincipal
from api.td.forms import int_field, read_form
from api.td.query import NAMESPACE, DatabaseNotFound
from api.td.routes import _job_id, _priority
from shared.config import Settings
from shared.errors import DatasetNotFound, InvalidRequest, JobNotCompleted, NotFound
from shared.export_target import Credentials, Location, Target, parse_result_url
from shared.exports import check_time_range, create_export
from shared.nudge import nudge_dispatcher
from shared.states import JobState
from shared.store import Store
from shared.store.catalog import StoreCatalog
from shared.store.jobs import get_job
from shared.store.models import Dataset
from shared.store.td import td_job
from shared.store.tokens import Principal

router = APIRouter(prefix="/v3", tags=["treasure-data"], responses={
    **errors.BAD_REQUEST, **errors.UNAUTHORIZED, **errors.NOT_FOUND, **errors.DEFAULT})

INT32 = 2**31 - 1
INT64 = 2**63 - 1


def _options(form: dict[str, str]) -> dict[str, Any]:
    pool = form.get("pool_name") or None
    try:
        pool_id = uuid.UUID(pool) if pool else None
    except ValueError:
        raise InvalidRequest(f"pool_name must be a compute pool id (a UUID), got {pool!r}") from None
    key = form.get("domain_key") or None
    if key is not None and len(key) > 255:
        raise InvalidRequest("domain_key is longer than 255 characters")
    return {"idempotency_key": key, "priority": _priority(form), "compute_pool_id": pool_id,
            "retry_limit": int_field(form, "retry_limit", default=0, low=0, high=MAX_RETRY_LIMIT)}


def _answer(job_id: uuid.UUID, database: str) -> dict[str, str]:
    return {"job": str(job_id), "job_id": str(job_id), "database": database}


class TableNotFound(NotFound):
    """TD's 404 for a table that is not there (or is another company's)."""


def _table(session: Session, principal: Principal, table: str) -> Dataset:
    """By name or id, as NQL resolves them; another company's table is a missing one."""
    try:
        resolved = StoreCatalog(session, principal.company_id).resolve(table)
    except DatasetNotFound:
        raise TableNotFound(f"Table {table!r} not found in {NAMESPACE!r}") from None
    return session.get_one(Dataset, resolved.dataset_id)


def _export_table(store: Store, settings: Settings, principal: Principal, database: str,
                  table: str, form: dict[str, str]) -> tuple[dict[str, str], bool]:
    if database != NAMESPACE:
        raise DatabaseNotFound(f"Database {database!r} not found: the namespace is {NAMESPACE!r}")
    if form.get("storage_type", "s3") != "s3":
        raise InvalidRequest(f"Unsupported storage_type {form['storage_type']!r}: only s3")
    for field in ("bucket", "access_key_id", "secret_access_key"):
        if not form.get(field):
            raise InvalidRequest(f"{field} is required")
    endpoint = form.get("endpoint") or None
    if endpoint and not endpoint.startswith(("http://", "https://")):
        endpoint = "https://" + endpoint
    fmt = form.get("file_format") or "csv.gz"
    location = Location(bucket=form["bucket"], prefix=form.get("file_prefix", ""), format=fmt,
                        endpoint=endpoint, region=form.get("region") or "us-east-1")
    parse_result_url(f"s3://k:s@/{location.bucket}?format={fmt}")  # the same checks as a URL
    target = Target(location, Credentials(form["access_key_id"], form["secret_access_key"]))
    time_from = int_field(form, "from", default=-1, low=0, high=INT64) if form.get("from") else None
    time_to = int_field(form, "to", default=-1, low=0, high=INT64) if form.get("to") else None
    with store.unit_of_work() as session:
        dataset = _table(session, principal, table)
        check_time_range(dataset, time_from, time_to)
        job, created = create_export(
            session, settings, company_id=principal.company_id, user_id=principal.user_id,
            source={"kind": "dataset", "dataset_id": dataset.id, "from": time_from,
                    "to": time_to},
            target=target, database=database, **_options(form))
        return _answer(job.id, database), created


@router.post("/export/run/{database}/{table}", summary="Export a table's current snapshot to S3")
async def export_run(database: str, table: str, request: Request, principal: TdPrincipal,
                     store: StoreDep, settings: SettingsDep) -> JSONResponse:
    form = await read_form(request)
    answer, created = await run_in_threadpool(
        _export_table, store, settings, principal, database, table, form)
    if created:
        nudge_dispatcher(settings)
    return JSONResponse(answer)


def _result_export(store: Store, settings: Settings, principal: Principal, raw_id: str,
                   form: dict[str, str]) -> tuple[dict[str, str], bool]:
    if not form.get("result"):
        raise InvalidRequest("result (an s3://KEY:SECRET@host/bucket/prefix URL) is required")
    target = parse_result_url(form["result"])
    with store.unit_of_work() as session:
        source = get_job(session, _job_id(raw_id), company_id=principal.company_id)
        if source.state != JobState.COMPLETED:
            raise JobNotCompleted(source.state)
        td = td_job(session, source.id)
        job, created = create_export(
            session, settings, company_id=principal.company_id, user_id=principal.user_id,
            source={"kind": "job", "job_id": str(source.id)}, target=target,
            database=td.database if td is not None else NAMESPACE, **_options(form))
        return _answer(job.id, td.database if td is not None else NAMESPACE), created


@router.post("/job/result_export/{job_id}", summary="Export a finished job's result to S3")
async def result_export(job_id: str, request: Request, principal: TdPrincipal, store: StoreDep,
                        settings: SettingsDep) -> JSONResponse:
    form = await read_form(request)
    answer, created = await run_in_threadpool(
        _result_export, store, settings, principal, job_id, form)
    if created:
        nudge_dispatcher(settings)
    return JSONResponse(answer)
