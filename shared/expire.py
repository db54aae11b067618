"""A materialized view's EXPIRE option: 'retain_everything' (the default), 'expire_everything'
(only the current snapshot is kept) or an ISO-8601 duration ('P30D', 'PT12H', 'P1Y2M')
after which written data is dropped. Years count 365 days and months 30."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from shared.errors import NQLError

RETAIN_EVERYTHING = "retain_everything"
EXPIRE_EVERYTHING = "expire_everything"
_DATE_UNITS = {"Y": 365 * 86400, "M": 30 * 86400, "W": 7 * 86400, "D": 86400}
_TIME_UNITS = {"H": 3600, "M": 60, "S": 1}


@dataclass(frozen=True)
class ExpirePolicy:
    keep_history: bool  # False: expire_everything
    max_age: timedelta | None  # None: no age limit

    @property
    def expires(self) -> bool:
        return not self.keep_history or self.max_age is not None


def parse_expire(text: str | None) -> ExpirePolicy:
    if text is None or text.lower() == RETAIN_EVERYTHING:
        return ExpirePolicy(keep_history=True, max_age=None)
    if text.lower() == EXPIRE_EVERYTHING:
        return ExpirePolicy(keep_history=False, max_age=None)
    return ExpirePolicy(keep_history=True, max_age=parse_duration(text))


def parse_duration(text: str) -> timedelta:
    bad = NQLError(f"EXPIRE {text!r} is not 'retain_everything', 'expire_everything' or an "
                   "ISO-8601 duration such as 'P30D' or 'PT12H'", rule="expire")
    upper = text.strip().upper()
    if not upper.startswith("P") or len(upper) < 3:
        raise bad
    seconds, number, in_time, seen = 0.0, "", False, False
    for char in upper[1:]:
        if char == "T":
            if in_time:
                raise bad
            in_time = True
        elif char.isdigit() or char == ".":
            number += char
        else:
            units = _TIME_UNITS if in_time else _DATE_UNITS
            if char not in units or not number:
                raise bad
            try:
                seconds += float(number) * units[char]
            except ValueError as e:
                raise bad from e
            number, seen = "", True
    if number or not seen or seconds <= 0:
        raise bad
    return timedelta(seconds=seconds)
