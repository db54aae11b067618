"""`/v3/job/*`: Treasure Data's job API over our jobs (see the package docstring)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api import errors
from api.deps import SettingsDep, StorageDep, StoreDep
from api.models.requests import MAX_RETRY_LIMIT, RunRequest
from api.submission import submit
from api.td.auth import TdPrincipal
from api.td.forms import int_field, read_form
from api.td.query import to_nql
from api.td.wire import STATES_OF_STATUS, show_fields, status_fields, td_status
from shared.config import Settings
from shared.errors import InvalidRequest, JobNotFound
from shared.export_target import encrypt_credentials, parse_result_url, require_secret_key
from shared.nudge import nudge_dispatcher
from shared.results import result_rows
from shared.storage import Storage
from shared.store import Store
from shared.store.jobs import cancel, get_job
from shared.store.listing import MAX_PER_PAGE, JobFilter, list_jobs
from shared.store.models import Job
from shared.store.td import (
    INTERACTIVE_TAG,
    add_td_job,
    check_not_expired,
    gz_key,
    td_job,
    td_jobs,
)
from shared.store.tokens import Principal
from shared.td_results import MEDIA_TYPES, encoded_chunks, ensure_msgpack_gz

router = APIRouter(prefix="/v3", tags=["treasure-data"], responses={
    **errors.BAD_REQUEST, **errors.UNAUTHORIZED, **errors.NOT_FOUND, **errors.DEFAULT})

JOB_TYPES = ("presto", "trino", "hive")
PRIORITY_NAMES = {"VERY LOW": -2, "LOW": -1, "NORMAL": 0, "HIGH": 1, "VERY HIGH": 2}
DEFAULT_LIST = 20  # TD lists the first 20 jobs when `to` is not given
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _job_id(raw: str) -> uuid.UUID:
    """A job id that is not one of ours is a job that does not exist (404, as TD does)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise JobNotFound(f"Job {raw} not found") from None


def _actor(principal: Principal) -> str:
    return f"td:company={principal.company_id}:user={principal.user_id}"


def _priority(form: dict[str, str]) -> int:
    raw = form.get("priority", "").strip()
    if raw.upper().replace("_", " ") in PRIORITY_NAMES:
        return PRIORITY_NAMES[raw.upper().replace("_", " ")]
    return int_field(form, "priority", default=0, low=-2, high=2)


def _issue(store: Store, settings: Settings, principal: Principal, job_type: str,
           database: str, form: dict[str, str]) -> dict[str, Any]:
    if job_type not in JOB_TYPES:
        raise InvalidRequest(f"Unsupported job type {job_type!r}: one of {', '.join(JOB_TYPES)}")
    query = form.get("query", "")
    if not query.strip():
        raise InvalidRequest("query is required")
    target = parse_result_url(form["result"]) if form.get("result") else None
    if target is not None:
        require_secret_key(settings)  # a clear 400 now, not a failed export later
    pool = form.get("pool_name") or None
    try:
        pool_id = uuid.UUID(pool) if pool else None
    except ValueError:
        raise InvalidRequest(f"pool_name must be a compute pool id (a UUID), got {pool!r}") from None
    job_id = uuid.uuid4()
    statement = to_nql(database, query, job_id)
    try:
        body = RunRequest(
            nql=statement.nql, idempotency_key=form.get("domain_key") or None,
            compute_pool_id=pool_id, priority=_priority(form),
            retry_limit=int_field(form, "retry_limit", default=0, low=0, high=MAX_RETRY_LIMIT),
            tags=[INTERACTIVE_TAG] if statement.interactive else [])
    except ValueError as error:  # pydantic's: a too long domain_key, say
        raise InvalidRequest(f"Invalid request: {error}") from None
    with store.unit_of_work() as session:
        job, created = submit(session, principal, body, job_id=job_id)
        if created:
            row = add_td_job(session, job_id=job.id, company_id=principal.company_id,
                             td_type=job_type, query=query, database=database,
                             interactive=statement.interactive)
            if target is not None:
                # The scheduler's result-exports duty makes the export job once this completes.
                row.result_url_encrypted = encrypt_credentials(settings, target.credentials)
                row.result_url_redacted = target.location.redacted()
                row.export_spec = {"source": {"kind": "job", "job_id": str(job.id)},
                                   "location": target.location.to_json()}
        answer = {"job": str(job.id), "job_id": str(job.id), "database": database}
    if created:
        nudge_dispatcher(settings)
    return answer


@router.post("/job/issue/{job_type}/{database}", summary="Issue a query (TD's job issue)")
async def issue(job_type: str, database: str, request: Request, principal: TdPrincipal,
                store: StoreDep, settings: SettingsDep) -> JSONResponse:
    form = await read_form(request)
    return JSONResponse(await run_in_threadpool(
        _issue, store, settings, principal, job_type, database, form))


def _owned(session: Any, principal: Principal, raw_id: str) -> Job:
    return get_job(session, _job_id(raw_id), company_id=principal.company_id)


@router.get("/job/show/{job_id}", summary="A job, as TD shows it")
def show(job_id: str, request: Request, principal: TdPrincipal, store: StoreDep,
         storage: StorageDep, settings: SettingsDep) -> JSONResponse:
    with store.unit_of_work() as session:
        job = _owned(session, principal, job_id)
        return JSONResponse(show_fields(session, storage, job, td_job(session, job.id),
                                        settings.query_result_ttl_seconds,
                                        base_url=str(request.base_url)))


@router.get("/job/status/{job_id}", summary="A job's status, times and result size")
def status(job_id: str, principal: TdPrincipal, store: StoreDep, storage: StorageDep,
           settings: SettingsDep) -> JSONResponse:
    with store.unit_of_work() as session:
        job = _owned(session, principal, job_id)
        return JSONResponse(status_fields(session, storage, job, td_job(session, job.id),
                                          settings.query_result_ttl_seconds))


@router.get("/job/status_by_domain_key/{domain_key}", summary="The status of a domain_key's job")
def status_by_domain_key(domain_key: str, principal: TdPrincipal, store: StoreDep,
                         storage: StorageDep, settings: SettingsDep) -> JSONResponse:
    with store.unit_of_work() as session:
        page = list_jobs(session, JobFilter(company_id=principal.company_id,
                                            idempotency_key=domain_key), per_page=1)
        if not page.records:
            raise JobNotFound(f"No job with domain_key {domain_key!r}")
        job = page.records[0]
        return JSONResponse(status_fields(session, storage, job, td_job(session, job.id),
                                          settings.query_result_ttl_seconds))


@router.get("/job/statistics/{job_id}", summary="A job's statistics")
def statistics(job_id: str, principal: TdPrincipal, store: StoreDep, storage: StorageDep,
               settings: SettingsDep) -> JSONResponse:
    with store.unit_of_work() as session:
        job = _owned(session, principal, job_id)
        fields = status_fields(session, storage, job, None, settings.query_result_ttl_seconds,
                               with_size=False)
        records = fields["num_records"]
        return JSONResponse({"records_inserted": str(records) if records is not None else None})


@router.get("/job/list", summary="Jobs, newest first")
def list_(
    request: Request, principal: TdPrincipal, store: StoreDep, storage: StorageDep,
    settings: SettingsDep,
    from_: Annotated[int, Query(alias="from", ge=0)] = 0,
    to: Annotated[int | None, Query(ge=0)] = None,
    status_: Annotated[str | None, Query(alias="status")] = None,
) -> JSONResponse:
    last = to if to is not None else from_ + DEFAULT_LIST - 1
    if last < from_:
        raise InvalidRequest(f"to ({last}) must not be below from ({from_})")
    states: list[str] = []
    if status_:
        if status_ not in STATES_OF_STATUS:
            raise InvalidRequest(f"Unknown status {status_!r}: one of "
                                 f"{', '.join(sorted(STATES_OF_STATUS))}")
        states = STATES_OF_STATUS[status_]
    with store.unit_of_work() as session:
        page = list_jobs(session, JobFilter(company_id=principal.company_id, states=states),
                         offset=from_, per_page=min(last - from_ + 1, MAX_PER_PAGE))
        tds = td_jobs(session, (job.id for job in page.records))
        # No result sizes in a list: each could mean writing a msgpack.gz (show has it).
        jobs = [show_fields(session, storage, job, tds.get(job.id),
                            settings.query_result_ttl_seconds, base_url=str(request.base_url),
                            with_size=False) for job in page.records]
    return JSONResponse({"jobs": jobs, "count": page.total_records, "from": from_, "to": last})


@router.post("/job/kill/{job_id}", summary="Kill a job (request cancellation, then finalize)")
def kill(job_id: str, principal: TdPrincipal, store: StoreDep,
         settings: SettingsDep) -> JSONResponse:
    with store.unit_of_work() as session:
        job = _owned(session, principal, job_id)
        former = td_status(job)
        cancel(session, job.id, actor=_actor(principal))
        session.expire_all()
        job = get_job(session, job.id)
        answer = {"job_id": str(job.id), "former_status": former, "status": td_status(job)}
    nudge_dispatcher(settings)
    return JSONResponse(answer)


def _header(raw: str | None) -> bool:
    return (raw or "false").strip().lower() in ("true", "1", "yes")


def _ranged(storage: Storage, key: str, size: int, range_header: str) -> Response:
    match = _RANGE.match(range_header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        raise InvalidRequest(f"Unsupported Range header {range_header!r}")
    if match.group(1):
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
    else:  # a suffix: the last n bytes
        start, end = max(size - int(match.group(2)), 0), size - 1
    if start >= size or end < start:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    body = storage.read_range(key, start, end - start + 1)
    return Response(body, status_code=206, media_type=MEDIA_TYPES["msgpack.gz"], headers={
        "Content-Range": f"bytes {start}-{end}/{size}", "Accept-Ranges": "bytes"})


def _primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The first chunk now, so a storage outage is an error status, not a cut stream."""
    first = next(chunks, None)
    if first is None:
        return iter(())

    def rest() -> Iterator[bytes]:
        yield first
        yield from chunks
    return rest()


@router.get("/job/result/{job_id}", summary="A completed job's result, streamed",
            response_class=StreamingResponse, responses=errors.GONE)
def result(
    job_id: str, request: Request, principal: TdPrincipal, store: StoreDep,
    storage: StorageDep, settings: SettingsDep,
    fmt: Annotated[str, Query(alias="format")] = "msgpack",
    header: str | None = None,
) -> Response:
    if fmt not in MEDIA_TYPES:
        raise InvalidRequest(f"Unsupported format {fmt!r}: one of {', '.join(MEDIA_TYPES)}")
    with store.unit_of_work() as session:
        job = _owned(session, principal, job_id)
        check_not_expired(session, job, settings.query_result_ttl_seconds)
        if fmt == "msgpack.gz":
            # Served from the stored object, so every ranged GET sees the same bytes.
            size = ensure_msgpack_gz(session, storage, job)
        else:
            rows = result_rows(session, storage, job)
    filename = f"{job.id}.{fmt}"
    disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if fmt == "msgpack.gz":
        key = gz_key(job.id)
        if range_header := request.headers.get("range"):
            return _ranged(storage, key, size, range_header)
        return StreamingResponse(_primed(storage.iter_bytes(key)), media_type=MEDIA_TYPES[fmt],
                                 headers={**disposition, "Content-Length": str(size),
                                          "Accept-Ranges": "bytes"})
    chunks = encoded_chunks(rows, fmt, header=_header(header))
    return StreamingResponse(_primed(chunks), media_type=MEDIA_TYPES[fmt], headers=disposition)
