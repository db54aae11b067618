"""Job states and the transition table (DESIGN.md "States").

    pending              -> running | pending_cancellation
    running              -> completed | failed | pending_cancellation | pending (another attempt)
    pending_cancellation -> cancelled | completed (the work finished before the cancel took effect)
    completed, failed, cancelled: terminal and absorbing

A run of a job that is lost or hits an infrastructure error goes back to `pending`;
`pending_cancellation` may also fail (its run broke before it could be cancelled is
still a cancel: we finalize to `cancelled`, never `failed`, so that edge is not in the table).
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PENDING_CANCELLATION = "pending_cancellation"
    CANCELLED = "cancelled"


class JobType(StrEnum):
    MATERIALIZE_VIEW = "materialize-view"
    NQL_FORECAST = "nql-forecast"
    EXPORT = "export"  # a result or dataset export to an S3 target (api/td, worker/export.py)


class ExecutionCluster(StrEnum):
    SHARED = "shared"
    DEDICATED = "dedicated"


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}
)

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.RUNNING, JobState.PENDING_CANCELLATION}),
    JobState.RUNNING: frozenset(
        {JobState.COMPLETED, JobState.FAILED, JobState.PENDING_CANCELLATION, JobState.PENDING}
    ),
    JobState.PENDING_CANCELLATION: frozenset({JobState.CANCELLED, JobState.COMPLETED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def is_allowed(source: JobState, target: JobState) -> bool:
    return target in TRANSITIONS[source]


def sources_of(target: JobState) -> tuple[JobState, ...]:
    """Every state that may move to `target`, in a fixed order."""
    return tuple(s for s in JobState if target in TRANSITIONS[s])
