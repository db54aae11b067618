"""`GET /healthz` and `GET /metrics`: for load balancers and Prometheus, so no token.
Neither says anything about any one company (see `api/metrics.py`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from api import errors
from api.deps import SettingsDep, StoreDep
from api.health import health
from api.metrics import CONTENT_TYPE, render
from api.models.responses import Health

router = APIRouter(tags=["operations"], responses=errors.DEFAULT)


@router.get("/healthz", response_model=Health,
            responses={503: {"model": Health, "description": "Store or broker unreachable"}},
            summary="Store and broker reachability (200 when both answer, else 503)")
def healthz(settings: SettingsDep, store: StoreDep) -> JSONResponse:
    report = health(settings, store)
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
                             "description": "Prometheus text format 0.0.4"}},
            summary="Jobs by state and type, queue depths, oldest pending age, durations")
def metrics(settings: SettingsDep, store: StoreDep) -> PlainTextResponse:
    with store.unit_of_work() as session:
        body = render(session, settings)
    return PlainTextResponse(body, media_type=CONTENT_TYPE)
