"""REFRESH_SCHEDULE expressions: validation and due times. Pure functions, no clock.

An expression is one of `@hourly`, `@daily`, `@weekly`, `@monthly`, `@once` or a
5-field cron line (minute hour day-of-month month day-of-week, croniter's syntax), read
as wall-clock times in an IANA zone (`cron_zone_id`, default UTC). Due times are
returned in UTC; callers pass "now" in, so tests drive them with a fake clock.

Daylight-saving rules (the ones cron users expect, after Vixie cron):
- spring forward: a time that does not exist that day (`30 2 * * *` in New York on the
  day 02:00 jumps to 03:00) fires once, at the first existing minute after it (03:00);
- fall back: a wall-clock time that occurs twice fires once, at its first occurrence,
  unless the schedule's hour field is `*` (every hour, `@hourly`): such a schedule is
  about elapsed time and fires in the repeated hour too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from shared.errors import InvalidRequest

ONCE = "@once"
DEFAULT_ZONE = "UTC"
# The shorthands NQL documents, spelled out so every schedule is a 5-field line here.
SHORTHANDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
}
_FORMS = "'@hourly', '@daily', '@weekly', '@monthly', '@once' or a 5-field cron expression"
# A time that exists twice is at most this many candidates away from its first
# occurrence (an every-minute schedule in a repeated hour); bounds the skip loop.
_MAX_REPEATED_CANDIDATES = 24 * 60


class InvalidSchedule(InvalidRequest):
    """A REFRESH_SCHEDULE or cron_zone_id that cannot be used (HTTP 400)."""


@dataclass(frozen=True)
class ScheduleExpr:
    """A validated schedule: `expr` as stored (shorthands lower-cased), `cron` the 5-field
    line it means (None for @once) and the zone it is read in."""

    expr: str
    cron: str | None
    zone_id: str

    @property
    def recurring(self) -> bool:
        return self.cron is not None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.zone_id)


def _zone(zone_id: str | None) -> str:
    zone_id = (zone_id or DEFAULT_ZONE).strip() or DEFAULT_ZONE
    try:
        ZoneInfo(zone_id)
    except (ZoneInfoNotFoundError, ValueError) as e:
        # ValueError: keys such as '../x' that are not zone names at all.
        raise InvalidSchedule(
            f"cron_zone_id {zone_id!r} is not a known time zone; use an IANA name such as "
            "'UTC', 'America/New_York' or 'Europe/Berlin'") from e
    return zone_id


def _cron(expr: str) -> str:
    fields = expr.split()
    if len(fields) != 5:
        raise InvalidSchedule(
            f"REFRESH_SCHEDULE {expr!r} has {len(fields)} field(s); it must be {_FORMS} "
            "(minute hour day-of-month month day-of-week)")
    line = " ".join(fields)
    try:
        # Build it once: croniter's own parser says what is wrong with a field.
        croniter(line, datetime(2000, 1, 1, tzinfo=UTC))
    except CroniterBadCronError as e:
        raise InvalidSchedule(f"REFRESH_SCHEDULE {expr!r} is not a valid cron expression: {e}") from e
    except CroniterError as e:
        raise InvalidSchedule(f"REFRESH_SCHEDULE {expr!r} cannot be used: {e}") from e
    return line


def parse_schedule(expr: str | None, zone_id: str | None = DEFAULT_ZONE) -> ScheduleExpr:
    """Validate a schedule and its zone; raises InvalidSchedule (a 400) saying what is wrong.
    `None` or empty means `@once`, NQL's default."""
    zone = _zone(zone_id)
    text = " ".join((expr or ONCE).split())
    if text.startswith("@"):
        key = text.lower()
        if key == ONCE:
            return ScheduleExpr(ONCE, None, zone)
        if key not in SHORTHANDS:
            raise InvalidSchedule(f"REFRESH_SCHEDULE {expr!r} is not one of {_FORMS}")
        return ScheduleExpr(key, SHORTHANDS[key], zone)
    schedule = ScheduleExpr(text, _cron(text), zone)
    # A line like '0 0 30 2 *' parses but never fires: say so now, not never.
    if next_run_after(schedule, datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise InvalidSchedule(f"REFRESH_SCHEDULE {expr!r} never matches a date")
    return schedule


def validate_schedule(expr: str | None, zone_id: str | None = DEFAULT_ZONE) -> ScheduleExpr:
    """The submit-time check (`POST /nql/run`, the schedule endpoints): same as parse."""
    return parse_schedule(expr, zone_id)


def _hour_is_wildcard(cron: str) -> bool:
    return cron.split()[1] == "*"


def _is_repeat(local: datetime) -> bool:
    """True when this wall-clock time already happened earlier that night (fall back)."""
    first = local.replace(fold=0)
    return first.utcoffset() != local.utcoffset() and local.fold == 1


def next_run_after(schedule: ScheduleExpr, after: datetime) -> datetime | None:
    """The first due time strictly after `after` (aware), in UTC; None for @once or a
    schedule with no further date."""
    if schedule.cron is None:
        return None
    if after.tzinfo is None:
        raise ValueError("next_run_after needs an aware datetime")
    zone = schedule.zone
    it = croniter(schedule.cron, after.astimezone(zone))
    try:
        for _ in range(_MAX_REPEATED_CANDIDATES + 1):
            candidate: datetime = it.get_next(datetime)
            local = candidate.astimezone(UTC).astimezone(zone)
            if not _is_repeat(local) or _hour_is_wildcard(schedule.cron):
                return local.astimezone(UTC)
    except CroniterBadDateError:
        return None
    return None


def next_runs(schedule: ScheduleExpr, after: datetime, count: int) -> list[datetime]:
    """The next `count` due times after `after` (UTC), as the scheduler would take them."""
    out: list[datetime] = []
    current = after
    while len(out) < count:
        nxt = next_run_after(schedule, current)
        if nxt is None:
            break
        out.append(nxt)
        current = nxt
    return out
