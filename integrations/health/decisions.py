"""The health decisions, as pure functions: plain values in, plain values out, no database and
no clock. The handler, the admin's board and the API call the same ones.

- `evaluate`: a probe's outcome against its conditions, in the manner of Gatus
  (`[STATUS] == 200`, `[RESPONSE_TIME] < 300`, `[CONNECTED] == true`, `[BODY].status == UP`,
  `[BODY] == pat(*ok*)`, `[STATUS] == any(200, 204)`).
- `assess`: the state the newest windows add up to: down after `down_after` failed windows in a
  row, pending before that (Uptime Kuma's retries); up again only after `up_after` good windows
  in a row (Gatus' success-threshold, kuma#3031's hysteresis); degraded when up but slow.
- `important`: whether a change is worth telling an operator (Uptime Kuma's isImportantBeat):
  into or out of down, into degraded, or back to up from it; not up <-> pending.
"""

from __future__ import annotations

import fnmatch
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

UNKNOWN, UP, PENDING, DEGRADED, DOWN = "unknown", "up", "pending", "degraded", "down"
DEFAULT_CONDITIONS = ("[CONNECTED] == true", "[STATUS] < 400")
OUTAGES = uuid.UUID("3b0f6c55-7e2a-4a5f-9f0d-2c1f6a8e9b41")


@dataclass(frozen=True)
class Probe:
    """What one probe saw: connected or not, the status, how long, the body (bounded)."""

    connected: bool
    status: int | None = None
    latency_ms: int | None = None
    body: bytes = b""
    error: str = ""


@dataclass(frozen=True)
class HealthPolicy:
    down_after: int = 3  # failed windows in a row (Gatus' failure-threshold default)
    up_after: int = 2  # good windows in a row after being down (Gatus' success-threshold)
    slow_ms: int = 2000  # slower than this is degraded


_CONDITION = re.compile(
    r"^\s*\[(STATUS|RESPONSE_TIME|CONNECTED|BODY)\]((?:\.[\w-]+)*)\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*$"
)


def check_conditions(conditions: Sequence[str]) -> None:
    """ValueError naming the first condition that does not parse."""
    for condition in conditions:
        if not _CONDITION.match(condition):
            raise ValueError(
                f"{condition!r} is not a condition: write [STATUS], [RESPONSE_TIME], "
                "[CONNECTED] or [BODY](.path) then ==, !=, <, <=, > or >= and a value"
            )


def evaluate(conditions: Sequence[str], probe: Probe) -> list[str]:
    """The conditions the probe failed (empty: it passed). Not connected fails every
    condition but [CONNECTED] == false."""
    failed = []
    for condition in conditions:
        match = _CONDITION.match(condition)
        if match is None:
            failed.append(f"{condition} (not a condition)")
            continue
        placeholder, path, op, expected = match.groups()
        actual = _actual(placeholder, path, probe)
        if not _holds(actual, op, expected):
            failed.append(f"{condition} (was {_shown(actual)})")
    return failed


def _actual(placeholder: str, path: str, probe: Probe) -> Any:
    if placeholder == "CONNECTED":
        return probe.connected
    if not probe.connected:
        return None
    if placeholder == "STATUS":
        return probe.status
    if placeholder == "RESPONSE_TIME":
        return probe.latency_ms
    text = probe.body.decode(errors="replace")
    if not path:
        return text
    try:
        value: Any = json.loads(text)
    except ValueError:
        return None
    for part in path.strip(".").split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _holds(actual: Any, op: str, expected: str) -> bool:
    if expected.startswith("any(") and expected.endswith(")"):
        options = [o.strip() for o in expected[4:-1].split(",")]
        held = any(_compare(actual, "==", option) for option in options)
        return held if op == "==" else not held if op == "!=" else False
    return _compare(actual, op, expected)


def _compare(actual: Any, op: str, expected: str) -> bool:
    if actual is None:
        return op == "!=" and expected not in ("null", "")
    if expected.startswith("pat(") and expected.endswith(")"):
        held = fnmatch.fnmatchcase(str(actual), expected[4:-1])
        return held if op == "==" else not held if op == "!=" else False
    if isinstance(actual, bool) or expected in ("true", "false"):
        left, right = str(actual).lower(), expected.lower()
        return left == right if op == "==" else left != right if op == "!=" else False
    try:
        number, limit = float(actual), float(expected)
    except (TypeError, ValueError):
        text = expected.strip("\"'")
        return str(actual) == text if op == "==" else str(actual) != text if op == "!=" else False
    return {
        "==": number == limit,
        "!=": number != limit,
        "<": number < limit,
        "<=": number <= limit,
        ">": number > limit,
        ">=": number >= limit,
    }[op]


def _shown(actual: Any) -> str:
    text = "nothing" if actual is None else str(actual)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Window:
    """One window's final result, as assess reads it."""

    window: datetime
    ok: bool
    slow: bool = False


def streak(newest_first: Sequence[Window]) -> int:
    """How many of the newest windows in a row went as the newest did."""
    count = 0
    for result in newest_first:
        if result.ok != newest_first[0].ok:
            break
        count += 1
    return count


def assess(newest_first: Sequence[Window], *, before: str, policy: HealthPolicy) -> str:
    """The state after the newest window, from the windows newest first and the state before."""
    if not newest_first:
        return before
    streak_ = streak(newest_first)
    if not newest_first[0].ok:
        if streak_ >= policy.down_after or before == DOWN:
            return DOWN
        return PENDING
    if before == DOWN and streak_ < policy.up_after:
        return DOWN
    return DEGRADED if newest_first[0].slow else UP


def important(old: str, new: str) -> bool:
    """Into or out of down, into degraded, or back to up from degraded."""
    if old == new:
        return False
    return DOWN in (old, new) or new == DEGRADED or (old == DEGRADED and new == UP)


def outage_failure_id(connection_id: uuid.UUID | str, since: datetime) -> str:
    """One failureId per outage: the same however often its first window is handled."""
    return str(uuid.uuid5(OUTAGES, f"{connection_id}:{since.isoformat()}"))
