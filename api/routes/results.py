"""`GET /jobs/{job_id}/results` (Dremio's pages) and `GET /jobs/{job_id}/result` (Treasure
Data's whole-result download, streamed)."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from api import errors
from api.deps import CurrentPrincipal, SettingsDep, StorageDep, StoreDep
from api.models.requests import INT64_MAX
from api.models.responses import JobResults
from shared.results import MEDIA_TYPES, read_results, stream_result
from shared.store.jobs import get_job
from shared.store.td import check_not_expired

router = APIRouter(prefix="/jobs", tags=["results"], responses={
    **errors.RESULTS_BAD_REQUEST, **errors.UNAUTHORIZED, **errors.NOT_FOUND, **errors.GONE,
    **errors.DEFAULT})

MAX_LIMIT = 500


class ResultFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


@router.get("/{job_id}/results", response_model=JobResults,
            summary="A page of a completed job's rows")
def get_results(
    job_id: uuid.UUID,
    principal: CurrentPrincipal,
    store: StoreDep,
    storage: StorageDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=0, le=MAX_LIMIT, description="Rows to return")] = 100,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX, description="Rows to skip")] = 0,
) -> JSONResponse:
    with store.unit_of_work() as session:
        job = get_job(session, job_id, company_id=principal.company_id)
        check_not_expired(session, job, settings.query_result_ttl_seconds)
        return JSONResponse(read_results(session, storage, job, limit=limit, offset=offset))


@router.get(
    "/{job_id}/result", response_class=StreamingResponse,
    summary="Download the whole result of a completed job, streamed",
    responses={200: {
        "description": "The rows, with Content-Disposition: attachment; filename=...",
        "content": {media: {"schema": {"type": "string", "format": "binary"}}
                    for media in MEDIA_TYPES.values()},
    }},
)
def download_result(
    job_id: uuid.UUID,
    principal: CurrentPrincipal,
    store: StoreDep,
    storage: StorageDep,
    settings: SettingsDep,
    fmt: Annotated[ResultFormat, Query(alias="format")] = ResultFormat.CSV,
) -> StreamingResponse:
    # The unit of work ends before the first byte: the stream reads files, not the store.
    with store.unit_of_work() as session:
        job = get_job(session, job_id, company_id=principal.company_id)
        check_not_expired(session, job, settings.query_result_ttl_seconds)
        media_type, filename, chunks = stream_result(session, storage, job, fmt.value)
    return StreamingResponse(
        chunks, media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
