"""Silences as plain values: matchers on an instance's labels, as Alertmanager's (`=`, `!=`,
`=~`, `!~`; a regex matches the whole value; a label the instance lacks is ""), and whether a
set of silences holds an instance at an instant. Pure: no database, no clock.

An instance is matched on its labels (its rule's group_by keys) and `alertname`, its rule's
name, so that a silence can name one rule, one service, or one service under one rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

ALERTNAME = "alertname"
MAX_MATCHERS = 20
MAX_TEXT = 500


class MatchOp(StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: MatchOp
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        found = labels.get(self.label, "")
        if self.op is MatchOp.EQ:
            return found == self.value
        if self.op is MatchOp.NE:
            return found != self.value
        hit = re.fullmatch(self.value, found) is not None
        return hit if self.op is MatchOp.RE else not hit

    def as_json(self) -> dict[str, str]:
        return {"label": self.label, "op": self.op.value, "value": self.value}

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value!r}".replace("'", '"')


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    message: str


def matchers_of(data: Any) -> tuple[Matcher, ...]:
    """Stored or posted matchers ([{"label", "op", "value"}]) as Matchers; ValueError naming
    what is wrong."""
    if not isinstance(data, list):
        raise ValueError("matchers must be a list of {label, op, value}")
    found = []
    for i, item in enumerate(data):
        if not isinstance(item, Mapping) or set(item) != {"label", "op", "value"}:
            raise ValueError(f"matcher {i + 1} must be an object with label, op and value")
        label, op, value = item["label"], item["op"], item["value"]
        if not all(isinstance(x, str) for x in (label, op, value)):
            raise ValueError(f"matcher {i + 1}: label, op and value are strings")
        try:
            found.append(Matcher(label, MatchOp(op), value))
        except ValueError:
            ops = ", ".join(m.value for m in MatchOp)
            raise ValueError(f"matcher {i + 1}: op must be one of {ops}") from None
    return tuple(found)


def validate(data: Any, starts_at: datetime | None, ends_at: datetime | None) -> list[Problem]:
    """Every reason a silence is refused, by field."""
    problems = []
    try:
        matchers = matchers_of(data)
    except ValueError as exc:
        matchers = ()
        problems.append(Problem("matchers", str(exc)))
    else:
        if not matchers:
            problems.append(Problem("matchers", "a silence needs at least one matcher"))
        elif len(matchers) > MAX_MATCHERS:
            problems.append(Problem("matchers", f"at most {MAX_MATCHERS} matchers"))
    for i, matcher in enumerate(matchers, 1):
        if not matcher.label.strip():
            problems.append(Problem("matchers", f"matcher {i} needs a label"))
        if len(matcher.label) > MAX_TEXT or len(matcher.value) > MAX_TEXT:
            problems.append(Problem("matchers", f"matcher {i}: over {MAX_TEXT} characters"))
        if matcher.op in (MatchOp.RE, MatchOp.NRE):
            try:
                re.compile(matcher.value)
            except re.error as exc:
                problems.append(Problem("matchers", f"matcher {i}: not a regex: {exc}"))
    if matchers and not problems and all(m.matches({}) for m in matchers):
        # Alertmanager's rule: a silence whose every matcher matches an empty label would
        # silence everything, including what does not exist yet.
        problems.append(
            Problem(
                "matchers",
                "at least one matcher must not match an empty or missing label "
                '(a silence of everything): name a value, such as service.name="checkout"',
            )
        )
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        problems.append(Problem("endsAt", "must be after startsAt"))
    return problems


@dataclass(frozen=True, slots=True)
class Span:
    """One stored silence as the evaluation reads it."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime

    def active(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def instance_labels(labels: Mapping[str, str], rule_name: str) -> dict[str, str]:
    """What silences match: the instance's labels and its rule's name as `alertname`."""
    return {**labels, ALERTNAME: rule_name}


def silencing(spans: Iterable[Span], labels: Mapping[str, str], at: datetime) -> list[str]:
    """The ids of the silences that hold an instance with these labels at `at`."""
    return [span.id for span in spans if span.active(at) and span.matches(labels)]


def describe(matchers: Sequence[Matcher]) -> str:
    return ", ".join(str(m) for m in matchers)


def describe_json(data: Any) -> str:
    try:
        return describe(matchers_of(data))
    except ValueError:
        return "(invalid matchers)"
