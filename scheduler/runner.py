"""The scheduler's loop: a list of duties, each run every `interval` seconds, and the
ones marked `on_nudge` also as soon as a nudge arrives.

A new periodic duty (refresh schedules, cleanup...) is one more object with a
`name`, an `interval`, `on_nudge` and `run()`, added to the list in service.py. Duties
run one at a time on this thread: each is a short database transaction or a bounded
publish, and one thread keeps their effects ordered. A duty that raises is logged and
run again on its next turn; the loop itself only stops when asked to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger(__name__)


class Duty(Protocol):
    name: str
    interval: float  # seconds between two runs
    on_nudge: bool  # also run when the dispatcher is nudged

    def run(self) -> None: ...


class Waiter(Protocol):
    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True when woken by a nudge."""


class Runner:
    def __init__(self, duties: Sequence[Duty], waiter: Waiter, *,
                 max_wait: float = 0.25) -> None:
        self.duties = list(duties)
        self.waiter = waiter
        # Waits are cut into slices this long so stop() takes effect promptly.
        self.max_wait = max_wait
        self._stop = threading.Event()
        self._failures = {duty.name: 0 for duty in self.duties}

    def stop(self) -> None:
        """Safe from a signal handler: the loop ends after the current duty."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run_once(self) -> None:
        for duty in self.duties:
            self._run(duty)

    def run_forever(self) -> None:
        due = {duty.name: 0.0 for duty in self.duties}  # everything runs at start
        while not self._stop.is_set():
            for duty in self.duties:
                if self._stop.is_set():
                    return
                if time.monotonic() >= due[duty.name]:
                    self._run(duty)
                    due[duty.name] = time.monotonic() + duty.interval
            wait = min(due.values()) - time.monotonic()
            if wait > 0 and self.waiter.wait(min(wait, self.max_wait)):
                for duty in self.duties:
                    if duty.on_nudge:
                        due[duty.name] = 0.0

    def _run(self, duty: Duty) -> None:
        try:
            duty.run()
        except Exception:
            failures = self._failures[duty.name] = self._failures[duty.name] + 1
            # A store outage fails every turn: one traceback, then a line now and then.
            if failures == 1:
                log.exception("%s failed; retrying every %.1fs", duty.name, duty.interval)
            elif failures % 30 == 0:
                log.warning("%s still failing (%d times in a row)", duty.name, failures)
        else:
            if self._failures[duty.name]:
                log.warning("%s recovered after %d failure(s)", duty.name,
                            self._failures[duty.name])
            self._failures[duty.name] = 0
