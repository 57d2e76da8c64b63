"""The console's one time format (core.formats), in Python and in Django's own rendering."""

from __future__ import annotations

from datetime import UTC, datetime

from django.template import Context, Template
from django.utils import formats

from core.formats import format_duration, format_moment, format_ns, ns_to_datetime

MOMENT = datetime(2026, 12, 2, 6, 33, 16, 500_000, tzinfo=UTC)


def test_it_writes_a_time_to_the_second_in_the_sites_time_zone():
    assert format_moment(MOMENT) == "2026-12-02 06:33:16 UTC"
    assert format_moment(None) == "-"


def test_it_writes_a_time_as_django_renders_one_in_the_admin_and_templates():
    rendered = Template("{{ moment }}").render(Context({"moment": MOMENT}))

    assert rendered == formats.localize(MOMENT) == format_moment(MOMENT)


def test_it_converts_nanoseconds_to_a_datetime_to_the_microsecond():
    assert ns_to_datetime(1_700_000_000_123_456_789) == datetime(
        2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC
    )
    assert ns_to_datetime(10**30) is None


def test_it_writes_a_nanosecond_time_and_says_when_it_is_out_of_range():
    assert format_ns(1_700_000_000_123_456_789) == "2023-11-14 22:13:20 UTC"
    assert format_ns(10**30) == f"{10**30} ns (out of range)"


def test_it_writes_a_duration_to_the_second_in_its_two_largest_units():
    assert [format_duration(s) for s in (0, 45.4, 192, 7500, 273_600, None)] == [
        "0 s", "45 s", "3 min 12 s", "2 h 5 min", "3 d 4 h", "-",
    ]  # fmt: skip
