"""The dispatcher publishing through Celery to the real Redis: routing keys, priority
steps, a dead broker, and noticing that Redis lost its queues."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from scheduler.broker_watch import RedisBrokerWatch
from scheduler.dispatcher import Dispatcher
from scheduler.producer import CeleryPublisher
from shared.config import Settings
from shared.queues import DEDICATED_QUEUE, RUN_JOB_TASK, SHARED_QUEUE, pool_queue
from shared.store import Store
from tests.scheduler.helpers import get, new_job
from tests.scheduler.redis_server import PrivateRedis

SEP = "\x06\x16"  # kombu's separator of priority sub-queues


def queued(client: redis.Redis, key: str) -> list[dict[str, Any]]:
    # LPUSH + BRPOP: the oldest message is at the right end.
    return [json.loads(raw) for raw in reversed(client.lrange(key, 0, -1))]


def test_sweep_publishes_to_the_routed_queue_and_priority_step(
        store: Store, private_redis: PrivateRedis, data_dir: Path) -> None:
    redis_url = private_redis.url
    settings = Settings(data_dir=data_dir, broker_url=redis_url, fair_share=False)
    pool = uuid.uuid4()
    urgent = new_job(store, priority=2)
    normal = new_job(store)
    low = new_job(store, priority=-2)
    dedicated = new_job(store, execution_cluster="dedicated", priority=1)
    pooled = new_job(store, execution_cluster="dedicated", compute_pool_id=pool)
    publisher = CeleryPublisher.from_settings(settings)
    try:
        Dispatcher(settings=settings, store=store, publisher=publisher, actor="d").sweep()
    finally:
        publisher.close()

    client = redis.Redis.from_url(redis_url)
    # Redis serves sub-queue keys in this order: step 0 (priority 2) first.
    [message] = queued(client, SHARED_QUEUE)
    assert message["headers"]["task"] == RUN_JOB_TASK
    body = json.loads(base64.b64decode(message["body"]))
    assert body[1] == {"job_id": str(urgent), "job_type": "nql-forecast", "cluster": "shared"}
    assert [m["properties"]["priority"] for m in queued(client, SHARED_QUEUE + SEP + "5")] == [5]
    assert len(queued(client, SHARED_QUEUE + SEP + "9")) == 1
    assert len(queued(client, DEDICATED_QUEUE + SEP + "3")) == 1
    assert len(queued(client, pool_queue(pool) + SEP + "5")) == 1
    for job_id in (urgent, normal, low, dedicated, pooled):
        assert get(store, job_id).published_at is not None


def test_dead_broker_fails_fast_and_the_job_stays_owed(store: Store, data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, broker_url="redis://127.0.0.1:1/0", fair_share=False,
                        publish_timeout_seconds=1)
    job_id = new_job(store)
    publisher = CeleryPublisher.from_settings(settings)
    try:
        started = time.monotonic()
        result = Dispatcher(settings=settings, store=store, publisher=publisher,
                            actor="d").sweep()
        assert time.monotonic() - started < 5
    finally:
        publisher.close()
    assert result.broker_failed and result.published == []
    assert get(store, job_id).published_at is None


def test_broker_watch_notices_a_flush_and_a_restart(private_redis: PrivateRedis) -> None:
    watch = RedisBrokerWatch(private_redis.url, timeout=1, min_interval=0)
    try:
        assert watch.lost_messages()      # no marker yet: assume the worst
        watch.acknowledge()
        assert not watch.lost_messages()

        redis.Redis.from_url(private_redis.url).flushdb()
        assert watch.lost_messages()
        watch.acknowledge()
        assert not watch.lost_messages()

        private_redis.stop()
        assert not watch.lost_messages()  # unreachable: nothing to tell (publish fails)
        private_redis.start()
        assert watch.lost_messages()      # restarted empty
        watch.acknowledge()
        assert not watch.lost_messages()
    finally:
        watch.close()
