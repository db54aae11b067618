"""`GET /healthz`: can this process reach the jobs store and the broker, within a deadline.

Each probe runs in a thread of a small pool and is given `CHECK_TIMEOUT_SECONDS`: an
unreachable host (a dropped SYN) must not hang the health check itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from sqlalchemy import create_engine, text

from shared.config import Settings
from shared.store import Store

CHECK_TIMEOUT_SECONDS = 2.0
# Bounded: probes stuck on a dead host occupy at most this many threads.
_probes = ThreadPoolExecutor(max_workers=4, thread_name_prefix="healthz")


def probe_store(store: Store) -> None:
    with store.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def probe_broker(settings: Settings) -> None:
    url = settings.celery_broker_url
    if settings.uses_redis:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=CHECK_TIMEOUT_SECONDS,
                                      socket_connect_timeout=CHECK_TIMEOUT_SECONDS)
        try:
            client.ping()
        finally:
            client.close()
    elif url.startswith("sqla+"):
        # The embedded broker (kombu's SQLAlchemy transport): its database must answer.
        engine = create_engine(url.removeprefix("sqla+"))
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    else:
        from kombu import Connection

        with Connection(url, connect_timeout=CHECK_TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1)


def _timed(probe: Callable[..., None], *args: Any) -> float:
    started = time.monotonic()
    probe(*args)
    return (time.monotonic() - started) * 1000


def _outcome(future: Future[float], deadline: float) -> dict[str, Any]:
    try:
        latency_ms = future.result(timeout=max(0.0, deadline - time.monotonic()))
        return {"ok": True, "detail": "ok", "latency_ms": round(latency_ms, 1)}
    except FutureTimeout:
        detail = f"no answer within {CHECK_TIMEOUT_SECONDS:g}s"
    except Exception as e:  # failing to reach it is the answer, not an error of ours
        detail = f"{type(e).__name__}: {e}"[:300]
    return {"ok": False, "detail": detail, "latency_ms": None}


def health(settings: Settings, store: Store) -> dict[str, Any]:
    """Both probes at once, so the whole check takes at most one timeout."""
    deadline = time.monotonic() + CHECK_TIMEOUT_SECONDS
    futures = {"store": _probes.submit(_timed, probe_store, store),
               "broker": _probes.submit(_timed, probe_broker, settings)}
    checks = {name: _outcome(future, deadline) for name, future in futures.items()}
    status = "ok" if all(c["ok"] for c in checks.values()) else "unavailable"
    return {"status": status, "checks": checks}
