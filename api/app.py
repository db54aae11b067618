"""The app factory. Every module under `api/routes/` that defines an `APIRouter` named
`router` is included, in module-name order: a new resource is a new module, nothing else."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI

import api.routes
from api import errors, submission
from api.deps import AppContext, single_valued_query
from api.limits import BodyLimitMiddleware
from api.td.paths import LeadingSlashes
from shared.config import Settings
from shared.store import Store

TITLE = "dataplane"
VERSION = "1.0.0"
DESCRIPTION = """NQL jobs on Celery workers and DuckDB.

- Every endpoint but `/healthz` and `/metrics` needs `Authorization: Bearer <token>`
  (`dataplane tokens create`); a missing, malformed, unknown or revoked token is a 401 with
  `WWW-Authenticate: Bearer`. The token decides `request_source`. Another company's job or
  dataset is a 404, exactly as a missing one.
- `/healthz` and `/metrics` (Prometheus text) are public: they carry no company's data.
- Errors are `{type, title, status, detail}`; NQL errors add `line` and `column`. Results of a
  job that is not completed answer Dremio's `{errorMessage, moreInfo}` with 400.
- Bad input is a 400, never a 422: unknown body fields (so a client cannot set
  `request_source`), wrong types (`"2"` is not a number), unknown enum values, `per_page` or
  `limit` above 500, negative offsets, malformed UUIDs, a single-valued query parameter
  given twice (`state`, `type` and `tag` repeat). Bodies over the configured limit
  (`DATAPLANE_API_MAX_BODY_BYTES`) are a 413, announced or chunked.
- `POST /nql/run` answers 201 with the new job, or 200 with the existing one when the
  company already used that `idempotency_key`.
"""


def routers() -> Iterator[APIRouter]:
    for module in sorted(pkgutil.iter_modules(api.routes.__path__), key=lambda m: m.name):
        router = getattr(importlib.import_module(f"api.routes.{module.name}"), "router", None)
        if isinstance(router, APIRouter):
            yield router


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    context = AppContext(settings or Settings(), store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        submission.warm_up()
        yield
        context.close()

    app = FastAPI(title=TITLE, version=VERSION, description=DESCRIPTION, lifespan=lifespan,
                  docs_url="/docs", redoc_url=None,
                  dependencies=[Depends(single_valued_query)])
    app.state.context = context
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=context.settings.api_max_body_bytes)
    for router in routers():
        app.include_router(router)
    app.add_middleware(LeadingSlashes)  # td-client's `//v3/...` (api/td/paths.py)
    return app
