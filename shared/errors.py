"""The one exception tree of dataplane.

    DataplaneError                      anything we raise on purpose
    ├── UserError                       the request or the NQL is wrong; never retried
    │   ├── InvalidRequest              a malformed request (bad filter, per_page > 500, ...)
    │   ├── NotFound                    a job/dataset that does not exist *for this company*
    │   │   ├── JobNotFound
    │   │   └── DatasetNotFound         also an NQLError: `company_data.x` that is not readable
    │   ├── AccessDenied                authenticated, but not allowed
    │   ├── JobNotCompleted             results asked of a job that has not completed
    │   ├── BudgetExceeded              the statement's BUDGET would be exceeded
    │   ├── OutputTooLarge              a run wrote more than DATAPLANE_MAX_OUTPUT_BYTES
    │   └── NQLError                    the statement cannot be compiled
    │       ├── NQLSyntaxError          with line and column
    │       ├── UnsupportedConstruct    valid SQL we do not (yet) support
    │       ├── ForbiddenConstruct      a sandbox escape attempt or a forbidden function/table
    │       ├── ColumnNotFound
    │       └── DatasetNotFound
    ├── AuthenticationFailed            no, malformed or revoked token (HTTP 401)
    └── InfrastructureError             the system failed the user; retried within retry_limit
        ├── StoreUnavailable            the jobs store could not be reached (a run goes back to pending)
        └── JobTimedOut                 (a user-visible end state, not retried)

Edges map these once: the API to HTTP statuses (`api/errors.py`), the worker to
`failures[]` entries. Messages are written for the user who submitted the job.
"""

from __future__ import annotations

from typing import Any


class DataplaneError(Exception):
    """Base of everything dataplane raises on purpose."""

    title = "Error"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class UserError(DataplaneError):
    """The caller's input is at fault; retrying the same input cannot help."""

    title = "Bad Request"


class InvalidRequest(UserError):
    """A request that does not match the contract."""


class NotFound(UserError):
    """Something that does not exist, or that this company may not see (no existence leak)."""

    title = "Not Found"


class JobNotFound(NotFound):
    """No such job for this company."""


class AccessDenied(UserError):
    """Authenticated, but not allowed to do this."""

    title = "Forbidden"


class JobNotCompleted(UserError):
    """Results were asked of a job that is not `completed`."""

    def __init__(self, state: str) -> None:
        # DESIGN.md: the state in capitals, as our states are spelled ([CANCELLED], not
        # Dremio's [CANCELED]).
        super().__init__(f"Can not fetch details for a job that is in [{state.upper()}] state.")
        self.state = state


class BudgetExceeded(UserError):
    """The statement's BUDGET / LIMIT n USD would be exceeded."""


class OutputTooLarge(UserError):
    """A run wrote more than the per-run output cap; nothing of it is kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The job's output exceeded the cap of {limit} bytes "
                         "(DATAPLANE_MAX_OUTPUT_BYTES); nothing was written",
                         type="OutputTooLarge", max_output_bytes=limit)


class NQLError(UserError):
    """The NQL statement cannot be compiled. `line`/`column` are 1-based when known."""

    title = "Invalid NQL"

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None,
                 **detail: Any) -> None:
        super().__init__(message, **detail)
        self.line = line
        self.column = column


class NQLSyntaxError(NQLError):
    """The statement does not parse."""


class UnsupportedConstruct(NQLError):
    """Valid SQL that NQL does not support."""


class ForbiddenConstruct(NQLError):
    """A construct the sandbox forbids: file/network/catalog access, settings, DDL, ..."""


class ColumnNotFound(NQLError):
    """A column that the referenced datasets do not have."""


class DatasetNotFound(NQLError, NotFound):
    """A dataset that does not exist or that the company may not read (same message)."""

    title = "Not Found"


class AuthenticationFailed(DataplaneError):
    """Missing, malformed, unknown or revoked bearer token."""

    title = "Unauthorized"


class InfrastructureError(DataplaneError):
    """The system, not the user, failed (broker, store, disk). Retried within `retry_limit`."""

    title = "Internal Error"


class StoreUnavailable(InfrastructureError):
    """The jobs store could not be reached (restarting, failing over): nothing the job did."""


class JobTimedOut(DataplaneError):
    """The job ran past its time limit."""

    title = "Timed Out"


class ResultExpired(UserError):
    """The result of an interactive query outlived its TTL: its data is deleted (410)."""

    title = "Gone"
