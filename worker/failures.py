"""Which errors are the user's, which are ours, and how each reads in `failures[]`.

    user      fail at once, never retried: NQL errors, missing datasets, BUDGET exceeded,
              DuckDB binder/catalog/parser/conversion/range/type errors, a sandbox
              permission error (the compiler should have refused it), out of memory
              (the same query on the same data needs the same memory: a retry cannot help).
    infra     requeued with backoff while `infra_retries < retry_limit`, then failed:
              the store or disk failing, DuckDB IO errors (including a dataset's Parquet
              file that is missing: the files are ours, not the user's, so it is our
              fault and may be a storage hiccup), a lost snapshot race, DuckDB internal
              errors, and anything unexpected.
    timeout   failed "timed out after N s", never retried (the same query would time out
              again).

A failure entry is `{message, timestamp, value}`: `message` is one readable sentence,
`value` the detail (`type`, `line`/`column` when known, DuckDB's own text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import duckdb

from shared.errors import InfrastructureError, JobTimedOut, NQLError, UserError
from shared.nql.sandbox import readable
from worker.watch import RunStopped, StopReason


class Kind(StrEnum):
    USER = "user"
    INFRA = "infra"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Failure:
    kind: Kind
    message: str
    value: dict[str, Any] = field(default_factory=dict)


_USER_DUCKDB = (
    duckdb.ProgrammingError,  # binder, catalog, parser, syntax, invalid input/type
    duckdb.DataError,  # conversion, out of range, type mismatch
    duckdb.NotSupportedError,
    duckdb.PermissionException,
    duckdb.OutOfMemoryException,
)
_LINE = re.compile(r"^LINE (\d+):", re.MULTILINE)


def is_duckdb_timeout(error: BaseException) -> bool:
    return isinstance(error, duckdb.InterruptException) and "maximum execution time" in str(error)


def _duckdb_value(error: duckdb.Error) -> dict[str, Any]:
    value: dict[str, Any] = {"type": type(error).__name__, "duckdb_message": str(error)}
    line = _LINE.search(str(error))
    if line:
        value["line"] = int(line.group(1))  # of the compiled SQL, which `compiled_sql` holds
    return value


def classify(error: BaseException, *, timeout_seconds: int) -> Failure:
    timed_out = isinstance(error, RunStopped) and error.reason == StopReason.TIMED_OUT
    if timed_out or isinstance(error, JobTimedOut) or is_duckdb_timeout(error):
        return Failure(Kind.TIMEOUT, f"timed out after {timeout_seconds} s",
                       {"type": "JobTimedOut", "timeout_seconds": timeout_seconds})
    if isinstance(error, UserError):
        value: dict[str, Any] = {"type": type(error).__name__, **_jsonable(error.detail)}
        if isinstance(error, NQLError):
            value.update(line=error.line, column=error.column)
        return Failure(Kind.USER, error.message, value)
    if isinstance(error, InfrastructureError):
        return Failure(Kind.INFRA, error.message, {"type": type(error).__name__,
                                                   **_jsonable(error.detail)})
    if isinstance(error, duckdb.OutOfMemoryException):
        return Failure(Kind.USER, "The query needs more memory than a job may use: "
                       + readable(error), _duckdb_value(error))
    if isinstance(error, _USER_DUCKDB):
        return Failure(Kind.USER, readable(error), _duckdb_value(error))
    if isinstance(error, duckdb.Error):
        return Failure(Kind.INFRA, "The query engine failed: " + readable(error),
                       _duckdb_value(error))
    if isinstance(error, OSError):  # no file name: local paths are not the user's business
        return Failure(Kind.INFRA, f"A storage error stopped the job: {error.strerror or type(error).__name__}",
                       {"type": type(error).__name__, "errno": error.errno})
    return Failure(Kind.INFRA, "The job failed on an internal error",
                   {"type": type(error).__name__, "error": str(error)[:2000]})


def _jsonable(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, str | int | float | bool | type(None)) else str(v)
            for k, v in detail.items()}
