"""Cron schedules: parsing, the next slot (month/year boundaries, weekday rule, DST) and
which slots are due after an outage."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from controller.workflows.schedule import (
    MACROS,
    Cron,
    CronError,
    due_slots,
    next_wake,
    parse_cron,
)

Z = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def slots(expression: str, after: datetime, count: int, tz: ZoneInfo = Z) -> list[datetime]:
    cron = parse_cron(expression)
    found = []
    for _ in range(count):
        after = cron.next_after(after, tz)
        found.append(after)
    return found


# --- parsing -------------------------------------------------------------------------


def test_wildcards_allow_every_value() -> None:
    cron = parse_cron("* * * * *")
    assert cron.minutes == tuple(range(60))
    assert cron.hours == tuple(range(24))
    assert cron.days == tuple(range(1, 32))
    assert cron.months == tuple(range(1, 13))
    assert cron.weekdays == tuple(range(7))
    assert not cron.day_of_month_restricted
    assert not cron.day_of_week_restricted
    assert cron.expression == "* * * * *"


@pytest.mark.parametrize(
    ("expression", "attribute", "values"),
    [
        ("5 * * * *", "minutes", (5,)),
        ("1,15,30 * * * *", "minutes", (1, 15, 30)),
        ("0 9-17 * * *", "hours", tuple(range(9, 18))),
        ("*/15 * * * *", "minutes", (0, 15, 30, 45)),
        ("10-30/10 * * * *", "minutes", (10, 20, 30)),
        ("5/20 * * * *", "minutes", (5, 25, 45)),
        ("0 0-6/3,12,20-21 * * *", "hours", (0, 3, 6, 12, 20, 21)),
        ("30,5,5,10 * * * *", "minutes", (5, 10, 30)),
        ("00 08 * * *", "hours", (8,)),
        ("0 0 1,15,31 * *", "days", (1, 15, 31)),
        ("0 0 */10 * *", "days", (1, 11, 21, 31)),
        ("0 0 1 jan,MAR-may *", "months", (1, 3, 4, 5)),
        ("0 0 1 Dec *", "months", (12,)),
        ("0 0 1 */3 *", "months", (1, 4, 7, 10)),
        ("0 0 * * mon-FRI", "weekdays", (1, 2, 3, 4, 5)),
        ("0 0 * * SUN,sat", "weekdays", (0, 6)),
        ("0 0 * * 7", "weekdays", (0,)),
        ("0 0 * * 0,7", "weekdays", (0,)),
        ("0 0 * * 5-7", "weekdays", (0, 5, 6)),
        ("0 0 * * 0-7", "weekdays", tuple(range(7))),
        ("0 0 * * */2", "weekdays", (0, 2, 4, 6)),
        ("0 0 * * 1/2", "weekdays", (1, 3, 5)),
        ("0 0 * * 7/2", "weekdays", (0,)),
    ],
)
def test_each_syntax_is_read(expression: str, attribute: str, values: tuple[int, ...]) -> None:
    assert getattr(parse_cron(expression), attribute) == values


def test_question_mark_is_a_wildcard_in_the_day_fields() -> None:
    cron = parse_cron("0 0 ? * ?")
    assert cron.days == tuple(range(1, 32))
    assert cron.weekdays == tuple(range(7))
    assert not cron.day_of_month_restricted
    assert not cron.day_of_week_restricted


def test_which_day_fields_count_as_restricted() -> None:
    assert parse_cron("0 0 1 * MON").day_of_month_restricted
    assert parse_cron("0 0 1 * MON").day_of_week_restricted
    assert not parse_cron("0 0 1 * *").day_of_week_restricted
    assert not parse_cron("0 0 ? * MON").day_of_month_restricted
    # A step over the wildcard restricts the field (as in Kubernetes CronJobs).
    assert parse_cron("0 0 */2 * *").day_of_month_restricted


def test_surrounding_and_repeated_whitespace_is_ignored() -> None:
    cron = parse_cron("  0\t9  * *   1-5 ")
    assert (cron.minutes, cron.hours, cron.weekdays) == ((0,), (9,), (1, 2, 3, 4, 5))


@pytest.mark.parametrize("macro", sorted(MACROS))
def test_macros_expand_to_their_five_fields(macro: str) -> None:
    expanded = parse_cron(MACROS[macro])
    for spelling in (macro, macro.upper()):
        cron = parse_cron(spelling)
        assert cron.expression == spelling
        assert cron == replace(expanded, expression=spelling)


def test_macro_meanings() -> None:
    assert MACROS["@yearly"] == MACROS["@annually"] == "0 0 1 1 *"
    assert MACROS["@monthly"] == "0 0 1 * *"
    assert MACROS["@weekly"] == "0 0 * * 0"
    assert MACROS["@daily"] == MACROS["@midnight"] == "0 0 * * *"
    assert MACROS["@hourly"] == "0 * * * *"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "the cron expression is empty"),
        ("   ", "the cron expression is empty"),
        ("* * * *", "'* * * *' has 4 fields, expected 5"),
        ("* * * * * *", "'* * * * * *' has 6 fields, expected 5"),
        ("daily", "'daily' has 1 field, expected 5"),
        ("60 * * * *", "field 1 (minute): 60 is out of range 0-59"),
        ("0 25 * * *", "field 2 (hour): 25 is out of range 0-23"),
        ("0 0 0 * *", "field 3 (day-of-month): 0 is out of range 1-31"),
        ("0 0 32 * *", "field 3 (day-of-month): 32 is out of range 1-31"),
        ("0 0 * 13 *", "field 4 (month): 13 is out of range 1-12"),
        ("0 0 * 0 *", "field 4 (month): 0 is out of range 1-12"),
        ("0 0 * * 8", "field 5 (day-of-week): 8 is out of range 0-7"),
        ("0 1-24 * * *", "field 2 (hour): 24 is out of range 0-23"),
        ("*/0 * * * *", "field 1 (minute): step 0 in '*/0' is out of range 1-59"),
        ("*/60 * * * *", "field 1 (minute): step 60 in '*/60' is out of range 1-59"),
        ("0 */24 * * *", "field 2 (hour): step 24 in '*/24' is out of range 1-23"),
        ("0 0 * * */7", "field 5 (day-of-week): step 7 in '*/7' is out of range 1-6"),
        ("*/x * * * *", "field 1 (minute): step 'x' in '*/x' is not a number"),
        ("*/ * * * *", "field 1 (minute): step '' in '*/' is not a number"),
        ("1-5/-1 * * * *", "field 1 (minute): step '-1' in '1-5/-1' is not a number"),
        ("x * * * *", "field 1 (minute): 'x' is not a number"),
        ("MON * * * *", "field 1 (minute): 'MON' is not a number"),
        ("0 0 * FOO *", "field 4 (month): 'FOO' is not a number or a month name (JAN-DEC)"),
        ("0 0 * JAN-MON *", "field 4 (month): 'MON' is not a number or a month name (JAN-DEC)"),
        (
            "0 0 * * funday",
            "field 5 (day-of-week): 'funday' is not a number or a weekday name (SUN-SAT)",
        ),
        ("0 0 * * JAN", "field 5 (day-of-week): 'JAN' is not a number or a weekday name (SUN-SAT)"),
        (
            "0 ? * * *",
            "field 2 (hour): '?' is only allowed in day-of-month and day-of-week; use '*'",
        ),
        ("0 17-9 * * *", "field 2 (hour): range '17-9' runs backwards (17 > 9)"),
        ("0 0 * * FRI-MON", "field 5 (day-of-week): range 'FRI-MON' runs backwards (5 > 1)"),
        ("1,,2 * * * *", "field 1 (minute): empty list item in '1,,2'"),
        ("1, * * * *", "field 1 (minute): empty list item in '1,'"),
        ("-5 * * * *", "field 1 (minute): a range is missing a value; expected a number"),
        ("5- * * * *", "field 1 (minute): a range is missing a value; expected a number"),
        ("1-2-3 * * * *", "field 1 (minute): '2-3' is not a number"),
        ("\uff11 * * * *", "field 1 (minute): '\uff11' is not a number"),
        (
            "@reboot",
            "'@reboot' is not a supported macro (use one of @yearly, @annually, @monthly, "
            "@weekly, @daily, @midnight, @hourly)",
        ),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(expression)
    assert str(caught.value) == message


def test_cron_error_is_a_value_error() -> None:
    assert issubclass(CronError, ValueError)


# --- next_after ------------------------------------------------------------------------


def test_next_after_weekdays_skip_the_weekend() -> None:
    # 2026-01-02 is a Friday.
    assert slots("0 9 * * 1-5", utc(2026, 1, 2, 10), 3) == [
        utc(2026, 1, 5, 9),
        utc(2026, 1, 6, 9),
        utc(2026, 1, 7, 9),
    ]


def test_next_after_is_strictly_after() -> None:
    cron = parse_cron("0 9 * * *")
    assert cron.next_after(utc(2026, 1, 1, 9), Z) == utc(2026, 1, 2, 9)
    assert cron.next_after(utc(2026, 1, 1, 9, 0) + timedelta(seconds=1), Z) == utc(2026, 1, 2, 9)
    assert cron.next_after(utc(2026, 1, 1, 8, 59, 59), Z) == utc(2026, 1, 1, 9)
    every_minute = parse_cron("* * * * *")
    assert every_minute.next_after(utc(2026, 1, 1, 8, 59, 30), Z) == utc(2026, 1, 1, 9)


def test_next_after_returns_aware_utc_on_whole_minutes() -> None:
    slot = parse_cron("*/7 * * * *").next_after(
        datetime(2026, 5, 1, 10, 3, 17, 5, tzinfo=BERLIN), BERLIN
    )
    assert slot.tzinfo is UTC
    assert (slot.second, slot.microsecond) == (0, 0)
    assert slot == utc(2026, 5, 1, 8, 7)


def test_next_after_accepts_any_aware_datetime() -> None:
    cron = parse_cron("0 12 * * *")
    after = datetime(2026, 1, 1, 12, 30, tzinfo=ZoneInfo("America/New_York"))  # 17:30 UTC
    assert cron.next_after(after, Z) == utc(2026, 1, 2, 12)


def test_next_after_crosses_month_and_year_boundaries() -> None:
    assert slots("0 0 1 * *", utc(2026, 1, 31, 12), 2) == [utc(2026, 2, 1), utc(2026, 3, 1)]
    assert slots("30 23 31 12 *", utc(2026, 12, 31, 23, 30), 1) == [utc(2027, 12, 31, 23, 30)]
    assert slots("@yearly", utc(2026, 6, 1), 2) == [utc(2027, 1, 1), utc(2028, 1, 1)]
    assert slots("0 0 31 * *", utc(2026, 1, 31, 1), 3) == [
        utc(2026, 3, 31),
        utc(2026, 5, 31),
        utc(2026, 7, 31),
    ]
    assert slots("59 23 * * *", utc(2026, 12, 31, 23, 59), 1) == [utc(2027, 1, 1, 23, 59)]
    assert slots("0 0 1 JAN,JUL *", utc(2026, 7, 1), 2) == [utc(2027, 1, 1), utc(2027, 7, 1)]


def test_next_after_finds_february_29() -> None:
    assert slots("0 12 29 2 *", utc(2026, 3, 1), 2) == [
        utc(2028, 2, 29, 12),
        utc(2032, 2, 29, 12),
    ]
    assert slots("0 0 28-31 2 *", utc(2028, 2, 27), 3) == [
        utc(2028, 2, 28),
        utc(2028, 2, 29),
        utc(2029, 2, 28),
    ]


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # 2026-03-30 and 2026-04-06 are Mondays, 2026-04-01 is a Wednesday.
    assert slots("0 0 1 * MON", utc(2026, 3, 25), 3) == [
        utc(2026, 3, 30),
        utc(2026, 4, 1),
        utc(2026, 4, 6),
    ]
    # Friday the 13th does not need both: every 13th and every Friday.
    assert slots("0 0 13 * 5", utc(2026, 2, 1), 4) == [
        utc(2026, 2, 6),
        utc(2026, 2, 13),
        utc(2026, 2, 20),
        utc(2026, 2, 27),
    ]
    assert slots("0 0 13 * 5", utc(2026, 3, 6), 2) == [utc(2026, 3, 13), utc(2026, 3, 20)]


def test_day_of_month_and_day_of_week_when_one_is_a_wildcard() -> None:
    assert slots("0 0 1 * *", utc(2026, 3, 25), 2) == [utc(2026, 4, 1), utc(2026, 5, 1)]
    assert slots("0 0 * * MON", utc(2026, 3, 25), 2) == [utc(2026, 3, 30), utc(2026, 4, 6)]
    assert slots("0 0 ? * MON", utc(2026, 3, 25), 1) == [utc(2026, 3, 30)]
    assert slots("0 0 1 * ?", utc(2026, 3, 25), 1) == [utc(2026, 4, 1)]
    # Both restricted, so */2 (odd days) OR Sunday.
    assert slots("0 0 */2 * SUN", utc(2026, 3, 27), 3) == [
        utc(2026, 3, 29),  # the 29th, also a Sunday
        utc(2026, 3, 31),
        utc(2026, 4, 1),
    ]


def test_cron_matches_wall_clock_times() -> None:
    cron = parse_cron("30 9 * * MON-FRI")
    assert cron.matches(datetime(2026, 1, 5, 9, 30))
    assert not cron.matches(datetime(2026, 1, 4, 9, 30))  # a Sunday
    assert not cron.matches(datetime(2026, 1, 5, 9, 31))


def test_next_after_reads_the_schedule_in_the_time_zone() -> None:
    cron = parse_cron("0 9 * * *")
    assert cron.next_after(utc(2026, 1, 10), BERLIN) == utc(2026, 1, 10, 8)  # CET, +1
    assert cron.next_after(utc(2026, 7, 10), BERLIN) == utc(2026, 7, 10, 7)  # CEST, +2
    tokyo = ZoneInfo("Asia/Tokyo")
    # 2026-01-04 23:00 UTC is Monday 08:00 in Tokyo.
    assert parse_cron("0 9 * * MON").next_after(utc(2026, 1, 4, 23), tokyo) == utc(2026, 1, 5, 0)


def never_firing(expression: str = "0 0 30 2 *") -> Cron:
    """A Cron that has no time (parse_cron refuses to make one): its search still ends."""
    minute, hour, day, month, _ = expression.split()
    fine = parse_cron(f"{minute} {hour} 1 {month} *")
    return replace(fine, expression=expression, days=tuple(int(d) for d in day.split(",")))


def test_a_schedule_that_never_fires_raises() -> None:
    cron = never_firing()
    with pytest.raises(CronError, match=r"'0 0 30 2 \*' has no time within 5 years after"):
        cron.next_after(utc(2026, 1, 1), Z)
    with pytest.raises(CronError):
        never_firing("0 0 31 4,6,9,11 *").next_after(utc(2026, 1, 1), BERLIN)


def test_next_after_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_cron("* * * * *").next_after(datetime(2026, 1, 1), Z)


def test_next_after_skips_instead_of_stepping_minute_by_minute() -> None:
    sparse = parse_cron("59 23 29 2 *")
    never = never_firing()
    started = time.perf_counter()
    for _ in range(20):
        assert sparse.next_after(utc(2026, 3, 1), BERLIN) == utc(2028, 2, 29, 22, 59)
        with pytest.raises(CronError):
            never.next_after(utc(2026, 3, 1), BERLIN)
    # Minute by minute, 20 five-year searches would take tens of seconds.
    assert time.perf_counter() - started < 2


# --- daylight saving time (Europe/Berlin) ----------------------------------------------


def test_spring_forward_skips_a_wall_time_that_does_not_exist() -> None:
    # 2026-03-29 02:00 CET jumps to 03:00 CEST: 02:30 does not exist that day.
    assert slots("30 2 * * *", utc(2026, 3, 27, 12), 3, BERLIN) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        utc(2026, 3, 31, 0, 30),
    ]


def test_spring_forward_with_frequent_slots() -> None:
    # Wall 02:00 and 02:30 are skipped; 03:00 CEST comes right after 01:30 CET.
    assert slots("*/30 * * * *", utc(2026, 3, 29, 0, 15), 3, BERLIN) == [
        utc(2026, 3, 29, 0, 30),  # 01:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST
        utc(2026, 3, 29, 1, 30),  # 03:30 CEST
    ]


def test_fall_back_fires_an_ambiguous_wall_time_once() -> None:
    # 2026-10-25 03:00 CEST falls back to 02:00 CET: 02:30 happens twice.
    assert slots("30 2 * * *", utc(2026, 10, 24, 12), 2, BERLIN) == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first occurrence
        utc(2026, 10, 26, 1, 30),  # 02:30 CET, the next day
    ]
    # Looking again during the repeated hour does not fire it a second time.
    cron = parse_cron("30 2 * * *")
    assert cron.next_after(utc(2026, 10, 25, 1), BERLIN) == utc(2026, 10, 26, 1, 30)
    assert cron.next_after(utc(2026, 10, 25, 1, 45), BERLIN) == utc(2026, 10, 26, 1, 30)


def test_fall_back_hourly_slots_run_through_the_repeated_hour_once() -> None:
    cron = parse_cron("0 * * * *")
    found = list(cron.slots_between(utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 3), BERLIN))
    assert found == [
        utc(2026, 10, 25, 0),  # 02:00 CEST
        utc(2026, 10, 25, 2),  # 03:00 CET (02:00 CET, the repeat, does not fire)
        utc(2026, 10, 25, 3),  # 04:00 CET
    ]


# --- due_slots and next_wake -------------------------------------------------------------

EVERY_TEN = parse_cron("*/10 * * * *")


def test_nothing_is_due_before_the_first_schedule() -> None:
    assert due_slots(EVERY_TEN, Z, None, utc(2026, 1, 1, 10, 35), 5) == []
    assert due_slots(EVERY_TEN, Z, None, utc(2026, 1, 1, 10, 30), 0) == []


@pytest.mark.parametrize(
    ("max_catch_up", "due"),
    [
        (100, [utc(2026, 1, 1, 10, 10), utc(2026, 1, 1, 10, 20), utc(2026, 1, 1, 10, 30)]),
        (3, [utc(2026, 1, 1, 10, 10), utc(2026, 1, 1, 10, 20), utc(2026, 1, 1, 10, 30)]),
        (2, [utc(2026, 1, 1, 10, 20), utc(2026, 1, 1, 10, 30)]),
        (1, [utc(2026, 1, 1, 10, 30)]),
        (0, []),  # 10:30 is five minutes old: missed, not due now
    ],
)
def test_missed_slots_are_limited_to_the_newest(max_catch_up: int, due: list[datetime]) -> None:
    assert (
        due_slots(EVERY_TEN, Z, utc(2026, 1, 1, 10), utc(2026, 1, 1, 10, 35), max_catch_up) == due
    )


def test_a_slot_due_right_now_runs_even_without_catch_up() -> None:
    last = utc(2026, 1, 1, 10)
    for now in (utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 10, 30, 45), utc(2026, 1, 1, 10, 31)):
        assert due_slots(EVERY_TEN, Z, last, now, 0) == [utc(2026, 1, 1, 10, 30)]
    assert due_slots(EVERY_TEN, Z, last, utc(2026, 1, 1, 10, 31, 1), 0) == []
    # Only the newest slot can be due now; older missed ones stay skipped.
    assert due_slots(EVERY_TEN, Z, last, utc(2026, 1, 1, 10, 30, 5), 0) == [utc(2026, 1, 1, 10, 30)]


def test_slots_already_scheduled_are_not_due_again() -> None:
    last = utc(2026, 1, 1, 10, 30)
    assert due_slots(EVERY_TEN, Z, last, utc(2026, 1, 1, 10, 30, 30), 5) == []
    assert due_slots(EVERY_TEN, Z, last, utc(2026, 1, 1, 10, 39, 59), 5) == []
    assert due_slots(EVERY_TEN, Z, last, utc(2026, 1, 1, 10, 40), 5) == [utc(2026, 1, 1, 10, 40)]
    # A last schedule time after now (clock skew) makes nothing due.
    assert due_slots(EVERY_TEN, Z, utc(2026, 1, 1, 11), utc(2026, 1, 1, 10, 45), 5) == []


def test_a_long_outage_keeps_only_the_newest_slots_quickly() -> None:
    every_minute = parse_cron("* * * * *")
    now = utc(2026, 6, 1, 12, 0, 30)
    started = time.perf_counter()
    due = due_slots(every_minute, Z, utc(2025, 6, 1), now, 100)
    assert time.perf_counter() - started < 2
    assert len(due) == 100
    assert due[0] == utc(2026, 6, 1, 10, 21)
    assert due[-1] == utc(2026, 6, 1, 12, 0)
    assert due == sorted(due)


def test_catch_up_reaches_back_over_sparse_schedules() -> None:
    yearly = parse_cron("@yearly")
    due = due_slots(yearly, BERLIN, utc(2020, 1, 1), utc(2026, 6, 1), 3)
    # Midnight of January 1st in Berlin is 23:00 UTC the day before.
    assert due == [utc(2023, 12, 31, 23), utc(2024, 12, 31, 23), utc(2025, 12, 31, 23)]
    assert due_slots(yearly, BERLIN, utc(2025, 6, 1), utc(2026, 6, 1), 3) == [utc(2025, 12, 31, 23)]


def test_due_slots_of_a_schedule_that_never_fires_is_empty() -> None:
    assert due_slots(never_firing(), Z, utc(2020, 1, 1), utc(2026, 1, 1), 5) == []


def test_due_slots_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due_slots(EVERY_TEN, Z, utc(2026, 1, 1), datetime(2026, 1, 2), 1)


def test_next_wake_is_the_next_slot_after_last_or_now() -> None:
    now = utc(2026, 1, 1, 10, 35)
    assert next_wake(EVERY_TEN, Z, None, now) == utc(2026, 1, 1, 10, 40)
    assert next_wake(EVERY_TEN, Z, utc(2026, 1, 1, 10), now) == utc(2026, 1, 1, 10, 40)
    assert next_wake(EVERY_TEN, Z, utc(2026, 1, 1, 10, 40), now) == utc(2026, 1, 1, 10, 50)
    assert next_wake(EVERY_TEN, Z, None, utc(2026, 1, 1, 10, 40)) == utc(2026, 1, 1, 10, 50)
    with pytest.raises(CronError):
        next_wake(parse_cron("0 0 30 2 *"), Z, None, now)


@pytest.mark.parametrize(
    ("expression", "fires"),
    [
        ("0 0 30 2 *", False),  # February has no 30th
        ("0 0 31 4,6,9,11 *", False),
        ("0 0 29 2 *", True),  # leap years
        ("0 0 31 4,7 *", True),
        ("0 0 30 2 1", True),  # day of month OR day of week: every Monday in February
    ],
)
def test_a_cron_whose_day_never_occurs_in_its_months_is_refused(
    expression: str, fires: bool
) -> None:
    if fires:
        parse_cron(expression)
    else:
        with pytest.raises(CronError, match="never fires"):
            parse_cron(expression)
