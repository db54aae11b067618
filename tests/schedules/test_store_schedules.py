"""Refresh schedules on the store (SQLite and PostgreSQL): what a completed view job
records, what PUT/DELETE change, and what the scheduler's due check does, with a fake
clock passed in as `now`."""

from __future__ import annotations

import logging
import uuid

import pytest

from shared.errors import InvalidRequest
from shared.states import JobState
from shared.store import Store
from shared.store.datasets import create_dataset, get_dataset
from shared.store.models import RefreshSchedule
from shared.store.schedules import (
    ScheduleChange,
    ScheduleStatus,
    archive_schedule,
    put_schedule,
    record_view_schedule,
    refresh_now,
    schedule_to_wire,
)
from tests.schedules.helpers import (
    COMPANY,
    USER,
    make_view,
    schedule_of,
    scheduled_view,
    utc,
    view_job,
)
from tests.store.helpers import force_state

NOW = utc(2026, 5, 4, 10, 17, 30)


def record(store: Store, dataset_id: int, job_schedule: str | None, *, stored: str | None = None,
           now=NOW, **job_fields: object) -> RefreshSchedule | None:
    """A view job completes: the worker records its REFRESH_SCHEDULE (`stored` overrides
    what the NQL text says, to test what the worker passes)."""
    job = view_job(store, dataset_id, schedule=job_schedule, **job_fields)
    with store.unit_of_work() as session:
        return record_view_schedule(
            session, dataset_id=dataset_id, job=job,
            refresh_schedule=stored if stored is not None else job_schedule, now=now)


def put(store: Store, dataset_id: int, now=NOW, **change: object) -> RefreshSchedule:
    with store.unit_of_work() as session:
        return put_schedule(session, dataset=get_dataset(session, dataset_id), user_id=USER,
                            change=ScheduleChange(**change), now=now)  # type: ignore[arg-type]


# --- what a completed view job records ------------------------------------------------


def test_a_completed_view_stores_its_schedule_active(store: Store) -> None:
    make_view(store, 10)
    pool = uuid.uuid4()
    schedule = record(store, 10, "@hourly", execution_cluster="dedicated", compute_pool_id=pool,
                      stats_enabled=False)
    assert schedule is not None
    assert (schedule.cron, schedule.cron_zone_id, schedule.status) == ("@hourly", "UTC", "active")
    assert schedule.next_run_at == utc(2026, 5, 4, 11)
    assert (schedule.execution_cluster, schedule.compute_pool_id, schedule.stats_enabled) == (
        "dedicated", pool, False)
    assert "REFRESH_SCHEDULE='@hourly'" in schedule.nql
    assert (schedule.company_id, schedule.user_id) == (COMPANY, USER)


def test_once_is_stored_pending_with_no_next_run(store: Store) -> None:
    make_view(store, 10)
    schedule = record(store, 10, None)
    assert schedule is not None
    assert (schedule.cron, schedule.status, schedule.next_run_at) == ("@once", "pending", None)


def test_a_refresh_job_does_not_redefine_the_schedule(store: Store) -> None:
    scheduled_view(store, 10, "0 * * * *", now=NOW, zone="Europe/Berlin")
    before = schedule_to_wire(schedule_of(store, 10))
    job = view_job(store, 10, schedule="@daily", tags=("refresh", "dataset_id=10"))
    with store.unit_of_work() as session:
        record_view_schedule(session, dataset_id=10, job=job, refresh_schedule="@daily",
                             now=utc(2026, 5, 4, 12))
    assert schedule_to_wire(schedule_of(store, 10)) == before


def test_resubmitting_the_same_view_keeps_the_slot_and_the_zone(store: Store) -> None:
    scheduled_view(store, 10, "@daily", now=NOW, zone="America/New_York")
    slot = schedule_of(store, 10).next_run_at  # type: ignore[union-attr]
    schedule = record(store, 10, "@daily", now=utc(2026, 5, 4, 20))
    assert schedule is not None
    assert (schedule.cron_zone_id, schedule.next_run_at) == ("America/New_York", slot)
    # A different schedule in the new submission wins, in the zone the user chose.
    schedule = record(store, 10, "30 6 * * *", now=utc(2026, 5, 4, 20))
    assert schedule is not None
    assert schedule.next_run_at == utc(2026, 5, 5, 10, 30)  # 06:30 EDT


def test_resubmitting_an_archived_view_with_a_schedule_reactivates_it(store: Store) -> None:
    scheduled_view(store, 10, "@daily", now=NOW)
    with store.unit_of_work() as session:
        archive_schedule(session, dataset_id=10)
    schedule = record(store, 10, "@daily")
    assert schedule is not None and schedule.status == "active"


def test_an_invalid_schedule_at_completion_is_logged_not_raised(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    make_view(store, 10)
    with caplog.at_level(logging.WARNING, logger="shared.store.schedules"):
        assert record(store, 10, "@hourly", stored="61 * * * *") is None
    assert "out of range" in caplog.text
    assert schedule_of(store, 10) is None


# --- PUT and DELETE -------------------------------------------------------------------------


def test_put_creates_from_the_views_nql_and_validates(store: Store) -> None:
    make_view(store, 10, schedule="@daily")
    schedule = put(store, 10, cron="*/10 * * * *", cron_zone_id="Europe/Berlin")
    assert (schedule.status, schedule.next_run_at) == ("active", utc(2026, 5, 4, 10, 20))
    assert "REFRESH_SCHEDULE='@daily'" in schedule.nql
    with pytest.raises(InvalidRequest, match="out of range"):
        put(store, 10, cron="0 25 * * *")
    with pytest.raises(InvalidRequest, match="not a known time zone"):
        put(store, 10, cron_zone_id="Nowhere/Land")
    with pytest.raises(InvalidRequest, match="never runs on its own"):
        put(store, 10, cron="@once")
    with pytest.raises(InvalidRequest, match="goes with execution_cluster 'dedicated'"):
        put(store, 10, compute_pool_id=uuid.uuid4())
    assert schedule_of(store, 10).cron == "*/10 * * * *"  # type: ignore[union-attr]


def test_put_needs_a_view_and_a_cron(store: Store) -> None:
    with store.unit_of_work() as session:
        create_dataset(session, company_id=COMPANY, name="imported", schema=[["a", "BIGINT"]],
                       dataset_id=11)
    with pytest.raises(InvalidRequest, match="not a materialized view"):
        put(store, 11, cron="@daily")
    make_view(store, 12)
    with pytest.raises(InvalidRequest, match="cron is required"):
        put(store, 12, status=ScheduleStatus.ACTIVE)


def test_put_keeps_the_slot_unless_the_timing_changes(store: Store) -> None:
    make_view(store, 10)
    put(store, 10, cron="@daily")
    later = utc(2026, 5, 4, 23)
    assert put(store, 10, now=later, stats_enabled=False).next_run_at == utc(2026, 5, 5)
    assert put(store, 10, now=later, cron="@hourly").next_run_at == utc(2026, 5, 5)
    paused = put(store, 10, now=later, status=ScheduleStatus.PENDING)
    assert paused.next_run_at is None
    # Reactivated two days on: the next slot after now, not a run for each missed one.
    resumed = put(store, 10, now=utc(2026, 5, 6, 7, 30), status=ScheduleStatus.ACTIVE)
    assert resumed.next_run_at == utc(2026, 5, 6, 8)


def test_delete_archives(store: Store) -> None:
    scheduled_view(store, 10, "* * * * *", now=NOW)
    with store.unit_of_work() as session:
        archive_schedule(session, dataset_id=10)
    schedule = schedule_of(store, 10)
    assert schedule is not None
    assert (schedule.status, schedule.next_run_at) == ("archived", None)


# --- run now -------------------------------------------------------------------------------


def test_refresh_now_makes_a_tagged_job_or_returns_the_one_in_flight(store: Store) -> None:
    scheduled_view(store, 10, "@daily", now=NOW)
    with store.unit_of_work() as session:
        job, created = refresh_now(session, dataset=get_dataset(session, 10), user_id=99)
    assert created
    assert (job.type, job.dataset_id, job.user_id, job.request_source_type) == (
        "materialize-view", 10, 99, "api_user")
    assert set(job.tags) == {"refresh", "dataset_id=10"}
    with store.unit_of_work() as session:
        again, created = refresh_now(session, dataset=get_dataset(session, 10), user_id=99)
    assert (again.id, created) == (job.id, False)
    force_state(store, job.id, JobState.COMPLETED)
    with store.unit_of_work() as session:
        third, created = refresh_now(session, dataset=get_dataset(session, 10), user_id=99,
                                     execution_cluster="dedicated")
    assert created and third.execution_cluster == "dedicated"


def test_refresh_now_of_a_view_without_schedule_uses_its_nql(store: Store) -> None:
    make_view(store, 10, schedule="@once")
    with store.unit_of_work() as session:
        job, created = refresh_now(session, dataset=get_dataset(session, 10), user_id=USER)
    assert created and job.nql.startswith('CREATE MATERIALIZED VIEW "view_10"')


def test_wire_shape(store: Store) -> None:
    scheduled_view(store, 10, "@hourly", now=NOW, zone="Europe/Berlin")
    wire = schedule_to_wire(schedule_of(store, 10))
    assert wire is not None
    assert {k: wire[k] for k in ("dataset_id", "cron", "cron_zone_id", "status", "next_run_at",
                                 "execution_cluster", "stats_enabled", "last_scheduled_for")} == {
        "dataset_id": 10, "cron": "@hourly", "cron_zone_id": "Europe/Berlin", "status": "active",
        "next_run_at": "2026-05-04T11:00:00Z", "execution_cluster": "shared",
        "stats_enabled": True, "last_scheduled_for": None}
    assert schedule_to_wire(None) is None
