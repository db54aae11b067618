"""The baseline: bare Celery on the same Redis, configured like ours (late ack, one message
per free process, prefork, JSON), running a no-op task that counts itself in Redis.

    celery -A bench.bare_celery worker --concurrency 1 --queues bare   (started by the benches)
"""

from __future__ import annotations

import os

import redis
from celery import Celery

BROKER = os.environ.get("BARE_BROKER_URL", "redis://127.0.0.1:6379/15")
COUNTER = "bare:done"

app = Celery("bare", broker=BROKER, backend=os.environ.get("BARE_BACKEND_URL") or None)
app.conf.update(
    task_serializer="json", accept_content=["json"], task_acks_late=True, task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1, worker_disable_prefetch=True, task_default_queue="bare",
    task_ignore_result=not os.environ.get("BARE_BACKEND_URL"),
    broker_transport_options={"priority_steps": [0, 3, 5, 7, 9], "queue_order_strategy": "priority"},
)
_counter: redis.Redis | None = None


@app.task(name="bare.noop")
def noop(index: int) -> int:
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(BROKER)
    _counter.incr(COUNTER)
    return index
