"""How the console writes times, durations and figures for a person.

One time format everywhere, to the second, in the site's time zone: "2026-12-02 06:33:16 UTC".
`format_moment` writes it in Python (admin columns, tooltips, chart labels); Django's own
rendering of a datetime (an admin list's or read-only field's, `{{ value }}` in a template)
writes the same, from DATETIME_FORMAT in core/formats/en/formats.py (settings.FORMAT_MODULE_PATH):
the admin's default ("Dec. 2, 2026, 6:33 a.m.") stops at the minute, too coarse for an operator
matching a page with a log line.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone


def format_moment(moment: datetime | None) -> str:
    """An aware datetime in the one format, "-" for none."""
    if moment is None:
        return "-"
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S %Z}"


def ns_to_datetime(ns: int | None) -> datetime | None:
    """A Unix time in nanoseconds as an aware datetime, to the microsecond; None when it does not
    fit in one (a client may send anything)."""
    if ns is None:
        return None
    try:
        seconds, rest = divmod(ns, 1_000_000_000)
        return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=rest // 1000)
    except (OverflowError, OSError, ValueError):
        return None


def format_ns(ns: int | None) -> str:
    """A Unix time in nanoseconds (a span's, a log record's) in the one format."""
    moment = ns_to_datetime(ns)
    if moment is None:
        return f"{ns} ns (out of range)"
    return format_moment(moment)


def format_ms(ms: float) -> str:
    """A duration for a person: three significant figures are plenty on a waterfall."""
    if ms == 0:
        return "0 ms"
    if abs(ms) >= 100:
        return f"{ms:,.0f} ms"
    if abs(ms) >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def format_duration(seconds: float | None) -> str:
    """A wait or an age for a person, to the second and in its two largest units: "45 s",
    "3 min 12 s", "2 h 5 min", "3 d 4 h"; "-" for none."""
    if seconds is None:
        return "-"
    seconds = max(round(seconds), 0)
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    if days:
        return f"{days} d {h} h"
    if hours:
        return f"{hours} h {m} min"
    if minutes:
        return f"{minutes} min {s} s"
    return f"{s} s"


def format_value(value: float | None, digits: int = 6) -> str:
    """A figure for a person: a few significant figures, thousands separated, "-" for none."""
    if value is None:
        return "-"
    return f"{value:,.{digits}g}"


def format_count(count: int | None) -> str:
    return "-" if count is None else f"{count:,}"
