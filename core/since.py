"""`since` as operators write it, in commands and in API filters alike."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.utils import timezone

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, *, now: datetime) -> datetime:
    """An ISO 8601 date or datetime (naive means the server's time zone), or a duration
    back from now such as 30m, 2h, 7d or 1w. ValueError says what is accepted."""
    if match := _DURATION.match(value.strip()):
        amount, unit = match.groups()
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither an ISO datetime (e.g. 2025-01-31T14:00:00Z) "
            "nor a duration back from now (e.g. 30m, 2h, 7d, 1w)."
        ) from None
    return since if timezone.is_aware(since) else timezone.make_aware(since)
