"""Durations, the company calendar and rule due times.

Pure functions: no I/O and no clock reads (the caller passes `base`), so workflow code may import this
module through the sandbox as well.

Semantics of a duration such as `"1d12h"` added to a moment:
- calendar units (`d`, `w`, `mo`, `y`) move the wall clock in the company time zone, so "1d" keeps
  the clock time across a DST change and "1mo" from Jan 31 lands on the last day of February;
- clock units (`s`, `m`, `h`) add elapsed time ("24h" across a DST change shows a different clock time).

With business hours, `d` counts working days and `w` weeks of working days (keeping the clock time),
`h`/`m`/`s` count working time only, `mo`/`y` move the calendar; the result lands inside working hours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta

DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks", "mo": "months", "y": "years"}
DURATION_HINT = "a number and a unit: 30s, 15m, 24h, 3d, 2w, 6mo, 1y (parts combine: 1d12h)"
MAX_YEARS = 100
STANDARD_DATE_FIELDS = ("close_date", "created_at")
CUSTOM_FIELD_PREFIX = "Fields."

_DURATION_RE = re.compile(r"(?:\d+(?:mo|y|w|d|h|m|s))+")
_PART_RE = re.compile(r"(\d+)(mo|y|w|d|h|m|s)")
_CLOCK_RE = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_SEARCH_LIMIT_DAYS = 3700


class DurationError(ValueError):
    """Text that is not a duration."""


class DueTimeError(ValueError):
    """A due time that cannot be computed for this item (e.g. the date field it depends on is empty)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# -- durations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Duration:
    """A parsed duration. All parts are non-negative; `sign` is +1 or -1."""

    sign: int = 1
    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    @property
    def negative(self) -> bool:
        return self.sign < 0 and not self.is_zero

    @property
    def is_zero(self) -> bool:
        return not any((self.years, self.months, self.weeks, self.days, self.hours, self.minutes, self.seconds))

    @property
    def clock_seconds(self) -> int:
        return self.hours * 3600 + self.minutes * 60 + self.seconds

    def calendar_part(self) -> relativedelta:
        """The calendar units, signed: applied to the wall clock in the company time zone."""
        return relativedelta(
            years=self.sign * self.years, months=self.sign * self.months, days=self.sign * (self.weeks * 7 + self.days)
        )

    def clock_part(self) -> timedelta:
        """The clock units, signed: elapsed time."""
        return timedelta(seconds=self.sign * self.clock_seconds)

    def relativedelta(self) -> relativedelta:
        return self.calendar_part() + relativedelta(seconds=self.sign * self.clock_seconds)


def split_duration(text: str) -> Duration:
    """Parse `"30s"`, `"-1d"`, `"+1d12h"`, `"6mo"` … into a `Duration`; raises `DurationError`."""
    if not isinstance(text, str):
        raise DurationError(f"{text!r} is not a duration; use {DURATION_HINT}")
    body = "".join(text.split())
    sign = 1
    if body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if not _DURATION_RE.fullmatch(body):
        raise DurationError(f"{text!r} is not a duration; use {DURATION_HINT}")
    parts = dict.fromkeys(DURATION_UNITS.values(), 0)
    for amount, unit in _PART_RE.findall(body):
        parts[DURATION_UNITS[unit]] += int(amount)
    duration = Duration(sign=sign, **parts)
    approx_days = (
        duration.years * 366 + duration.months * 31 + duration.weeks * 7 + duration.days + duration.clock_seconds / 86400
    )
    if approx_days > MAX_YEARS * 366:
        raise DurationError(f"{text!r} is longer than {MAX_YEARS} years")
    return duration


def parse_duration(text: str) -> relativedelta:
    """A signed duration as a `relativedelta` ("mo" = calendar months, "y" years, "w" weeks)."""
    return split_duration(text).relativedelta()


def parse_clock(text: str) -> time:
    """`"14:00"` → `time(14, 0)`; raises ValueError naming the expected format."""
    match = _CLOCK_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a clock time; use HH:MM from 00:00 to 23:59")
    return time(int(match.group(1)), int(match.group(2)))


def is_date_field(name: str) -> bool:
    """Whether a delay may be anchored to this item field: close_date, created_at, Fields.<custom>."""
    if name in STANDARD_DATE_FIELDS:
        return True
    return name.startswith(CUSTOM_FIELD_PREFIX) and bool(name[len(CUSTOM_FIELD_PREFIX):].strip())


# -- the company calendar ----------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarSpec:
    """Working days (ISO weekdays, 1 = Monday), working hours and holidays in the company time zone."""

    timezone: str = "UTC"
    working_days: Sequence[int] = (1, 2, 3, 4, 5)
    day_start: str = "09:00"
    day_end: str = "18:00"
    holidays: Sequence[date] = ()

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as error:
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from error
        days = tuple(sorted({int(day) for day in self.working_days}))
        if not days or any(day < 1 or day > 7 for day in days):
            raise ValueError("working_days: give ISO weekdays 1 (Monday) to 7 (Sunday), at least one")
        start, end = parse_clock(self.day_start), parse_clock(self.day_end)
        if end <= start:
            raise ValueError("day_end must be later than day_start")
        object.__setattr__(self, "working_days", days)
        object.__setattr__(self, "day_start", start.strftime("%H:%M"))
        object.__setattr__(self, "day_end", end.strftime("%H:%M"))
        object.__setattr__(self, "holidays", tuple(sorted({_as_date(day) for day in self.holidays})))

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any] | None) -> CalendarSpec:
        """From stored settings; keys other than the calendar's own are ignored."""
        known = {"timezone", "working_days", "day_start", "day_end", "holidays"}
        return cls(**{key: item for key, item in (value or {}).items() if key in known})

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def start_time(self) -> time:
        return parse_clock(self.day_start)

    @property
    def end_time(self) -> time:
        return parse_clock(self.day_end)

    def is_working_date(self, day: date) -> bool:
        return day.isoweekday() in self.working_days and day not in self.holidays


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as error:
        raise ValueError(f"holidays: {value!r} is not a date (YYYY-MM-DD)") from error


# -- wall clock <-> UTC --------------------------------------------------------------------------


def as_utc(moment: datetime) -> datetime:
    """A time in UTC; one without a zone (as SQLite gives it back) is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{moment.isoformat()} is out of the range of times in UTC") from None


def to_local(moment: datetime, calendar: CalendarSpec) -> datetime:
    """An aware moment (naive = UTC) as naive wall-clock time in the company time zone."""
    return as_utc(moment).astimezone(calendar.zone).replace(tzinfo=None)


def from_local(wall: datetime, calendar: CalendarSpec) -> datetime:
    """Naive wall-clock time in the company time zone as an aware UTC moment."""
    return wall.replace(tzinfo=calendar.zone).astimezone(timezone.utc)


# -- business time (all on naive wall-clock time) ----------------------------------------------


def _days(start: date, step: int) -> Iterable[date]:
    day = start
    for _ in range(_SEARCH_LIMIT_DAYS):
        day += timedelta(days=step)
        yield day
    raise DueTimeError("the business calendar has no working day within ten years")


def _next_working_date(day: date, calendar: CalendarSpec) -> date:
    return next(candidate for candidate in _days(day, 1) if calendar.is_working_date(candidate))


def _previous_working_date(day: date, calendar: CalendarSpec) -> date:
    return next(candidate for candidate in _days(day, -1) if calendar.is_working_date(candidate))


def snap_forward(wall: datetime, calendar: CalendarSpec) -> datetime:
    """The earliest working moment at or after `wall`."""
    start, end = calendar.start_time, calendar.end_time
    if calendar.is_working_date(wall.date()):
        if wall.time() < start:
            return datetime.combine(wall.date(), start)
        if wall.time() <= end:
            return wall
    return datetime.combine(_next_working_date(wall.date(), calendar), start)


def snap_backward(wall: datetime, calendar: CalendarSpec) -> datetime:
    """The latest working moment at or before `wall`."""
    start, end = calendar.start_time, calendar.end_time
    if calendar.is_working_date(wall.date()):
        if wall.time() > end:
            return datetime.combine(wall.date(), end)
        if wall.time() >= start:
            return wall
    return datetime.combine(_previous_working_date(wall.date(), calendar), end)


def _clamp_to_hours(wall: datetime, calendar: CalendarSpec) -> datetime:
    start, end = calendar.start_time, calendar.end_time
    return datetime.combine(wall.date(), min(max(wall.time(), start), end))


def shift_working_days(day: date, count: int, calendar: CalendarSpec) -> date:
    """The date `count` working days after (or, negative, before) `day`; `day` itself need not be working."""
    if count == 0:
        return day
    step = 1 if count > 0 else -1
    remaining = abs(count)
    for candidate in _days(day, step):
        if calendar.is_working_date(candidate):
            remaining -= 1
            if remaining == 0:
                return candidate
    raise DueTimeError("the business calendar has no working day within ten years")


def _add_working_seconds(wall: datetime, seconds: int, calendar: CalendarSpec) -> datetime:
    start, end = calendar.start_time, calendar.end_time
    remaining = timedelta(seconds=abs(seconds))
    if seconds >= 0:
        current = snap_forward(wall, calendar)
        while True:
            available = datetime.combine(current.date(), end) - current
            if remaining <= available:
                return current + remaining
            remaining -= available
            current = datetime.combine(_next_working_date(current.date(), calendar), start)
    current = snap_backward(wall, calendar)
    while True:
        available = current - datetime.combine(current.date(), start)
        if remaining <= available:
            return current - remaining
        remaining -= available
        current = datetime.combine(_previous_working_date(current.date(), calendar), end)


def _add_business(wall: datetime, duration: Duration, calendar: CalendarSpec) -> datetime:
    current = wall
    if duration.years or duration.months:
        current = current + relativedelta(years=duration.sign * duration.years, months=duration.sign * duration.months)
    working_days = duration.days + duration.weeks * len(calendar.working_days)
    if working_days:
        day = shift_working_days(current.date(), duration.sign * working_days, calendar)
        current = _clamp_to_hours(datetime.combine(day, current.time()), calendar)
    if duration.clock_seconds:
        current = _add_working_seconds(current, duration.sign * duration.clock_seconds, calendar)
    return snap_forward(current, calendar)


def add_business_time(
    start: datetime, delta: Duration | str | timedelta, calendar: CalendarSpec
) -> datetime:
    """`start` plus `delta` counted in working time only (see the module notes); aware UTC result."""
    if isinstance(delta, str):
        delta = split_duration(delta)
    elif isinstance(delta, timedelta):
        total = int(delta.total_seconds())
        delta = Duration(sign=-1 if total < 0 else 1, seconds=abs(total))
    return from_local(_add_business(to_local(start, calendar), delta, calendar), calendar)


def _add_calendar(wall: datetime, duration: Duration, calendar: CalendarSpec) -> datetime:
    """Calendar units on the wall clock, then clock units as elapsed time; aware UTC result."""
    moved = from_local(wall + duration.calendar_part(), calendar)
    return moved + duration.clock_part()


# -- due times ---------------------------------------------------------------------------------


class DelaySpec(Protocol):
    """What `compute_due` reads from a delay (`models.domain.delays.Delay` has these attributes)."""

    after: str | None
    field: str | None
    offset: str | None
    at: str | None
    business_hours: bool


@dataclass(frozen=True)
class _Delay:
    after: str | None = None
    field: str | None = None
    offset: str | None = None
    at: str | None = None
    business_hours: bool = False


def _field_value(item: Mapping[str, Any], name: str) -> Any:
    if name in item:
        return item[name]
    if name.startswith(CUSTOM_FIELD_PREFIX):
        custom = name[len(CUSTOM_FIELD_PREFIX):]
        for key in ("fields", "Fields"):
            values = item.get(key)
            if isinstance(values, Mapping) and custom in values:
                return values[custom]
    return None


def _anchor(item: Mapping[str, Any], name: str, calendar: CalendarSpec) -> datetime:
    """The field's value as wall-clock time in the company zone; a date alone means 00:00 that day."""
    value = _field_value(item, name)
    if value is None or value == "":
        raise DueTimeError(f"the item has no {name}, which the delay is counted from", field=name)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError as error:
            raise DueTimeError(f"{name} holds {value!r}, which is not a date", field=name) from error
    if isinstance(value, datetime):
        return to_local(value, calendar)
    if isinstance(value, date):
        return datetime.combine(value, time())
    raise DueTimeError(f"{name} holds {value!r}, which is not a date", field=name)


def _on_day(wall: datetime, clock: time, business: bool, calendar: CalendarSpec) -> datetime:
    day = wall.date()
    if business and not calendar.is_working_date(day):
        day = _next_working_date(day, calendar)
    result = datetime.combine(day, clock)
    return _clamp_to_hours(result, calendar) if business else result


def compute_due(
    delay: DelaySpec | None,
    *,
    base: datetime,
    item: Mapping[str, Any],
    calendar: CalendarSpec,
) -> datetime:
    """When a rule with this delay is due, as an aware UTC datetime.

    - no delay: `base`;
    - `after`: `base` + the duration;
    - `field` (+ `offset`): the item's date field + the offset; a date-only value means 00:00 in the
      company time zone (or the `at` clock time on that day);
    - `at` alone: the next occurrence of that clock time in the company zone, at or after `base`;
    - `at` with `after`/`field`: that clock time on the day the rest of the delay reaches;
    - `business_hours`: the offset counts working time only, and the result lands in working hours.
    A due time in the past is returned as it is. A missing or non-date field raises `DueTimeError`.
    `item` maps `close_date`, `created_at` and `Fields.<name>` (or a `fields` dict) to dates,
    datetimes (naive = UTC) or ISO strings.
    """
    base = as_utc(base).astimezone(timezone.utc)
    if delay is None:
        return base
    business = bool(delay.business_hours)
    clock = parse_clock(delay.at) if delay.at else None

    if delay.field:
        wall = _anchor(item, delay.field, calendar)
        duration = split_duration(delay.offset) if delay.offset else Duration()
    elif clock is not None and not delay.after:
        wall = to_local(base, calendar)
        candidate = _on_day(wall, clock, business, calendar)
        while candidate < wall:
            candidate = _on_day(datetime.combine(candidate.date() + timedelta(days=1), time()), clock, business, calendar)
        return from_local(candidate, calendar)
    else:
        wall = to_local(base, calendar)
        duration = split_duration(delay.after) if delay.after else Duration()

    if business:
        reached = _add_business(wall, duration, calendar)
        if clock is not None:
            reached = _on_day(reached, clock, True, calendar)
        return from_local(reached, calendar)
    moment = _add_calendar(wall, duration, calendar)
    if clock is not None:
        return from_local(_on_day(to_local(moment, calendar), clock, False, calendar), calendar)
    return moment


def compute_deadline(
    spec: str | Mapping[str, Any] | None,
    *,
    now: datetime,
    item: Mapping[str, Any],
    calendar: CalendarSpec,
) -> datetime | None:
    """A task deadline or activity date from its settings value, as an aware UTC datetime.

    Accepted forms: `"+3d"` (relative to `now`); `"2025-06-01"` (that day at the end of working hours);
    `"2025-06-01T10:00"` (company time zone unless an offset is given);
    `{"in_days": 1, "at": "14:00"}` (that many days from today, at that clock time, or at the current
    clock time without `at`); a delay mapping (`{"field": "close_date", "offset": "-1d"}`, `{"after": …}`).
    """
    if spec is None or spec == "":
        return None
    if isinstance(spec, Mapping):
        if "in_days" in spec:
            wall = to_local(now, calendar) + timedelta(days=int(spec["in_days"]))
            if spec.get("at"):
                wall = datetime.combine(wall.date(), parse_clock(spec["at"]))
            return from_local(wall, calendar)
        known = {key: spec.get(key) for key in ("after", "field", "offset", "at")}
        return compute_due(
            _Delay(**known, business_hours=bool(spec.get("business_hours"))), base=now, item=item, calendar=calendar
        )
    text = spec.strip()
    if text[:1] in ("+", "-"):
        return compute_due(_signed_after(text), base=now, item=item, calendar=calendar)
    return parse_moment(text, calendar)


def _signed_after(text: str) -> _Delay:
    duration = split_duration(text)
    if duration.negative:
        raise DurationError(f"{text!r}: a relative deadline must lie in the future")
    return _Delay(after=text.lstrip("+"))


def parse_moment(text: str, calendar: CalendarSpec) -> datetime:
    """An ISO date (→ end of working hours that day) or datetime (naive → company zone), aware UTC."""
    try:
        if len(text) == 10:
            return from_local(datetime.combine(date.fromisoformat(text), calendar.end_time), calendar)
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise DueTimeError(f"{text!r} is not a date or a date and time (ISO 8601)") from error
    if moment.tzinfo is None:
        return from_local(moment, calendar)
    return moment.astimezone(timezone.utc)
