"""The refresh-schedule duty: every `schedule_interval_seconds`, make the refresh job of
each due schedule (shared/store/schedules.py has the rules; this is the loop around them).

Each schedule is fired in a transaction of its own, so one broken schedule (say, a zone
the tz database no longer knows) is logged and left for the next turn while the others
still run. The clock is injected: tests drive `refresh_due` with a fake `now`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from shared.config import Settings
from shared.nudge import nudge_dispatcher
from shared.store import Store
from shared.store.schedules import Fired, FireOutcome, due_schedule, fire_schedule
from shared.store.types import utcnow
from shared.wire import iso

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass
class RefreshReport:
    fired: list[Fired] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # dataset ids whose firing raised

    def of(self, outcome: FireOutcome) -> list[Fired]:
        return [f for f in self.fired if f.outcome == outcome]


def _log(fired: Fired, now: datetime) -> None:
    late = (now - fired.slot).total_seconds()
    if fired.outcome == FireOutcome.SKIPPED:
        log.warning("refresh of dataset %s for %s skipped: job %s is still pending or running "
                    "(next run %s)", fired.dataset_id, iso(fired.slot), fired.job_id,
                    iso(fired.next_run_at))
    elif fired.outcome == FireOutcome.CREATED:
        log.info("refresh of dataset %s for %s: job %s (%.0fs late; next run %s)",
                 fired.dataset_id, iso(fired.slot), fired.job_id, late, iso(fired.next_run_at))
    else:
        log.info("refresh of dataset %s for %s: %s", fired.dataset_id, iso(fired.slot),
                 fired.outcome.value)


def refresh_due(store: Store, *, now: datetime, limit: int = 500) -> RefreshReport:
    """Fire every schedule due at `now` (at most `limit` per call; the rest next turn)."""
    report = RefreshReport()
    for _ in range(limit):
        current: int | None = None
        try:
            with store.unit_of_work() as session:
                schedule = due_schedule(session, now=now, exclude=frozenset(report.failed))
                if schedule is None:
                    break
                current = schedule.dataset_id
                fired = fire_schedule(session, schedule, now=now)
        except Exception:
            if current is None:
                raise  # the store itself failed: the runner logs it and retries
            log.exception("refresh schedule of dataset %s failed; retrying next turn", current)
            report.failed.append(current)
            continue
        _log(fired, now)
        report.fired.append(fired)
    return report


class RefreshSchedules:
    """A scheduler duty (scheduler/runner.py's `Duty`)."""

    name = "refresh-schedules"
    on_nudge = False

    def __init__(self, store: Store, settings: Settings, *, clock: Clock = utcnow) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.interval = settings.schedule_interval_seconds

    def run(self) -> None:
        report = refresh_due(self.store, now=self.clock())
        if report.of(FireOutcome.CREATED):
            nudge_dispatcher(self.settings)  # publish the new jobs now, not on the next sweep
