"""The Celery side of publishing: a producer-only Celery app and the Publisher on it.

The app is built from `shared.celery_app.celery_config(settings)`, so queues, priority
steps and serialization are exactly what the workers use, plus what only a producer
inside a loop needs: socket timeouts on the broker connection (kombu's Redis transport
waits forever by default, so a broker that vanished without closing its TCP connection
would hang the dispatcher) and a short, bounded retry. It registers no task and
imports no worker code: the task is sent by name.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from scheduler.publisher import PublishFailed, RunJobMessage
from shared.celery_app import celery_config
from shared.config import Settings
from shared.queues import RUN_JOB_TASK

log = logging.getLogger(__name__)


def producer_app(settings: Settings) -> Celery:
    config: dict[str, Any] = celery_config(settings)
    timeout = settings.publish_timeout_seconds
    config["broker_connection_timeout"] = timeout
    if settings.uses_redis:
        config["broker_transport_options"] = {
            **config.get("broker_transport_options", {}),
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
        }
    app = Celery("dataplane-dispatcher", set_as_current=False)
    app.conf.update(config)
    return app


class CeleryPublisher:
    def __init__(self, app: Celery, *, timeout: float) -> None:
        self.app = app
        # One quick retry absorbs a dropped pooled connection (a broker restart); a
        # broker that is really down fails within about two connect timeouts.
        self._retry_policy = {"max_retries": 1, "interval_start": 0.0,
                              "interval_step": min(0.2, timeout), "interval_max": 0.2}

    @classmethod
    def from_settings(cls, settings: Settings) -> CeleryPublisher:
        return cls(producer_app(settings), timeout=settings.publish_timeout_seconds)

    def publish(self, message: RunJobMessage) -> None:
        try:
            self.app.send_task(
                RUN_JOB_TASK, kwargs=message.kwargs, queue=message.queue,
                priority=message.broker_priority, retry=True,
                retry_policy=self._retry_policy)
        except Exception as error:  # any failure: the job stays owed for the next sweep
            raise PublishFailed(f"publishing job {message.job_id} failed: {error}") from error

    def close(self) -> None:
        self.app.close()
