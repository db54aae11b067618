"""Wiring of `dataplane scheduler`: the store, the producer, the nudge listener and the
duties, run by one Runner until SIGINT/SIGTERM.

To add a periodic duty (refresh schedules, cleanup...), build it in `build_duties`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from scheduler.broker_watch import RedisBrokerWatch
from scheduler.dispatcher import Dispatcher
from scheduler.liveness import Liveness
from scheduler.orphans import OrphanFiles
from scheduler.producer import CeleryPublisher
from scheduler.publisher import Publisher
from scheduler.reaper import Reaper
from scheduler.result_exports import ResultExports
from scheduler.result_ttl import ResultTtl
from scheduler.retention import Retention
from scheduler.runner import Duty, Runner
from scheduler.schedules import RefreshSchedules
from scheduler.webhooks import WebhookRelay
from shared.config import Settings
from shared.nudge import NudgeListener
from shared.storage import Storage
from shared.store import Store

log = logging.getLogger(__name__)


def actor_name(role: str) -> str:
    """Who made a transition, as the transition log shows it."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


def build_duties(settings: Settings, store: Store, publisher: Publisher) -> list[Duty]:
    watch = None
    if settings.uses_redis:
        watch = RedisBrokerWatch(settings.celery_broker_url,
                                 timeout=settings.publish_timeout_seconds,
                                 min_interval=settings.dispatch_interval_seconds)
    duties: list[Duty] = [
        Dispatcher(settings=settings, store=store, publisher=publisher,
                   actor=actor_name("dispatcher"), broker_watch=watch),
        Reaper(settings=settings, store=store, actor=actor_name("reaper")),
        RefreshSchedules(store, settings),
        OrphanFiles(settings=settings, store=store, storage=Storage.from_settings(settings)),
        ResultTtl(settings=settings, store=store, storage=Storage.from_settings(settings)),
        ResultExports(settings=settings, store=store, actor=actor_name("result-exports")),
        WebhookRelay(settings=settings, store=store),
        Retention(settings=settings, store=store, storage=Storage.from_settings(settings)),
    ]
    if settings.scheduler_liveness_file is not None:
        duties.append(Liveness(settings.scheduler_liveness_file))
    return duties


@contextmanager
def _stop_on_signals(runner: Runner) -> Iterator[None]:
    def handle(signum: int, _frame: object) -> None:
        if runner.stopping:
            raise KeyboardInterrupt  # a second signal: stop now, mid-duty
        log.info("%s received, stopping after the current duty", signal.Signals(signum).name)
        runner.stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_scheduler(settings: Settings, *, once: bool = False) -> None:
    store = Store.from_settings(settings)
    publisher = CeleryPublisher.from_settings(settings)
    try:
        duties = build_duties(settings, store, publisher)
        if once:
            # No listener: a running scheduler may hold the nudge socket.
            Runner(duties, waiter=_NoNudges()).run_once()
            return
        with NudgeListener(settings) as listener:
            runner = Runner(duties, listener)
            log.info("scheduler running: %s; broker %s; store %s",
                     ", ".join(f"{d.name} every {d.interval:g}s" for d in duties),
                     _redacted(settings.celery_broker_url), _redacted(settings.store_url))
            with _stop_on_signals(runner):
                runner.run_forever()
            log.info("scheduler stopped")
    finally:
        publisher.close()
        store.dispose()


class _NoNudges:
    def wait(self, timeout: float) -> bool:
        time.sleep(timeout)
        return False


def _redacted(url: str) -> str:
    """A URL for the log, without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
