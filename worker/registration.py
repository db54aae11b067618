"""A worker's registration row: how the dispatcher learns which queues have how many
worker processes (admission control, scheduler/admission.py).

The Celery main process upserts `workers(name, queue, concurrency, last_seen)` every
`worker_registration_seconds` from a daemon thread started once the pool is up
(`worker_ready`, so no pool child is forked while it is being set up) and deletes the
row on a clean shutdown; a killed worker simply stops being seen and drops out after
`worker_ttl_seconds`. The thread uses a pool-less engine: no connection stays open to
be inherited by a pool child forked later, and a store outage only delays the beats.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from shared.config import Settings
from shared.nudge import nudge_dispatcher
from shared.store.db import make_engine, make_session_factory, unit_of_work
from shared.store.fairshare import prune_workers, register_worker, unregister_worker

log = logging.getLogger(__name__)
_PRUNE_AFTER = timedelta(days=1)  # rows of workers killed without a goodbye


class Registration:
    def __init__(self, settings: Settings, *, name: str, queue: str, concurrency: int) -> None:
        self.settings = settings
        self.name, self.queue, self.concurrency = name, queue, concurrency
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine = make_engine(settings.store_url, poolclass=NullPool)
        self._sessions = make_session_factory(self._engine)

    def _write(self, action: Any) -> bool:
        try:
            with unit_of_work(self._sessions) as session:
                action(session)
            return True
        except Exception as error:  # the store may be down: try again next beat
            log.warning("worker registration failed: %s", error)
            return False

    def beat(self) -> bool:
        return self._write(lambda s: register_worker(
            s, name=self.name, queue=self.queue, concurrency=self.concurrency))

    def _run(self) -> None:
        self._write(lambda s: prune_workers(s, older_than=_PRUNE_AFTER))
        if self.beat():
            nudge_dispatcher(self.settings)  # new capacity: admit jobs now
        while not self._stop.wait(self.settings.worker_registration_seconds):
            self.beat()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dataplane-registration",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

        def gone(session: Session) -> None:
            unregister_worker(session, self.name)

        self._write(gone)
        self._engine.dispose()


def install(settings: Settings, *, name: str, queue: str, concurrency: int) -> Registration:
    """Register with the Celery worker's lifecycle signals (main process only)."""
    registration = Registration(settings, name=name, queue=queue, concurrency=concurrency)

    def ready(**_: Any) -> None:
        registration.start()

    def shutdown(**_: Any) -> None:
        registration.stop()

    worker_ready.connect(ready, weak=False)
    worker_shutdown.connect(shutdown, weak=False)
    return registration
