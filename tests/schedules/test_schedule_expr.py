"""Schedule expressions: validation messages and due times, driven by explicit `after`
instants (a fake clock), never by sleeping. DST cases use real 2026 transitions:
America/New_York springs forward 2026-03-08 02:00 and falls back 2026-11-01 02:00;
Europe/Berlin springs forward 2026-03-29 02:00 and falls back 2026-10-25 03:00."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import InvalidRequest
from shared.schedule_expr import (
    InvalidSchedule,
    next_run_after,
    next_runs,
    parse_schedule,
    validate_schedule,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("@hourly", utc(2026, 5, 4, 10, 17), [utc(2026, 5, 4, 11), utc(2026, 5, 4, 12)]),
    ("@daily", utc(2026, 5, 4, 10, 17), [utc(2026, 5, 5), utc(2026, 5, 6)]),
    # 2026-05-04 is a Monday: @weekly is Sunday midnight.
    ("@weekly", utc(2026, 5, 4, 10, 17), [utc(2026, 5, 10), utc(2026, 5, 17)]),
    ("@monthly", utc(2026, 5, 4, 10, 17), [utc(2026, 6, 1), utc(2026, 7, 1)]),
    ("*/15 * * * *", utc(2026, 5, 4, 10, 17), [utc(2026, 5, 4, 10, 30), utc(2026, 5, 4, 10, 45)]),
    ("0 12 * * 1-5", utc(2026, 5, 8, 13), [utc(2026, 5, 11, 12), utc(2026, 5, 12, 12)]),
    ("30 6 1,15 * *", utc(2026, 5, 4), [utc(2026, 5, 15, 6, 30), utc(2026, 6, 1, 6, 30)]),
    ("* * * * *", utc(2026, 5, 4, 10, 17, 42), [utc(2026, 5, 4, 10, 18), utc(2026, 5, 4, 10, 19)]),
])
def test_due_times_in_utc(expr: str, after: datetime, expected: list[datetime]) -> None:
    assert next_runs(parse_schedule(expr), after, 2) == expected


def test_a_slot_is_strictly_after_now() -> None:
    schedule = parse_schedule("@hourly")
    assert next_run_after(schedule, utc(2026, 5, 4, 11)) == utc(2026, 5, 4, 12)


def test_once_never_runs_on_its_own() -> None:
    once = parse_schedule(None)
    assert once.expr == "@once" and not once.recurring
    assert next_run_after(once, utc(2026, 1, 1)) is None
    assert parse_schedule("@ONCE").expr == "@once"


def test_shorthands_are_case_insensitive_and_spacing_is_normalised() -> None:
    assert parse_schedule(" @Daily ").expr == "@daily"
    assert parse_schedule("0   12 * *  1-5").expr == "0 12 * * 1-5"


def test_a_zone_shifts_due_times() -> None:
    schedule = parse_schedule("@daily", "America/New_York")
    # Midnight in New York in May is 04:00 UTC (EDT, UTC-4).
    assert next_run_after(schedule, utc(2026, 5, 4, 10)) == utc(2026, 5, 5, 4)


# --- daylight saving -------------------------------------------------------------------


def test_new_york_spring_forward_nonexistent_time_runs_once_right_after_the_jump() -> None:
    schedule = parse_schedule("30 2 * * *", "America/New_York")
    runs = next_runs(schedule, utc(2026, 3, 7, 12), 3)
    # 03-07 02:30 EST; 03-08 02:30 does not exist -> 03:00 EDT (07:00 UTC); then EDT.
    assert runs == [utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30), utc(2026, 3, 10, 6, 30)]


def test_berlin_spring_forward_nonexistent_time_runs_once_right_after_the_jump() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
    runs = next_runs(schedule, utc(2026, 3, 28, 12), 3)
    # 03-29 02:30 does not exist -> 03:00 CEST (01:00 UTC); then 02:30 CEST (00:30 UTC).
    assert runs == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)]


def test_new_york_fall_back_daily_in_the_repeated_hour_runs_once() -> None:
    schedule = parse_schedule("30 1 * * *", "America/New_York")
    runs = next_runs(schedule, utc(2026, 10, 31, 12), 3)
    # 01:30 happens twice on 11-01 (EDT 05:30 UTC, then EST 06:30 UTC): only the first runs.
    assert runs == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30), utc(2026, 11, 3, 6, 30)]
    # A clock that reads between the two 01:30s must not find the repeat either.
    assert next_run_after(schedule, utc(2026, 11, 1, 5, 45)) == utc(2026, 11, 2, 6, 30)


def test_berlin_fall_back_daily_runs_once() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
    runs = next_runs(schedule, utc(2026, 10, 24, 12), 3)
    assert runs == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30), utc(2026, 10, 27, 1, 30)]


def test_daily_midnight_across_both_transitions_is_one_run_a_day() -> None:
    schedule = parse_schedule("@daily", "America/New_York")
    for start in (utc(2026, 3, 5), utc(2026, 10, 29)):
        runs = next_runs(schedule, start, 6)
        local_days = [r.astimezone(schedule.zone).date() for r in runs]
        assert len(set(local_days)) == 6
        assert all(r.astimezone(schedule.zone).hour == 0 for r in runs)


def test_hourly_keeps_running_through_the_repeated_hour() -> None:
    # An every-hour schedule is about elapsed time: 01:00 EDT and 01:00 EST both run.
    schedule = parse_schedule("@hourly", "America/New_York")
    runs = next_runs(schedule, utc(2026, 11, 1, 3, 30), 4)
    assert runs == [utc(2026, 11, 1, 4), utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)]


def test_hourly_skips_no_real_hour_on_spring_forward() -> None:
    schedule = parse_schedule("@hourly", "Europe/Berlin")
    runs = next_runs(schedule, utc(2026, 3, 28, 23, 30), 4)
    gaps = {b - a for a, b in itertools.pairwise(runs)}
    assert gaps == {timedelta(hours=1)}


# --- rejection ---------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "zone", "says"), [
    ("61 * * * *", None, "out of range"),
    ("* * * *", None, "has 4 field(s)"),
    ("0 0 * * * *", None, "has 6 field(s)"),
    ("@yearly", None, "is not one of"),
    ("@every 5m", None, "is not one of"),
    ("0 0 30 2 *", None, "never matches a date"),
    ("0 0 1 1 foo", None, "not a valid cron expression"),
    ("H * * * *", None, "not a valid cron expression"),
    ("@daily", "Mars/Olympus_Mons", "not a known time zone"),
    ("@daily", "../../etc/passwd", "not a known time zone"),
])
def test_invalid_schedules_say_what_is_wrong(expr: str, zone: str | None, says: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        validate_schedule(expr, zone)
    assert says in caught.value.message
    assert isinstance(caught.value, InvalidRequest)  # a 400 at the API


def test_next_run_after_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_run_after(parse_schedule("@daily"), datetime(2026, 1, 1))
