"""The app factory. Every module under `api/routes/` that defines an `APIRouter` named
`router` is included, in module-name order: a new resource is a new module, nothing else."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

import api.routes
from api import errors
from api.deps import AppContext
from api.limits import BodyLimitMiddleware
from shared.config import Settings
from shared.store import Store

TITLE = "dataplane"
VERSION = "1.0.0"
DESCRIPTION = (
    "NQL jobs on Celery workers and DuckDB. Every endpoint but /healthz and /metrics needs "
    "`Authorization: Bearer <token>`. Errors are `{type, title, status, detail}` (NQL errors "
    "add `line` and `column`); request bodies with unknown fields are rejected with 400."
)


def routers() -> Iterator[APIRouter]:
    for module in sorted(pkgutil.iter_modules(api.routes.__path__), key=lambda m: m.name):
        router = getattr(importlib.import_module(f"api.routes.{module.name}"), "router", None)
        if isinstance(router, APIRouter):
            yield router


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    context = AppContext(settings or Settings(), store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        context.close()

    app = FastAPI(title=TITLE, version=VERSION, description=DESCRIPTION, lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.context = context
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=context.settings.api_max_body_bytes)
    for router in routers():
        app.include_router(router)
    return app
