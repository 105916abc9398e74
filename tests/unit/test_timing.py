from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from dateutil.relativedelta import relativedelta

from models.domain.delays import Delay, parse_delay
from models.domain.timing import (
    CalendarSpec,
    DueTimeError,
    DurationError,
    add_business_time,
    compute_deadline,
    compute_due,
    parse_duration,
    split_duration,
)

UTC = timezone.utc
OFFICE = CalendarSpec()  # UTC, Monday–Friday 09:00–18:00
WARSAW = CalendarSpec(timezone="Europe/Warsaw")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def due(delay, base: datetime, item: dict | None = None, calendar: CalendarSpec = OFFICE) -> datetime:
    return compute_due(parse_delay(delay), base=base, item=item or {}, calendar=calendar)


# -- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", relativedelta(seconds=30)),
        ("15m", relativedelta(minutes=15)),
        ("24h", relativedelta(hours=24)),
        ("3d", relativedelta(days=3)),
        ("2w", relativedelta(weeks=2)),
        ("6mo", relativedelta(months=6)),
        ("1y", relativedelta(years=1)),
        ("-1d", relativedelta(days=-1)),
        ("+1d12h", relativedelta(days=1, hours=12)),
        (" 1h 30m ", relativedelta(hours=1, minutes=30)),
    ],
)
def test_durations_parse_into_relativedelta(text: str, expected: relativedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5x", "1.5h", "m", "-", "24 hours", "h24", "1d-2h", "101y"])
def test_bad_durations_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(DurationError, match="30s, 15m, 24h|longer than 100 years"):
        parse_duration(text)


def test_duration_sign_and_parts() -> None:
    parsed = split_duration("-1w2d")
    assert parsed.negative and parsed.weeks == 1 and parsed.days == 2
    assert not split_duration("0s").negative


# -- plain delays --------------------------------------------------------------------------------


def test_no_delay_is_the_base_time() -> None:
    base = utc(2025, 5, 6, 10, 0)
    assert compute_due(None, base=base, item={}, calendar=OFFICE) == base


def test_after_adds_elapsed_time() -> None:
    assert due("24h", utc(2025, 5, 6, 10, 0)) == utc(2025, 5, 7, 10, 0)
    assert due("30s", utc(2025, 5, 6, 10, 0)) == utc(2025, 5, 6, 10, 0, 30)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (utc(2028, 1, 31, 10, 0), utc(2028, 2, 29, 10, 0)),  # leap year
        (utc(2027, 1, 31, 10, 0), utc(2027, 2, 28, 10, 0)),
        (utc(2027, 3, 31, 10, 0), utc(2027, 4, 30, 10, 0)),
    ],
)
def test_calendar_months_end_on_the_last_day_of_a_short_month(start: datetime, expected: datetime) -> None:
    assert due("1mo", start) == expected


def test_six_months_and_a_year() -> None:
    assert due("6mo", utc(2025, 8, 31, 12, 0)) == utc(2026, 2, 28, 12, 0)
    assert due("1y", utc(2028, 2, 29, 12, 0)) == utc(2029, 2, 28, 12, 0)


def test_days_keep_the_clock_time_across_dst_but_hours_do_not() -> None:
    # Saturday 2025-03-29 14:00 CET (13:00 UTC); clocks go forward on Sunday night.
    base = utc(2025, 3, 29, 13, 0)
    assert due("1d", base, calendar=WARSAW) == utc(2025, 3, 30, 12, 0)  # 14:00 CEST
    assert due("24h", base, calendar=WARSAW) == utc(2025, 3, 30, 13, 0)  # 15:00 CEST


# -- clock times ---------------------------------------------------------------------------------


def test_at_is_the_next_occurrence_of_the_clock_time_in_the_company_zone() -> None:
    # 10:00 CET on Saturday → 14:00 CET the same day.
    assert due({"at": "14:00"}, utc(2025, 3, 29, 9, 0), calendar=WARSAW) == utc(2025, 3, 29, 13, 0)
    # 15:00 CET on Saturday → Sunday 14:00, which is already CEST (UTC+2).
    assert due({"at": "14:00"}, utc(2025, 3, 29, 14, 0), calendar=WARSAW) == utc(2025, 3, 30, 12, 0)
    # exactly 14:00 counts as "at or after".
    assert due({"at": "14:00"}, utc(2025, 3, 29, 13, 0), calendar=WARSAW) == utc(2025, 3, 29, 13, 0)


def test_at_across_the_autumn_dst_change() -> None:
    # Saturday 2025-10-25 20:00 CEST; Sunday 14:00 is CET (UTC+1).
    assert due({"at": "14:00"}, utc(2025, 10, 25, 18, 0), calendar=WARSAW) == utc(2025, 10, 26, 13, 0)


def test_after_with_at_is_that_clock_time_on_the_day_reached() -> None:
    assert due({"after": "1d", "at": "09:00"}, utc(2025, 5, 5, 15, 0)) == utc(2025, 5, 6, 9, 0)


def test_at_with_business_hours_skips_to_a_working_day() -> None:
    # Friday 2025-05-09 16:00 → the next 14:00 on a working day is Monday.
    assert due({"at": "14:00", "business_hours": True}, utc(2025, 5, 9, 16, 0)) == utc(2025, 5, 12, 14, 0)


# -- date fields ---------------------------------------------------------------------------------


def test_one_day_before_a_date_only_close_date_is_midnight_in_the_company_zone() -> None:
    item = {"close_date": date(2025, 6, 10)}
    result = due({"field": "close_date", "offset": "-1d"}, utc(2025, 5, 1), item, WARSAW)
    assert result == utc(2025, 6, 8, 22, 0)  # 2025-06-09 00:00 CEST


def test_field_with_at_uses_that_clock_time_on_the_day() -> None:
    item = {"close_date": "2025-06-10"}
    result = due({"field": "close_date", "offset": "-1d", "at": "10:00"}, utc(2025, 5, 1), item, WARSAW)
    assert result == utc(2025, 6, 9, 8, 0)
    assert due({"field": "close_date", "at": "14:00"}, utc(2025, 5, 1), item, WARSAW) == utc(2025, 6, 10, 12, 0)


def test_datetime_fields_and_custom_fields() -> None:
    base = utc(2025, 5, 1)
    assert due({"field": "created_at", "offset": "2h"}, base, {"created_at": "2025-05-01T08:00:00Z"}) == utc(2025, 5, 1, 10)
    naive_utc = {"created_at": datetime(2025, 5, 1, 8, 0)}
    assert due({"field": "created_at"}, base, naive_utc) == utc(2025, 5, 1, 8)
    assert due({"field": "Fields.delivery"}, base, {"Fields.delivery": "2025-07-01"}) == utc(2025, 7, 1)
    assert due({"field": "Fields.delivery"}, base, {"fields": {"delivery": "2025-07-02"}}) == utc(2025, 7, 2)


def test_a_due_time_in_the_past_is_returned_as_it_is() -> None:
    base = utc(2025, 6, 20, 12, 0)
    result = due({"field": "close_date", "offset": "-1d"}, base, {"close_date": "2025-06-10"})
    assert result == utc(2025, 6, 9) and result < base


@pytest.mark.parametrize("item", [{}, {"close_date": None}, {"close_date": ""}])
def test_a_missing_date_field_names_the_field(item: dict) -> None:
    with pytest.raises(DueTimeError, match="close_date") as raised:
        due({"field": "close_date", "offset": "-1d"}, utc(2025, 5, 1), item)
    assert raised.value.field == "close_date"


def test_a_field_that_holds_no_date_names_the_field() -> None:
    with pytest.raises(DueTimeError, match="Fields.size holds 'XL'"):
        due({"field": "Fields.size"}, utc(2025, 5, 1), {"Fields.size": "XL"})


# -- business hours ------------------------------------------------------------------------------


def test_friday_17_plus_two_working_hours_is_monday_10() -> None:
    assert due({"after": "2h", "business_hours": True}, utc(2025, 5, 9, 17, 0)) == utc(2025, 5, 12, 10, 0)


def test_a_holiday_is_skipped() -> None:
    calendar = CalendarSpec(holidays=[date(2025, 5, 12)])
    assert due({"after": "2h", "business_hours": True}, utc(2025, 5, 9, 17, 0), calendar=calendar) == utc(2025, 5, 13, 10)


def test_holidays_may_be_given_as_iso_text() -> None:
    calendar = CalendarSpec(**{"timezone": "UTC", "holidays": ["2025-05-12"], "working_days": [1, 2, 3, 4, 5]})
    assert calendar.holidays == (date(2025, 5, 12),)
    assert not calendar.is_working_date(date(2025, 5, 12))


def test_time_outside_working_hours_starts_counting_at_the_next_opening() -> None:
    assert due({"after": "2h", "business_hours": True}, utc(2025, 5, 9, 20, 0)) == utc(2025, 5, 12, 11, 0)
    assert due({"after": "30m", "business_hours": True}, utc(2025, 5, 6, 7, 0)) == utc(2025, 5, 6, 9, 30)


def test_working_hours_filling_a_whole_day() -> None:
    # 9 working hours a day: Monday 09:00 + 9h ends Monday 18:00; + 10h is Tuesday 10:00.
    assert due({"after": "9h", "business_hours": True}, utc(2025, 5, 5, 9, 0)) == utc(2025, 5, 5, 18, 0)
    assert due({"after": "10h", "business_hours": True}, utc(2025, 5, 5, 9, 0)) == utc(2025, 5, 6, 10, 0)


def test_working_days_keep_the_clock_time() -> None:
    assert due({"after": "1d", "business_hours": True}, utc(2025, 5, 9, 10, 0)) == utc(2025, 5, 12, 10, 0)
    calendar = CalendarSpec(holidays=["2025-05-12", "2025-05-13"])
    assert due({"after": "3d", "business_hours": True}, utc(2025, 5, 9, 10, 0), calendar=calendar) == utc(2025, 5, 16, 10)
    assert due({"after": "1w", "business_hours": True}, utc(2025, 5, 9, 10, 0)) == utc(2025, 5, 16, 10, 0)


def test_business_day_before_a_date_lands_in_working_hours() -> None:
    # close date Monday 2025-05-12: one working day before is Friday, at the opening hour.
    delay = {"field": "close_date", "offset": "-1d", "business_hours": True}
    assert due(delay, utc(2025, 5, 1), {"close_date": "2025-05-12"}) == utc(2025, 5, 9, 9, 0)
    delay = {"field": "close_date", "offset": "-2h", "business_hours": True}
    assert due(delay, utc(2025, 5, 1), {"close_date": "2025-05-12"}) == utc(2025, 5, 9, 16, 0)


def test_business_hours_in_the_company_time_zone() -> None:
    # Friday 17:00 CEST (15:00 UTC) + 2 working hours → Monday 10:00 CEST.
    assert due({"after": "2h", "business_hours": True}, utc(2025, 5, 9, 15, 0), calendar=WARSAW) == utc(2025, 5, 12, 8)


def test_custom_working_week() -> None:
    calendar = CalendarSpec(working_days=[1, 2, 3, 4, 5, 6], day_start="08:00", day_end="12:00")
    assert add_business_time(utc(2025, 5, 9, 11, 0), "2h", calendar) == utc(2025, 5, 10, 9, 0)
    assert add_business_time(utc(2025, 5, 9, 11, 0), timedelta(hours=1), calendar) == utc(2025, 5, 9, 12, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"day_start": "18:00", "day_end": "09:00"}, "day_end must be later"),
        ({"working_days": []}, "working_days"),
        ({"working_days": [0, 8]}, "working_days"),
        ({"holidays": ["soon"]}, "holidays"),
    ],
)
def test_a_bad_calendar_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CalendarSpec(**kwargs)


# -- deadlines -----------------------------------------------------------------------------------


def test_deadlines_in_every_form() -> None:
    now = utc(2025, 5, 6, 10, 0)
    item = {"close_date": "2025-06-10"}
    assert compute_deadline("+3d", now=now, item=item, calendar=OFFICE) == utc(2025, 5, 9, 10, 0)
    assert compute_deadline("2025-05-20", now=now, item=item, calendar=WARSAW) == utc(2025, 5, 20, 16, 0)
    assert compute_deadline("2025-05-20T12:30", now=now, item=item, calendar=WARSAW) == utc(2025, 5, 20, 10, 30)
    assert compute_deadline({"in_days": 1, "at": "14:00"}, now=now, item=item, calendar=OFFICE) == utc(2025, 5, 7, 14)
    assert compute_deadline({"field": "close_date", "offset": "-1d"}, now=now, item=item, calendar=OFFICE) == utc(2025, 6, 9)
    assert compute_deadline(None, now=now, item=item, calendar=OFFICE) is None


def test_delay_model_feeds_compute_due() -> None:
    delay = Delay(after="2h", business_hours=True)
    assert compute_due(delay, base=utc(2025, 5, 9, 17, 0), item={}, calendar=OFFICE) == utc(2025, 5, 12, 10, 0)
