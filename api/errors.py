"""The one place where exceptions become HTTP responses.

    AuthenticationFailed                       401 (+ WWW-Authenticate: Bearer)
    AccessDenied                               403
    NQLError (incl. DatasetNotFound), UserError 400 (NQL errors add line/column)
    NotFound (JobNotFound, ...)                404
    JobNotCompleted                            400 with Dremio's body {errorMessage, moreInfo}
    RequestValidationError (FastAPI's 422)     400
    Starlette HTTPException (404 route, 405, 413 body too large)   its own status
    InfrastructureError, database unreachable  503
    anything else                              500, logged: a bug, never bad input

`DatasetNotFound` is both an NQL error and a NotFound: raised by the compiler it is a
400 about the statement (the MRO puts NQLError first); the datasets resource turns a miss
into a plain `NotFound` itself (see `api/datasets.py`).
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.models.responses import JobResultsError, Problem
from shared.errors import (
    AccessDenied,
    AuthenticationFailed,
    DataplaneError,
    InfrastructureError,
    JobNotCompleted,
    NotFound,
    NQLError,
    ResultExpired,
    UserError,
)

logger = logging.getLogger(__name__)

# First match wins, in this order (so DatasetNotFound, an NQLError, is a 400).
_STATUS: tuple[tuple[type[DataplaneError], int], ...] = (
    (AuthenticationFailed, 401),
    (AccessDenied, 403),
    (NQLError, 400),
    (NotFound, 404),
    (ResultExpired, 410),
    (UserError, 400),
    (InfrastructureError, 503),
)

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# RFC 9110 names where Python's http module still has the older ones.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


def status_of(error: DataplaneError) -> int:
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


def _kebab(name: str) -> str:
    """`NQLSyntaxError` -> `nql-syntax-error`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


def problem(status: int, detail: str, *, type_: str | None = None, title: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """A `{type, title, status, detail}` body (RFC 9457 shaped)."""
    phrase = _TITLES.get(status) or (
        HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error")
    body = {"type": type_ or _kebab(phrase.replace(" ", "")), "title": title or phrase,
            "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, headers=headers)


def _dataplane_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DataplaneError)
    if isinstance(exc, JobNotCompleted):
        # Dremio's results error body, verbatim shape (seed job-results.txt).
        return JSONResponse({"errorMessage": exc.message, "moreInfo": ""}, status_code=400)
    status = status_of(exc)
    if status >= 500:
        logger.error("infrastructure error: %s", exc.message, exc_info=exc)
    extra: dict[str, Any] = {}
    title: str | None
    if isinstance(exc, NQLError):
        extra = {"line": exc.line, "column": exc.column}
        title = NQLError.title  # also for DatasetNotFound, whose own title says 404
    else:
        title = None
    headers = BEARER_CHALLENGE if status == 401 else None
    return problem(status, exc.message, type_=_kebab(type(exc).__name__), title=title,
                   headers=headers, **extra)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    # FastAPI's 422 is a 400 here (the contract); the detail names each offending field.
    messages = [f"{_location(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors[:5]]
    if len(errors) > 5:
        messages.append(f"... and {len(errors) - 5} more")
    return problem(400, "; ".join(messages) or "Invalid request", type_="validation-error")


def _allowed_methods(request: Request) -> str:
    """Every method any route serves at this path. (Starlette's own Allow header names only
    the first route matching the path, though several routes may share it.)"""
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for route in request.app.routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(path):
            methods |= set(route_methods)
    return ", ".join(sorted(methods))


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return problem(exc.status_code, detail, headers=headers or None)


def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    # A dropped or unreachable database is an outage, not a bug in the request or in us.
    logger.error("jobs store unavailable: %s", exc)
    return problem(503, "The jobs store is unavailable; retry later",
                   type_="store-unavailable")


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal error; it has been logged", type_="internal-error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(DataplaneError, _dataplane_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)


def _json(model: Any, description: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "description": description, **extra}


# OpenAPI declarations of the error responses, shared by the routers.
Responses = dict[int | str, dict[str, Any]]
UNAUTHORIZED: Responses = {401: _json(Problem, "Missing, malformed, unknown or revoked bearer token",
                           headers={"WWW-Authenticate": {"schema": {"type": "string"}}})}
BAD_REQUEST: Responses = {400: _json(Problem, "Invalid request (NQL errors add line and column)")}
NOT_FOUND: Responses = {404: _json(Problem, "No such job or dataset for this company")}
TOO_LARGE: Responses = {413: _json(Problem, "Request body larger than the configured limit")}
RESULTS_BAD_REQUEST: Responses = {400: _json(Problem | JobResultsError,
                                  "Job not completed (Dremio body) or invalid request")}
# Anything else (503 store unavailable, 500 bug) still answers a Problem body.
DEFAULT: Responses = {"default": _json(Problem, "Unexpected error")}
GONE: Responses = {410: _json(Problem, "The result of an interactive query expired "
                                       "(DATAPLANE_QUERY_RESULT_TTL_SECONDS)")}
