"""One grammar for the dates a user gives (``since``/``until``), and one way to word errors.

A date names a period, at the precision it is written with:

- ``YYYY``: a year (``2019``);
- ``YYYY-MM``: a month (``2019-06``);
- ``YYYY-MM-DD``: a day (``2019-06-03``);
- ``YYYY-MM-DDTHH:MM[:SS[.fff]]`` with an optional zone (``Z``, ``+02:00``): a minute or a
  second (``2019-06-03T10:15``); a space may stand for the ``T``, fractions of a second
  are dropped.

:func:`period` reads one such value into a :class:`Period` ``[start, end)``; :func:`bounds`
reads a ``since``/``until`` pair, ``since`` starting at the first instant of its period
and ``until`` ending at the last (``until=2020`` keeps all of 2020), and refuses a
``since`` after its ``until``. A provider that works at a coarser precision says so with
``finest`` (the simulator renders whole years: ``finest="year"``) and gets the same
wording, limited to what it accepts. Times without a zone are taken as UTC where a zone
matters (the order of the bounds, :meth:`Period.start_utc`).

Errors name the parameter by its Python keyword between backticks (`` `since` ``), as
every :class:`urbanvis._errors.UrbanvisError` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ._errors import InputError

Precision = Literal["year", "month", "day", "minute", "second"]
PRECISIONS: tuple[Precision, ...] = ("year", "month", "day", "minute", "second")
"""From the coarsest to the finest."""

_GRAMMAR = re.compile(
    r"(?P<year>\d{4})"
    r"(?:-(?P<month>\d{2})"
    r"(?:-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,]\d+)?)?"
    r"(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?"
    r")?)?)?"
)
_FORMS: tuple[tuple[Precision, str], ...] = (
    ("year", "a year like 2010"),
    ("month", "a month like 2010-06"),
    ("day", "a day like 2010-06-03"),
    ("second", "a time like 2010-06-03T10:15"),
)
_ISO_LENGTH = {"year": 4, "month": 7, "day": 10, "minute": 16, "second": 19}


@dataclass(frozen=True)
class Period:
    """The period a date names: ``[start, end)``, naive datetimes as written.

    ``text`` is the value as given (stripped), for messages and settings; ``iso`` the same
    date normalised at its precision, zone dropped (``2019-06-03T10:15``), which compares
    as text with ISO timestamps written at any precision; ``utc_offset`` the zone's offset,
    None when the value had none.
    """

    text: str
    iso: str
    precision: Precision
    start: datetime
    end: datetime
    utc_offset: timedelta | None = None

    @property
    def start_utc(self) -> datetime:
        """The first instant, in UTC (a time without a zone is taken as UTC)."""
        return (self.start - (self.utc_offset or timedelta())).replace(tzinfo=UTC)

    @property
    def end_utc(self) -> datetime:
        """The instant after the last one, in UTC (a time without a zone is taken as UTC)."""
        return (self.end - (self.utc_offset or timedelta())).replace(tzinfo=UTC)

    @property
    def last(self) -> datetime:
        """The last microsecond of the period (naive, as written)."""
        return self.end - timedelta(microseconds=1)


def date_forms(finest: Precision = "second") -> str:
    """What a date may be, in words, down to ``finest``: "a year like 2010 or a month..."."""
    rank = PRECISIONS.index(finest)
    forms = [text for name, text in _FORMS if PRECISIONS.index(name) <= rank]
    return forms[0] if len(forms) == 1 else f"{', '.join(forms[:-1])} or {forms[-1]}"


def period(
    value: Any, param: str, *, finest: Precision = "second", note: str = ""
) -> Period | None:
    """The :class:`Period` that ``value`` names; None when it is None or empty.

    Parameters
    ----------
    value
        A date in the module's grammar (an int is a year).
    param
        The parameter's Python keyword, for the error message (``since``).
    finest
        The finest precision accepted; a finer date is refused with the same wording.
    note
        Why the precision is limited, appended to the error (``the simulator renders
        whole years``).
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    found = _GRAMMAR.fullmatch(text)
    parsed = _parse(found) if found is not None else None
    if parsed is None or PRECISIONS.index(parsed[0]) > PRECISIONS.index(_finest(finest)):
        raise InputError(_malformed(param, value, finest, note))
    precision, start, end, offset = parsed
    iso = start.strftime("%Y-%m-%dT%H:%M:%S")[: _ISO_LENGTH[precision]]
    return Period(text, iso, precision, start, end, offset)


def bounds(
    since: Any,
    until: Any,
    *,
    finest: Precision = "second",
    note: str = "",
    zones: bool = True,
) -> tuple[Period | None, Period | None]:
    """The periods of ``since`` and ``until`` (each None when not given), checked in order.

    ``since`` counts from the start of its period, ``until`` to the end of its own; a
    ``since`` that starts after ``until`` ends is refused. ``zones=False`` drops the time
    zones (for times that are local wherever they were taken, as cameras write them).
    """
    start = period(since, "since", finest=finest, note=note)
    end = period(until, "until", finest=finest, note=note)
    if not zones:
        start = replace(start, utc_offset=None) if start is not None else None
        end = replace(end, utc_offset=None) if end is not None else None
    if start is not None and end is not None and start.start_utc >= end.end_utc:
        raise InputError(
            f"`since` {start.text} is after `until` {end.text}; give the earlier date first"
        )
    return start, end


def _finest(finest: Precision) -> Precision:
    # a time of day is written to the minute or the second: allowing one allows both
    return "second" if finest == "minute" else finest


def _malformed(param: str, value: Any, finest: Precision, note: str) -> str:
    shown = str(value) if isinstance(value, int) else repr(value)
    tail = f"; {note}" if note else ""
    return f"`{param}` {shown} is not {date_forms(_finest(finest))}{tail}"


def _parse(found: re.Match[str]) -> tuple[Precision, datetime, datetime, timedelta | None] | None:
    parts = found.groupdict()
    year = int(parts["year"])
    month = int(parts["month"] or 1)
    day = int(parts["day"] or 1)
    hour = int(parts["hour"] or 0)
    minute = int(parts["minute"] or 0)
    second = int(parts["second"] or 0)
    try:
        start = datetime(year, month, day, hour, minute, second)
    except ValueError:  # no such day (2019-02-30) or time (25:00)
        return None
    precision: Precision
    if parts["second"] is not None:
        precision, step = "second", timedelta(seconds=1)
    elif parts["minute"] is not None:
        precision, step = "minute", timedelta(minutes=1)
    elif parts["day"] is not None:
        precision, step = "day", timedelta(days=1)
    elif parts["month"] is not None:
        precision = "month"
        step = _next_month(start) - start
    else:
        precision = "year"
        step = _next_year(start) - start
    try:
        end = start + step
    except OverflowError:  # the last period of year 9999
        end = datetime.max
    offset = _offset(parts["zone"])
    if offset is False:
        return None
    return precision, start, end, offset


def _next_month(start: datetime) -> datetime:
    if start.month == 12:
        return _next_year(start)
    return start.replace(month=start.month + 1)


def _next_year(start: datetime) -> datetime:
    if start.year == datetime.max.year:
        return datetime.max
    return start.replace(year=start.year + 1, month=1)


def _offset(zone: str | None) -> timedelta | None | Literal[False]:
    """The zone's UTC offset; None without a zone; False when it is not a real offset."""
    if zone is None:
        return None
    if zone == "Z":
        return timedelta()
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        return False
    return sign * timedelta(hours=hours, minutes=minutes)
