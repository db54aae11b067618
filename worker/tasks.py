"""The Celery task: a thin adapter from a broker message to `worker.execute.run_job`.

The message's kwargs (`job_id`, `job_type`, `cluster`) are informative (Flower shows
them); only `job_id` is used, and the job row, not the message, decides what runs.
Each pool process makes its own Store after the fork (engines must not cross a fork).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

from celery import Task
from celery.signals import worker_process_init

from shared.celery_app import app
from shared.config import Settings
from shared.nudge import nudge_dispatcher
from shared.queues import RUN_JOB_TASK
from shared.store import Store
from worker import shutdown
from worker.cache import DataFiles
from worker.execute import run_job
from worker.sandbox import make_spare

log = logging.getLogger(__name__)
STORE_RETRY_MAX_SECONDS = 60


@dataclass
class _Process:
    pid: int
    settings: Settings
    store: Store
    files: DataFiles


_process: _Process | None = None


def process_context() -> _Process:
    global _process
    if _process is None or _process.pid != os.getpid():
        settings = Settings()
        settings.ensure_dirs()
        _process = _Process(os.getpid(), settings, Store.from_settings(settings),
                            DataFiles.from_settings(settings))
    return _process


@worker_process_init.connect
def _fresh_process(**_: Any) -> None:
    global _process
    _process = None  # never reuse the parent's pooled database connections
    shutdown.install()
    make_spare(process_context().settings)


@app.task(name=RUN_JOB_TASK, bind=True, max_retries=None, ignore_result=True)
def run_job_task(self: Task, job_id: str, job_type: str | None = None,
                 cluster: str | None = None) -> str:
    context = process_context()
    executor = f"{self.request.hostname or 'worker'}/{os.getpid()}"
    try:
        outcome = run_job(context.store, context.settings, uuid.UUID(job_id), executor=executor,
                          files=context.files)
        if context.settings.fair_share:
            nudge_dispatcher(context.settings)  # a slot is free: admit the next job now
        make_spare(context.settings)
    except Exception as error:
        # Only the claim can get here (after it, run_job records every outcome): the store is
        # unreachable. Try the message again later rather than drop it.
        countdown = min(2 ** (self.request.retries or 0), STORE_RETRY_MAX_SECONDS)
        log.warning("job %s: cannot claim (%s); retrying in %ss", job_id, error, countdown)
        raise self.retry(exc=error, countdown=countdown) from error
    return str(outcome)
