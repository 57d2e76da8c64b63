"""OTLP's vocabulary: span kinds, status codes, log severities and aggregation temporalities.

Read from opentelemetry-proto's own enums, so that the numbers and names are the ones exporters
send: ingestion validates against them (`OtlpEnum.problem`), the console and the API name them
(`span_kind_name`, `status_name`, `severity_name`), correlation groups log records by them
(`SEVERITIES`). Nothing else in the platform spells out an OTLP enum.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

# What an OTLP JSON enum value that names no number becomes (an unknown name, 1.5, true, a
# number beyond int32, an object): a number no enum has, which validation rejects. Left to
# ParseDict, they would be read as something else: an unknown name as 0 (ignore_unknown_fields
# ignores it), 1.5 as 1, true as 1, and 2**40 as 0.
NOT_AN_ENUM = -(2**31)


@dataclass(frozen=True)
class OtlpEnum:
    """An OTLP enum: its name and numbers, and the names ingestion takes for them."""

    name: str
    numbers: frozenset[int]
    names: dict[str, int]

    @classmethod
    def of(cls, descriptor) -> OtlpEnum:
        numbers = {value.name: value.number for value in descriptor.values}
        return cls(descriptor.name, frozenset(numbers.values()), numbers)

    def short_names(self, prefix: str) -> dict[int, str]:
        """Each number's name without the enum's prefix: {2: "SERVER"} for SPAN_KIND_SERVER."""
        return {number: name.removeprefix(prefix) for name, number in self.names.items()}

    def problem(self, field: str, number: int) -> str | None:
        """What is wrong with ``number`` as this enum's value of ``field``; None if nothing."""
        if number in self.numbers:
            return None
        article = "an" if self.name[0] in "AEIOU" else "a"
        if number == NOT_AN_ENUM:
            return f"{field} is neither {article} {self.name} number nor the name of one"
        lowest, highest = min(self.numbers), max(self.numbers)
        return f"{field} {number} is not {article} {self.name} ({lowest} to {highest})"


SPAN_KIND = OtlpEnum.of(Span.SpanKind.DESCRIPTOR)
STATUS_CODE = OtlpEnum.of(Status.StatusCode.DESCRIPTOR)
SEVERITY_NUMBER = OtlpEnum.of(SeverityNumber.DESCRIPTOR)
AGGREGATION_TEMPORALITY = OtlpEnum.of(AggregationTemporality.DESCRIPTOR)

# Span kinds as the console shows them: UNSPECIFIED, INTERNAL, SERVER, CLIENT, ...
SPAN_KINDS = SPAN_KIND.short_names("SPAN_KIND_")
# Span status codes as the console and the trace filter spell them: unset, ok, error.
STATUS_CODES = {n: name.lower() for n, name in STATUS_CODE.short_names("STATUS_CODE_").items()}
STATUS_ERROR = Status.STATUS_CODE_ERROR

# SeverityNumber: each short name (TRACE, DEBUG, INFO, WARN, ERROR, FATAL) is the first number
# of its range of four, which TRACE2..FATAL4 name further (1 to 24); 0 is UNSPECIFIED.
SEVERITY_NAMES = {
    name: number
    for number, name in SEVERITY_NUMBER.short_names("SEVERITY_NUMBER_").items()
    if number
}
# (lowest, highest, short name) of each range, lowest first.
SEVERITIES = tuple(
    (number, number + 3, name) for name, number in SEVERITY_NAMES.items() if not name[-1].isdigit()
)
# The short names, most severe first, as the console ranks counts of records.
SEVERITY_ORDER = [name for _, _, name in reversed(SEVERITIES)] + ["UNSPECIFIED"]
ERROR_SEVERITY = SeverityNumber.SEVERITY_NUMBER_ERROR  # ERROR and FATAL from here on


def span_kind_name(number: int) -> str:
    return SPAN_KINDS.get(number, str(number))


def status_name(number: int) -> str:
    return STATUS_CODES.get(number, str(number))


def severity_name(number: int) -> str:
    """The short name of a SeverityNumber's range (17 to 20: ERROR), UNSPECIFIED for others."""
    return next((name for lo, hi, name in SEVERITIES if lo <= number <= hi), "UNSPECIFIED")
