"""The console's chart geometry (core.charts): values in, px out, for a template to draw."""

from __future__ import annotations

import pytest

from core import charts
from core.formats import format_ms


def test_it_labels_the_time_axis_from_zero_to_the_total():
    assert [(t.x, t.label) for t in charts.ticks(100, width=720, label=format_ms)] == [
        (0, "0 ms"),
        (180, "25.0 ms"),
        (360, "50.0 ms"),
        (540, "75.0 ms"),
        (720, "100 ms"),
    ]


def test_it_puts_zero_on_the_axis_of_bars_and_widens_a_flat_one():
    assert charts.value_range([3.0, 5.0], with_zero=True) == (0.0, 5.0)
    assert charts.value_range([3.0, 5.0], with_zero=False) == (3.0, 5.0)
    assert charts.value_range([7.0, 7.0], with_zero=False) == pytest.approx((6.3, 7.7))
    assert charts.value_range([], with_zero=False) == (0.0, 1.0)


def test_it_draws_a_bar_from_zero_and_keeps_a_zero_bar_visible():
    axes = charts.Axes(slot_width=10, low=-10, high=10, height=100)

    up, down, zero = axes.bar(0, 10), axes.bar(1, -5), axes.bar(2, 0)

    assert (up.x, up.y, up.width, up.height) == (1.5, 0, 7, 50)
    assert (down.y, down.height) == (50, 25)
    assert zero.height == charts.MIN_BAR_HEIGHT
    assert axes.baseline == 50


def test_it_draws_a_band_whose_bounds_come_the_wrong_way_round():
    axes = charts.Axes(slot_width=10, low=0, high=10, height=100)

    assert axes.band(1, 8, 2) == axes.band(1, 2, 8) == charts.Box(x=10, y=20, width=10, height=60)


def test_it_breaks_a_line_where_a_slot_has_no_value():
    axes = charts.Axes(slot_width=10, low=0, high=10, height=10)
    values = {0: {"a": 1.0}, 1: {"a": 2.0}, 3: {"a": 3.0}, 4: {"a": 4.0}, 6: {"a": 5.0}}

    drawn = charts.lines(values, {"a": "red"}, axes)

    assert [line.points for line in drawn] == ["5.0,9.0 15.0,8.0", "35.0,7.0 45.0,6.0"]


def test_it_draws_a_sparkline_with_its_gaps_its_lone_values_and_its_newest():
    line = charts.sparkline([1.0, 2.0, None, 4.0, None], width=50, height=10)

    assert [x.points for x in line.lines] == ["5.0,7.5 15.0,5.0"]
    assert [(dot.cx, dot.cy) for dot in line.dots] == [(35.0, 0.0)]
    assert (line.last.cx, line.last.cy) == (35.0, 0.0)
    assert (line.low, line.high) == (0.0, 4.0)


def test_it_draws_an_empty_sparkline_without_a_mark():
    line = charts.sparkline([None, None])

    assert (line.lines, line.dots, line.last) == ([], [], None)


def test_it_draws_a_histograms_buckets_as_bars_side_by_side():
    boxes = charts.bars([0, 5, 10, 5], width=40, height=20)

    assert [b.x for b in boxes] == [1.5, 11.5, 21.5, 31.5]
    assert [b.height for b in boxes] == [1.0, 10.0, 20.0, 10.0]


def test_it_scales_times_to_px_and_keeps_an_instant_visible():
    scale = charts.TimeScale.covering([100, 300, 200], width=400)

    assert (scale.x(100), scale.x(300), scale.length(50), scale.length(0)) == (0, 400, 100, 1)


def test_it_fills_by_key_in_order_of_first_appearance():
    fill = charts.Palette(colors=["a", "b"])

    assert [fill(k) for k in ["x", "y", "x", "z"]] == ["a", "b", "a", "a"]


def test_it_orders_a_tree_parents_first_and_keeps_orphans_and_cycles():
    items = [("c", "b", 2), ("b", "a", 1), ("a", "", 0), ("o", "missing", 3), ("x", "y", 4)]
    items.append(("y", "x", 5))

    ordered = charts.tree_order(
        items, key=lambda i: i[0], parent=lambda i: i[1], order=lambda i: (i[2],)
    )

    assert [(i[0], depth) for i, depth in ordered] == [
        ("a", 0), ("b", 1), ("c", 2), ("o", 0), ("x", 0), ("y", 1),
    ]  # fmt: skip
