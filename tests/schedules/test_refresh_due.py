"""The scheduler's refresh duty with a fake clock: `refresh_due(store, now=...)` is called
with the instants a real scheduler would see, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from scheduler.schedules import RefreshSchedules, refresh_due
from shared.config import Settings
from shared.states import JobState
from shared.store import Store
from shared.store.models import RefreshSchedule
from shared.store.schedules import (
    SCHEDULE_SOURCE,
    FireOutcome,
    due_schedule,
    fire_schedule,
    refresh_key,
)
from tests.schedules.helpers import USER, refresh_jobs, schedule_of, scheduled_view, utc, view_job
from tests.store.helpers import force_state

NOW = utc(2026, 5, 4, 10, 17, 30)


def finish_all(store: Store, dataset_id: int) -> None:
    """The worker's part, for these tests: every refresh so far completed."""
    for job in refresh_jobs(store, dataset_id):
        if job.state != JobState.COMPLETED:
            force_state(store, job.id, JobState.COMPLETED)


def run_clock(store: Store, dataset_id: int, start: datetime, end: datetime,
              step: timedelta) -> list[datetime]:
    """Tick from `start` to `end`, completing refreshes as they appear; the slots run."""
    now = start
    while now <= end:
        refresh_due(store, now=now)
        finish_all(store, dataset_id)
        now += step
    return slots_of(store, dataset_id)


def slots_of(store: Store, dataset_id: int) -> list[datetime]:
    """The scheduled slot of each refresh job, read from its idempotency key."""
    return sorted(datetime.fromisoformat(j.idempotency_key.split(":", 2)[2].replace("Z", "+00:00"))
                  for j in refresh_jobs(store, dataset_id))


def test_nothing_before_the_slot_one_job_at_it(store: Store) -> None:
    scheduled_view(store, 10, "@hourly", now=NOW)
    assert refresh_due(store, now=utc(2026, 5, 4, 10, 59, 59)).fired == []
    report = refresh_due(store, now=utc(2026, 5, 4, 11, 0, 2))
    assert [f.outcome for f in report.fired] == [FireOutcome.CREATED]
    (job,) = refresh_jobs(store, 10)
    assert job.idempotency_key == "refresh:10:2026-05-04T11:00:00Z"
    assert (job.type, job.state, job.dataset_id, job.user_id) == ("materialize-view", "pending", 10, USER)
    assert job.request_source_type == SCHEDULE_SOURCE
    assert set(job.tags) == {"refresh", "dataset_id=10"}  # no refresh_type=full: incremental
    assert job.nql.startswith('CREATE MATERIALIZED VIEW "view_10"')
    schedule = schedule_of(store, 10)
    assert schedule is not None
    assert (schedule.next_run_at, schedule.last_scheduled_for) == (
        utc(2026, 5, 4, 12), utc(2026, 5, 4, 11))
    # The same instant again (a second scheduler, a restart): nothing new.
    assert refresh_due(store, now=utc(2026, 5, 4, 11, 0, 2)).fired == []
    assert len(refresh_jobs(store, 10)) == 1


@pytest.mark.parametrize("cron", ["@hourly", "@daily", "@weekly", "@monthly", "*/5 * * * *"])
def test_catch_up_after_a_gap_makes_exactly_one_job(store: Store, cron: str) -> None:
    scheduled_view(store, 10, cron, now=NOW)
    back = utc(2026, 9, 1, 12, 3)  # four months down
    report = refresh_due(store, now=back)
    assert [f.outcome for f in report.fired] == [FireOutcome.CREATED]
    assert len(refresh_jobs(store, 10)) == 1
    schedule = schedule_of(store, 10)
    assert schedule is not None and schedule.next_run_at is not None
    assert back < schedule.next_run_at  # the next slot after now: no second catch-up
    finish_all(store, 10)
    assert refresh_due(store, now=back + timedelta(seconds=30)).fired == []


def test_every_minute_for_an_hour_is_sixty_jobs(store: Store) -> None:
    scheduled_view(store, 10, "* * * * *", now=NOW)
    slots = run_clock(store, 10, utc(2026, 5, 4, 10, 18, 1), utc(2026, 5, 4, 11, 17, 59),
                      timedelta(seconds=20))
    assert len(slots) == 60 == len(set(slots))
    assert slots[0] == utc(2026, 5, 4, 10, 18) and slots[-1] == utc(2026, 5, 4, 11, 17)


def test_daily_on_new_york_fall_back_day_runs_once(store: Store) -> None:
    scheduled_view(store, 10, "30 1 * * *", now=utc(2026, 10, 31, 12), zone="America/New_York")
    slots = run_clock(store, 10, utc(2026, 10, 31, 12), utc(2026, 11, 2, 12), timedelta(minutes=5))
    assert slots == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_berlin_spring_forward_runs_the_skipped_time_once(store: Store) -> None:
    scheduled_view(store, 10, "30 2 * * *", now=utc(2026, 3, 28, 12), zone="Europe/Berlin")
    slots = run_clock(store, 10, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12), timedelta(minutes=5))
    assert slots == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]


def test_a_refresh_waits_for_the_previous_one(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    scheduled_view(store, 10, "@hourly", now=NOW)
    refresh_due(store, now=utc(2026, 5, 4, 11, 0, 1))
    (first,) = refresh_jobs(store, 10)
    force_state(store, first.id, JobState.RUNNING)
    with caplog.at_level(logging.WARNING, logger="scheduler.schedules"):
        report = refresh_due(store, now=utc(2026, 5, 4, 12, 0, 1))
    assert [(f.outcome, f.job_id) for f in report.fired] == [(FireOutcome.SKIPPED, first.id)]
    assert "skipped" in caplog.text and str(first.id) in caplog.text
    assert len(refresh_jobs(store, 10)) == 1
    # Skipped slots are not owed: the schedule moved on, and runs at the next one.
    assert schedule_of(store, 10).next_run_at == utc(2026, 5, 4, 13)  # type: ignore[union-attr]
    force_state(store, first.id, JobState.COMPLETED)
    refresh_due(store, now=utc(2026, 5, 4, 13, 0, 1))
    assert len(refresh_jobs(store, 10)) == 2


@pytest.mark.parametrize("state", [JobState.PENDING, JobState.PENDING_CANCELLATION])
def test_a_users_own_view_job_in_flight_also_blocks(store: Store, state: JobState) -> None:
    scheduled_view(store, 10, "@hourly", now=NOW)
    users = view_job(store, 10, schedule="@hourly")
    force_state(store, users.id, state)
    report = refresh_due(store, now=utc(2026, 5, 4, 11, 0, 1))
    assert [f.outcome for f in report.fired] == [FireOutcome.SKIPPED]
    assert refresh_jobs(store, 10) == []


def test_archived_and_pending_schedules_do_not_run(store: Store) -> None:
    scheduled_view(store, 10, "@hourly", now=NOW)
    scheduled_view(store, 11, "@hourly", now=NOW)
    with store.unit_of_work() as session:
        session.execute(update(RefreshSchedule).where(RefreshSchedule.dataset_id == 10)
                        .values(status="archived"))
        session.execute(update(RefreshSchedule).where(RefreshSchedule.dataset_id == 11)
                        .values(status="pending"))
    assert refresh_due(store, now=utc(2026, 5, 5)).fired == []


def test_two_schedulers_that_read_the_same_slot_make_one_job(store: Store) -> None:
    """Without row locks (SQLite), both may see the slot due: the compare-and-set on
    next_run_at lets one through, and the idempotency key would stop a second job anyway."""
    scheduled_view(store, 10, "@hourly", now=NOW)
    now = utc(2026, 5, 4, 11, 0, 1)
    with store.session_factory() as stale:
        seen = due_schedule(stale, now=now)  # scheduler B reads, then stalls
        assert seen is not None
        stale.expunge(seen)
        stale.rollback()
    refresh_due(store, now=now)  # scheduler A fires the slot
    with store.unit_of_work() as session:
        assert fire_schedule(session, seen, now=now).outcome == FireOutcome.LOST
    assert len(refresh_jobs(store, 10)) == 1


def test_a_slot_whose_job_exists_converges_on_it(store: Store) -> None:
    scheduled_view(store, 10, "@hourly", now=NOW)
    existing = view_job(store, 10, idempotency_key=refresh_key(10, utc(2026, 5, 4, 11)),
                        tags=("refresh", "dataset_id=10"))
    force_state(store, existing.id, JobState.COMPLETED)
    report = refresh_due(store, now=utc(2026, 5, 4, 11, 0, 1))
    assert [(f.outcome, f.job_id) for f in report.fired] == [(FireOutcome.EXISTED, existing.id)]
    assert len(refresh_jobs(store, 10)) == 1


def test_a_broken_schedule_does_not_stop_the_others(store: Store,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    scheduled_view(store, 10, "@hourly", now=NOW)
    scheduled_view(store, 11, "@hourly", now=NOW)
    with store.unit_of_work() as session:  # e.g. a zone a tzdata upgrade removed
        session.execute(update(RefreshSchedule).where(RefreshSchedule.dataset_id == 10)
                        .values(cron_zone_id="Gone/Away"))
    with caplog.at_level(logging.ERROR, logger="scheduler.schedules"):
        report = refresh_due(store, now=utc(2026, 5, 4, 11, 0, 1))
    assert report.failed == [10]
    assert [(f.dataset_id, f.outcome) for f in report.fired] == [(11, FireOutcome.CREATED)]
    assert "dataset 10" in caplog.text


def test_the_duty_uses_its_clock_and_interval(store: Store, settings: Settings) -> None:
    scheduled_view(store, 10, "@hourly", now=NOW)
    settings.schedule_interval_seconds = 0.5
    duty = RefreshSchedules(store, settings, clock=lambda: utc(2026, 5, 4, 11, 0, 1))
    assert (duty.name, duty.interval, duty.on_nudge) == ("refresh-schedules", 0.5, False)
    duty.run()
    assert len(refresh_jobs(store, 10)) == 1
