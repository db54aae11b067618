"""The job as the API returns it (DESIGN.md "Jobs (wire format)")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.store.models import Job

STATISTICS_KEYS = ("records_inserted", "result_size", "duration_ms", "queued_ms")
# Only on runs of incremental views (DELTA / MERGE), and only when set.
REFRESH_STATISTICS_KEYS = ("refresh", "refresh_reason", "rows_read", "files_read")


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def job_to_wire(job: Job) -> dict[str, Any]:
    return {
        "job_id": str(job.id),
        "data_plane_id": str(job.data_plane_id) if job.data_plane_id else None,
        "request_source": {
            "type": job.request_source_type,
            "company_id": job.company_id,
            "user_id": job.user_id,
        },
        "state": job.state,
        "type": job.type,
        "input": {
            "nql": job.nql,
            "dataset_id": job.dataset_id,
            "stats_enabled": job.stats_enabled,
            "compiled_sql": job.compiled_sql,
        },
        "executor": job.executor,
        "idempotency_key": job.idempotency_key,
        "result": job.result,
        "failures": list(job.failures or []),
        "tags": list(job.tags or []),
        "compute_pool_id": str(job.compute_pool_id) if job.compute_pool_id else None,
        "execution_cluster": job.execution_cluster,
        "priority": job.priority,
        "retry_limit": job.retry_limit,
        "attempts": job.attempts,
        "statistics": _statistics(job),
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "started_at": iso(job.started_at),
        "ended_at": iso(job.ended_at),
    }


def _statistics(job: Job) -> dict[str, Any]:
    stored = job.statistics or {}
    out = {key: stored.get(key) for key in STATISTICS_KEYS}
    # Runs of incremental views say how they read their inputs.
    out.update({key: stored[key] for key in REFRESH_STATISTICS_KEYS if key in stored})
    # A running job's progress (0-100), written by its watcher with the heartbeat.
    if job.state in ("running", "pending_cancellation") and stored.get("progress") is not None:
        out["progress"] = stored["progress"]
    return out
