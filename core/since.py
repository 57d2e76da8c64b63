"""`since` as operators write it, in commands and in API filters alike."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.utils import timezone

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, *, now: datetime) -> datetime:
    """An ISO 8601 date or datetime (naive means the server's time zone), or a duration
    back from now such as 30m, 2h, 7d or 1w; in UTC. ValueError says what is accepted, and
    when the time is outside the calendar (before year 1 or after 9999)."""
    if match := _DURATION.match(value.strip()):
        amount, unit = match.groups()
        try:
            return (now - timedelta(**{_UNITS[unit]: int(amount)})).astimezone(UTC)
        except (OverflowError, ValueError):  # ValueError: more digits than int() takes
            raise ValueError(f"{value!r} goes back before the year 1.") from None
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither an ISO datetime (e.g. 2025-01-31T14:00:00Z) "
            "nor a duration back from now (e.g. 30m, 2h, 7d, 1w)."
        ) from None
    try:
        return (since if timezone.is_aware(since) else timezone.make_aware(since)).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is outside the calendar (years 1 to 9999) in UTC.") from None
