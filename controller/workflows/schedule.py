"""Cron schedules for workflow schedule triggers (pure logic, no dependencies).

`trigger.schedule: {cron, timezone, concurrencyPolicy, maxCatchUp}` starts runs on the
slots of a standard five-field cron expression read in the wall-clock time of an IANA
time zone.

Syntax (``minute hour day-of-month month day-of-week``):

* ``*``, single values ``5``, ranges ``1-5``, lists ``1,3,5-7``, steps ``*/15``,
  ``1-30/5`` and ``5/15`` (the same as ``5-<max>/15``);
* month names ``JAN``-``DEC`` and weekday names ``SUN``-``SAT``, in any case;
* day-of-week 0 and 7 are both Sunday;
* ``?`` is accepted as ``*`` in the two day fields;
* macros ``@yearly`` / ``@annually``, ``@monthly``, ``@weekly``, ``@daily`` /
  ``@midnight`` and ``@hourly``.

Days follow the Vixie cron rule: when day-of-month and day-of-week are both restricted,
a day matches when EITHER matches (``0 0 1 * MON`` is "the 1st and every Monday");
otherwise both must match. A day field is unrestricted only when it is exactly ``*`` or
``?`` — ``*/2`` counts as restricted (as in Kubernetes CronJobs).

Daylight saving time: slots are wall-clock times of the time zone. A wall time that
does not exist (the spring-forward gap) is skipped that day; a wall time that happens
twice (fall back) fires once, at its first occurrence (``fold=0``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

#: How far ahead `Cron.next_after` looks before it gives up.
SEARCH_YEARS = 5
#: A slot at most this old is "due right now" rather than missed (see `due_slots`).
ON_TIME_GRACE = timedelta(seconds=60)

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


class CronError(ValueError):
    """A cron expression that cannot be read, or a schedule that never fires."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]
    name_hint: str = ""
    is_day: bool = False


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day-of-month", 1, 31, {}, is_day=True),
    _Field("month", 1, 12, {n: i + 1 for i, n in enumerate(_MONTHS)}, "a month name (JAN-DEC)"),
    _Field(
        "day-of-week",
        0,
        7,
        {n: i for i, n in enumerate(_WEEKDAYS)},
        "a weekday name (SUN-SAT)",
        is_day=True,
    ),
)


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression: the allowed values of each field, sorted."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    #: 0 = Sunday … 6 = Saturday (7 is folded into 0).
    weekdays: tuple[int, ...]
    day_of_month_restricted: bool
    day_of_week_restricted: bool

    def day_matches(self, day: date) -> bool:
        """Whether the day-of-month / day-of-week fields (Vixie rule) allow this date."""
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        if self.day_of_month_restricted and self.day_of_week_restricted:
            return dom or dow
        return dom and dow

    def matches(self, wall: datetime) -> bool:
        """Whether a wall-clock time (its date, hour and minute) is a slot."""
        return (
            wall.month in self.months
            and self.day_matches(wall.date())
            and wall.hour in self.hours
            and wall.minute in self.minutes
        )

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime:
        """The first slot strictly after `after` (aware), as an aware UTC datetime.

        Raises CronError when there is no slot within five years (e.g. ``0 0 30 2 *``).
        """
        _require_aware(after, "after")
        found = self._next(after, tz, _add_years(after, SEARCH_YEARS))
        if found is None:
            raise CronError(
                f"{self.expression!r} has no time within {SEARCH_YEARS} years after "
                f"{after.isoformat()}; check that the day and month can occur together"
            )
        return found

    def _next(self, after: datetime, tz: ZoneInfo, until: datetime) -> datetime | None:
        """The first slot in (after, until], or None; wall-clock search that skips
        whole months, days and hours that cannot match."""
        start = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
        t = start + timedelta(minutes=1)
        # Past this wall time every candidate is later than `until` (offsets differ by
        # far less than a day), so the search may stop.
        stop = until.astimezone(tz).replace(tzinfo=None) + timedelta(days=1)
        while t <= stop:
            if t.month not in self.months:
                i = bisect.bisect_right(self.months, t.month)
                if i < len(self.months):
                    t = datetime(t.year, self.months[i], 1)
                elif t.year >= 9999:
                    return None
                else:
                    t = datetime(t.year + 1, self.months[0], 1)
                continue
            if not self.day_matches(t.date()):
                t = _next_day(t)
                continue
            if t.hour not in self.hours:
                i = bisect.bisect_right(self.hours, t.hour)
                t = t.replace(hour=self.hours[i], minute=0) if i < len(self.hours) else _next_day(t)
                continue
            if t.minute not in self.minutes:
                i = bisect.bisect_right(self.minutes, t.minute)
                if i < len(self.minutes):
                    t = t.replace(minute=self.minutes[i])
                else:
                    t = t.replace(minute=0) + timedelta(hours=1)
                continue
            slot = _resolve(t, tz)
            if slot is not None and slot > after:
                return slot if slot <= until else None
            t += timedelta(minutes=1)
        return None

    def slots_between(self, start: datetime, end: datetime, tz: ZoneInfo) -> Iterator[datetime]:
        """The slots in (start, end], oldest first, as aware UTC datetimes."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        current = start
        while (slot := self._next(current, tz, end)) is not None:
            yield slot
            current = slot


#: The most days each month can have (February: in a leap year).
_LONGEST_MONTH = {
    1: 31,
    2: 29,
    3: 31,
    4: 30,
    5: 31,
    6: 30,
    7: 31,
    8: 31,
    9: 30,
    10: 31,
    11: 30,
    12: 31,
}


def parse_cron(expression: str) -> Cron:
    """Read a five-field cron expression or macro; CronError says what is wrong."""
    text = expression.strip()
    if not text:
        raise CronError("the cron expression is empty")
    if text.startswith("@"):
        fields_text = MACROS.get(text.lower())
        if fields_text is None:
            raise CronError(f"{text!r} is not a supported macro (use one of {', '.join(MACROS)})")
    else:
        fields_text = text
    fields = fields_text.split()
    if len(fields) != 5:
        raise CronError(f"{text!r} has {len(fields)} field{'s' * (len(fields) != 1)}, expected 5")
    values = [
        _parse_field(raw, spec, number)
        for number, (raw, spec) in enumerate(zip(fields, _FIELDS, strict=True), 1)
    ]
    # When only the day of the month decides the day, it must occur in one of the months.
    only_day_of_month = fields[2] not in ("*", "?") and fields[4] in ("*", "?")
    if only_day_of_month and all(min(values[2]) > _LONGEST_MONTH[m] for m in values[3]):
        raise CronError(
            f"{text!r} never fires: day {min(values[2])} of the month does not occur in "
            f"month {', '.join(str(m) for m in values[3])}"
        )
    return Cron(
        expression=text,
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=tuple(sorted({v % 7 for v in values[4]})),
        day_of_month_restricted=fields[2] not in ("*", "?"),
        day_of_week_restricted=fields[4] not in ("*", "?"),
    )


def due_slots(
    cron: Cron, tz: ZoneInfo, last: datetime | None, now: datetime, max_catch_up: int
) -> list[datetime]:
    """The slots to start runs for now: those in (last, now], oldest first.

    * `last` is the last slot a run was started for; None means the schedule has never
      fired, and then nothing is due — the first run is the next future slot (see
      `next_wake`), a new schedule does not start a run for a slot already past.
    * A slot at most `ON_TIME_GRACE` (60 s) before `now` is due right now (the
      controller woke up a little late); older slots were missed.
    * `max_catch_up` >= 1 keeps only the newest `max_catch_up` slots (the one due right
      now included). `max_catch_up` = 0 starts no missed slot at all: only a slot due
      right now, if any.
    """
    _require_aware(now, "now")
    if last is None or last >= now:
        return []
    keep = max(max_catch_up, 1)
    # Only the newest `keep` slots matter: search a window ending at `now`, doubled
    # until it holds enough slots or reaches back to `last` (years of every-minute
    # slots are never enumerated).
    window = timedelta(hours=1)
    while True:
        start = max(last, now - window)
        slots = list(cron.slots_between(start, now, tz))
        if len(slots) >= keep or start == last:
            break
        window *= 2
    slots = slots[-keep:]
    if max_catch_up == 0:
        slots = [s for s in slots if s >= now - ON_TIME_GRACE]
    return slots


def next_wake(cron: Cron, tz: ZoneInfo, last: datetime | None, now: datetime) -> datetime:
    """When the controller should look again: the next slot after max(last, now).

    Raises CronError when the schedule has no slot within five years.
    """
    _require_aware(now, "now")
    after = now if last is None else max(last, now)
    return cron.next_after(after, tz)


def _parse_field(raw: str, spec: _Field, number: int) -> tuple[int, ...]:
    where = f"field {number} ({spec.name})"
    # Day-of-week accepts 7 for Sunday, but `*` and open-ended steps stop at Saturday.
    top = 6 if spec.name == "day-of-week" else spec.high
    values: set[int] = set()
    for item in raw.split(","):
        if not item:
            raise CronError(f"{where}: empty list item in {raw!r}")
        base, slash, step_text = item.partition("/")
        if base in ("*", "?"):
            if base == "?" and not spec.is_day:
                raise CronError(
                    f"{where}: '?' is only allowed in day-of-month and day-of-week; use '*'"
                )
            low, high = spec.low, top
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(first, spec, where), _value(last, spec, where)
            if low > high:
                raise CronError(f"{where}: range {base!r} runs backwards ({low} > {high})")
        else:
            low = _value(base, spec, where)
            # `5/15` means `5-<max>/15`; a plain value is just itself.
            high = max(top, low) if slash else low
        step = 1
        if slash:
            most = top - spec.low
            if not step_text.isascii() or not step_text.isdigit():
                raise CronError(f"{where}: step {step_text!r} in {item!r} is not a number")
            step = int(step_text)
            if not 1 <= step <= most:
                raise CronError(f"{where}: step {step} in {item!r} is out of range 1-{most}")
        values.update(range(low, high + 1, step))
    return tuple(sorted(values))


def _value(text: str, spec: _Field, where: str) -> int:
    if text.isascii() and text.isdigit():
        value = int(text)
        if not spec.low <= value <= spec.high:
            raise CronError(f"{where}: {value} is out of range {spec.low}-{spec.high}")
        return value
    named = spec.names.get(text.upper())
    if named is not None:
        return named
    kind = f"a number or {spec.name_hint}" if spec.names else "a number"
    if not text:
        raise CronError(f"{where}: a range is missing a value; expected {kind}")
    raise CronError(f"{where}: {text!r} is not {kind}")


def _resolve(wall: datetime, tz: ZoneInfo) -> datetime | None:
    """The UTC instant of a wall time: None when it does not exist (DST gap), its
    first occurrence when it happens twice (fold=0)."""
    utc = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != wall:
        return None
    return utc


def _next_day(t: datetime) -> datetime:
    return datetime(t.year, t.month, t.day) + timedelta(days=1)


def _add_years(moment: datetime, years: int) -> datetime:
    """`moment` plus `years` (Feb 29 → Feb 28), capped at the last representable time."""
    try:
        day = moment.day
        if moment.month == 2 and day == 29:
            day = 28
        return moment.replace(year=moment.year + years, day=day)
    except ValueError:  # past year 9999
        return datetime.max.replace(tzinfo=UTC) - timedelta(days=2)


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}")
