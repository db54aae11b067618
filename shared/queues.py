"""Task and queue names: the contract between the dispatcher (scheduler/) and the
workers (worker/). The scheduler sends by name and never imports worker code."""

from __future__ import annotations

import uuid

RUN_JOB_TASK = "dataplane.run_job"

SHARED_QUEUE = "dataplane.shared"
DEDICATED_QUEUE = "dataplane.dedicated"

# TD priority -2..2 (2 = most urgent) to Redis priority steps (0 = served first).
_BROKER_PRIORITY = {2: 0, 1: 3, 0: 5, -1: 7, -2: 9}
PRIORITY_STEPS = sorted(set(_BROKER_PRIORITY.values()))


def pool_queue(compute_pool_id: uuid.UUID | str) -> str:
    return f"{DEDICATED_QUEUE}.{compute_pool_id}"


def queue_for(execution_cluster: str, compute_pool_id: uuid.UUID | str | None) -> str:
    """The one queue a job is published to."""
    if compute_pool_id is not None:
        return pool_queue(compute_pool_id)
    return DEDICATED_QUEUE if execution_cluster == "dedicated" else SHARED_QUEUE


def worker_queue(cluster: str, compute_pool: str | None) -> str:
    """The queue a `dataplane worker --cluster C [--compute-pool P]` consumes."""
    if compute_pool:
        if cluster != "dedicated":
            raise ValueError("--compute-pool goes with --cluster dedicated")
        return pool_queue(compute_pool)
    return queue_for(cluster, None)


def broker_priority(job_priority: int) -> int:
    return _BROKER_PRIORITY[max(-2, min(2, job_priority))]

# Webhook deliveries (issue 16): their own queue, served by a threads-pool Celery worker
# (`dataplane webhooks`, which `dataplane worker` starts as a child), never by job slots.
WEBHOOKS_QUEUE = "dataplane.webhooks"
WEBHOOK_TASK = "dataplane.webhooks.deliver"
