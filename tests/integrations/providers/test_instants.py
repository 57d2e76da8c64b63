"""Reading vendors' instants: fromisoformat's own reading where it can, the same instant as
the normalizing reader's always."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from integrations.connections.providers.base import _parse_instant, parse_instant

OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timedelta(minutes=m))


@st.composite
def vendor_instants(draw: st.DrawFn) -> str:
    """An instant as GitHub, Jira or a generic API writes it: Z, +HH:MM or +HHMM, with 0 to 9
    digits of fractions, a T or a space, or no offset at all."""
    moment = draw(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)))
    text = moment.strftime("%Y-%m-%d") + draw(st.sampled_from("T ")) + moment.strftime("%H:%M:%S")
    digits = draw(st.integers(min_value=0, max_value=9))
    if digits:
        text += "." + f"{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
    offset = draw(OFFSETS)
    sign, total = ("-" if offset < timedelta(0) else "+"), abs(int(offset.total_seconds()) // 60)
    hours, minutes = divmod(total, 60)
    return text + draw(
        st.sampled_from(
            ["Z", f"{sign}{hours:02d}:{minutes:02d}", f"{sign}{hours:02d}{minutes:02d}", ""]
        )
    )


@given(text=vendor_instants())
def test_it_reads_an_instant_as_the_normalizing_reader_does(text: str) -> None:
    read = parse_instant(text)
    assert read == _parse_instant(text)
    assert read.tzinfo is UTC or read.utcoffset() == timedelta(0)


def test_it_reads_what_fromisoformat_refuses_by_normalizing_it() -> None:
    assert parse_instant(" 2024-05-01T10:00:00Z ") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_instant("2024-05-01T12:00:00.000+0200") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    jira = datetime(2024, 5, 1, 10, 7, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert parse_instant("2024-05-01T10:07:01.000-0500") == jira
