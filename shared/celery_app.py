"""The Celery app: broker, queues, priorities, acknowledgement and time limits.

`app` is configured from `Settings()` at import, so every process that imports it
(dispatcher, workers, `celery -A shared.celery_app flower`) agrees on the broker and on
the visibility timeout. It registers no task: the worker imports `worker.tasks`, the
scheduler only sends `RUN_JOB_TASK` by name (and so never imports DuckDB).

Acknowledgement: late ack + reject on worker lost, with the jobs table as the truth
-------------------------------------------------------------------------------------
`task_acks_late=True`: the message is acknowledged when the task returns, so a worker
killed whole (SIGKILL, OOM, power loss) does not lose it: Redis hands it out again once
its `visibility_timeout` has passed. `task_reject_on_worker_lost=True` does the same at
once when only the pool child died. Neither redelivery can run a job twice, because the
message is only a hint and the job row decides:

* The task's first step is the claim, one compare-and-set
  `UPDATE jobs SET state='running', attempts=attempts+1 ... WHERE id=:id AND state='pending'`.
  A duplicate, redelivered or stale message (the job is running elsewhere, finished,
  cancelled, or already reclaimed by the reaper) matches no row and the task returns
  without doing anything. This covers the known Redis hazard of late ack: a task that
  runs longer than the visibility timeout is delivered again *while it still runs*;
  that second delivery finds the job `running` and is a no-op.
* Every later write of the run (heartbeat, compiled SQL, snapshot publish, complete,
  fail, requeue, finalize-cancel) is conditioned on the state *and* the attempt number
  the claim returned (the fencing token). A zombie run whose lease the reaper took over
  cannot publish or complete; its heartbeat sees it is fenced and interrupts its query.
* Redelivery is not what recovers a lost job: the lease is. The worker heartbeats
  `lease_expires_at`; the scheduler's reaper requeues (or fails, after `max_attempts`)
  a running job whose lease expired, and the dispatcher publishes it again. So the
  poison-pill loop that `reject_on_worker_lost` can cause on its own is capped by the
  attempts counter in the database, not by the broker (which has no delivery counter).

The visibility timeout is set above the hard time limit (plus slack for a message that
waits reserved while the child is replaced), so a healthy run is never redelivered; if
one were, the claim makes it harmless. It is set in every place Celery/kombu read it
(`broker_transport_options`, `result_backend_transport_options`, `visibility_timeout`),
since with several values on one broker the shortest wins.

Time limits: DuckDB ignores Python signals for a long time (reliability notes), so the
worker stops a run itself at `job_timeout_seconds` (`max_execution_time` and an
`interrupt()` from its watchdog thread). Celery's hard `task_time_limit` (timeout +
margin) is only the backstop that kills a child stuck in native code; there is no soft
limit, whose SIGUSR1 would surface as a confusing "Query interrupted".

The embedded broker (`sqla+sqlite:///...`, dev mode) has no visibility timeout and no
priorities, and kombu's SQLAlchemy transport hands every transport option to
`create_engine()`: the Redis options are therefore only set for a Redis broker.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from shared.config import Settings
from shared.queues import DEDICATED_QUEUE, PRIORITY_STEPS, SHARED_QUEUE, broker_priority

# Celery's hard limit is this much above the job timeout: the worker's own watchdog
# stops DuckDB at the timeout and records "timed out"; the hard kill is a last resort.
TIME_LIMIT_MARGIN_SECONDS = 60
# A message may wait reserved (prefetch, child replacement) before it starts.
VISIBILITY_SLACK_SECONDS = 300


def hard_time_limit(settings: Settings) -> int:
    return settings.job_timeout_seconds + TIME_LIMIT_MARGIN_SECONDS


def visibility_timeout(settings: Settings) -> int:
    return hard_time_limit(settings) + VISIBILITY_SLACK_SECONDS


_SIZE_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
               "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}
CHILD_MEMORY_HEADROOM_KIB = 512 * 1024  # Python, the store's driver, Parquet buffers
DEFAULT_CHILD_MEMORY_CAP_KIB = 4 * 1024 * 1024


def child_memory_cap_kib(settings: Settings) -> int:
    """RSS (KiB) above which a pool process is replaced after its current job: the DuckDB
    memory limit plus headroom (4 GiB when the limit is not a plain size, e.g. '80%')."""
    text = settings.duckdb_memory_limit.strip().upper().replace(" ", "")
    number = text.rstrip("KMGTIB")
    unit = text[len(number):]
    try:
        limit_bytes = float(number) * _SIZE_UNITS[unit]
    except (ValueError, KeyError):
        return DEFAULT_CHILD_MEMORY_CAP_KIB
    return int(limit_bytes // 1024) + CHILD_MEMORY_HEADROOM_KIB


def _queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def celery_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "broker_url": settings.celery_broker_url,
        "broker_connection_retry_on_startup": True,
        # No result backend: the jobs table is where results and states live.
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        # Pool queues (`dataplane.dedicated.<pool>`) are made on first use.
        "task_queues": (_queue(SHARED_QUEUE), _queue(DEDICATED_QUEUE)),
        "task_default_queue": SHARED_QUEUE,
        "task_create_missing_queues": True,
        "task_default_priority": broker_priority(0),
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_time_limit": hard_time_limit(settings),
        "task_soft_time_limit": None,
        # Jobs are long: take one message per free process, never a backlog.
        "worker_prefetch_multiplier": 1,
        # Recycle a child when it has grown (DuckDB's allocator keeps memory it freed), not
        # every N tasks: replacing a child stalls the next job by seconds (bench/latency.py
        # saw 1.3-5 s on the first job of each new child at 50 tasks per child).
        "worker_max_memory_per_child": child_memory_cap_kib(settings),
        "worker_max_tasks_per_child": 10_000,
        # A duplicate after a broker reconnect is a no-op (claim CAS); cancelling the
        # running copy would only throw work away.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # Flower: show each task (named RUN_JOB_TASK, kwargs job_id/job_type/cluster).
        "worker_send_task_events": True,
        "task_send_sent_event": True,
    }
    if settings.uses_redis:
        vt = visibility_timeout(settings)
        transport = {
            "visibility_timeout": vt,
            "priority_steps": PRIORITY_STEPS,
            "queue_order_strategy": "priority",
        }
        config.update(
            broker_transport_options=transport,
            result_backend_transport_options={"visibility_timeout": vt},
            visibility_timeout=vt,
            # Redis only (Celery 5.6+): reserve a message only when a process is free,
            # so nothing ages towards the visibility timeout in a prefetch buffer.
            worker_disable_prefetch=True,
        )
    return config


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    celery = Celery("dataplane")
    celery.conf.update(celery_config(settings))
    return celery


app = make_app()
