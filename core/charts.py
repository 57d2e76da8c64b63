"""Charts for the console, drawn on the server as inline SVG: no JavaScript, no client library.

Pure functions from values to geometry in px, which a template draws with <rect>, <circle>,
<polyline> and <text> (numbers unlocalized: SVG wants "1.5", not "1,5"). Every chart of the
console is built from these pieces:

- a slotted chart (`Axes`): one slot per window, oldest at the left, a value axis from `low` at
  the bottom to `high` at the top (`value_range`); bars (`Axes.bar`), bands (`Axes.band`), dots
  and polylines (`lines`), a gap where a slot has no value. A metric series' chart is one;
  `sparkline` and `bars` are the small ones (a rate over the last hour, a histogram's buckets);
  `spread` keeps the labels written beside a chart (each at its value) from overlapping;
- a time scale (`TimeScale`, `ticks`): intervals as bars along a time axis, rows in tree order
  (`tree_order`), fills by key (`Palette`). A trace's waterfall is one.

The y axis points down in SVG: `Axes.y` turns a value into px below the plot's top.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

# Fills in order of first appearance; none of them is red, which means "error".
PALETTE = ("#4e79a7", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#bab0ac", "#f28e2b")
ERROR_COLOR = "#d32f2f"
BAR_GAP = 0.15  # share of a slot left empty on either side of its bar
MIN_BAR_HEIGHT = 1.0  # px, so that a bar of zero is still seen
MIN_BAR_WIDTH = 1.0  # px, so that an instantaneous interval is still seen


@dataclass(frozen=True)
class Box:
    """A rectangle in px within the plot (y down from the plot's top)."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Dot:
    figure: str
    cx: float
    cy: float
    color: str


@dataclass(frozen=True)
class Line:
    figure: str
    points: str  # a polyline's "x,y x,y ..."
    color: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


def value_range(values: Iterable[float], *, with_zero: bool) -> tuple[float, float]:
    """The value axis, low to high: the values' extent, from zero for bars (a bar's length is
    its value), widened when flat so that a constant series sits mid-height."""
    values = [*values, 0.0] if with_zero else list(values)
    low, high = min(values, default=0.0), max(values, default=0.0)
    if low == high == 0:  # nothing, or zeros only: zero at the bottom
        return 0.0, 1.0
    if low == high:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    return low, high


@dataclass(frozen=True)
class Axes:
    """From slots and values to px: slot 0 at the left, `low` at the bottom of a plot `height`
    px high, each slot `slot_width` px wide."""

    slot_width: float
    low: float
    high: float
    height: float

    def y(self, value: float) -> float:
        return round(self.height - (value - self.low) / (self.high - self.low) * self.height, 2)

    def x(self, slot: int) -> float:
        return round(slot * self.slot_width, 2)

    def center(self, slot: int) -> float:
        return round((slot + 0.5) * self.slot_width, 2)

    @property
    def baseline(self) -> float | None:
        """The y of zero, when zero is on the axis."""
        return self.y(0.0) if self.low <= 0 <= self.high else None

    def bar(self, slot: int, value: float, *, gap: float = BAR_GAP) -> Box:
        """A bar from zero to `value` (down for a negative one), `gap` of the slot left empty on
        either side, at least MIN_BAR_HEIGHT px tall."""
        top, bottom = sorted((self.y(value), self.y(0.0)))
        margin = self.slot_width * gap
        return Box(
            x=round(slot * self.slot_width + margin, 2),
            y=top,
            width=round(self.slot_width - 2 * margin, 2),
            height=max(round(bottom - top, 2), MIN_BAR_HEIGHT),
        )

    def band(self, slot: int, low: float, high: float) -> Box:
        """The slot's whole width from `low` to `high` (in either order: a client's data may
        claim a min above its max)."""
        top, bottom = sorted((self.y(high), self.y(low)))
        return Box(x=self.x(slot), y=top, width=round(self.slot_width, 2), height=bottom - top)


def lines(
    values: Mapping[int, Mapping[str, float]], colors: Mapping[str, str], axes: Axes
) -> list[Line]:
    """One polyline per figure (a key of `colors`) and run of consecutive slots that have it: a
    line across a missing slot would invent the values in between (a lone slot's value is for
    a dot to show)."""
    drawn = []
    for name, color in colors.items():
        runs: list[list[str]] = []
        previous = None
        for slot in sorted(values):
            if name not in values[slot]:
                continue
            if previous is None or slot != previous + 1:
                runs.append([])
            runs[-1].append(f"{axes.center(slot)},{axes.y(values[slot][name])}")
            previous = slot
        drawn += [Line(name, " ".join(run), color) for run in runs if len(run) > 1]
    return drawn


# Small charts: a figure over time beside a number, a distribution's buckets.


@dataclass(frozen=True)
class Sparkline:
    width: float
    height: float
    lines: list[Line]
    dots: list[Dot]  # slots whose neighbours have no value: a line would not show them
    last: Dot | None  # the newest value, marked
    low: float
    high: float


def sparkline(
    values: Sequence[float | None],
    *,
    width: float = 120,
    height: float = 24,
    color: str = PALETTE[0],
    with_zero: bool = True,
) -> Sparkline:
    """A line of `values` (oldest first, None for a slot without one) across `width` px, from
    zero (or the lowest value) at the bottom to the highest at the top."""
    known = {slot: {"value": v} for slot, v in enumerate(values) if v is not None}
    low, high = value_range((v["value"] for v in known.values()), with_zero=with_zero)
    axes = Axes(slot_width=width / max(len(values), 1), low=low, high=high, height=height)
    lone = [
        Dot("value", axes.center(s), axes.y(v["value"]), color)
        for s, v in known.items()
        if s - 1 not in known and s + 1 not in known
    ]
    newest = max(known, default=None)
    last = (
        None
        if newest is None
        else Dot("value", axes.center(newest), axes.y(known[newest]["value"]), color)
    )
    return Sparkline(
        width=width,
        height=height,
        lines=lines(known, {"value": color}, axes),
        dots=lone,
        last=last,
        low=low,
        high=high,
    )


def bars(values: Sequence[float], *, width: float, height: float) -> list[Box]:
    """One bar per value, from zero, side by side across `width` px (a histogram's bucket
    counts, say)."""
    low, high = value_range(values, with_zero=True)
    axes = Axes(slot_width=width / max(len(values), 1), low=low, high=high, height=height)
    return [axes.bar(slot, value) for slot, value in enumerate(values)]


def spread(positions: Sequence[float], *, gap: float, low: float, high: float) -> list[float]:
    """`positions` (of labels beside a chart, each at its value's y) moved apart until any two
    are at least `gap` px apart and all lie within low..high, each as near its own as that
    allows; in the order given. Labels that cannot all fit are stacked from `high` up."""
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    placed = [float(positions[i]) for i in order]
    for n in range(len(placed)):  # downwards: each at least `gap` below the one above it
        floor = low if n == 0 else placed[n - 1] + gap
        placed[n] = max(placed[n], floor)
    for n in reversed(range(len(placed))):  # then back up from the bottom edge
        ceiling = high if n == len(placed) - 1 else placed[n + 1] - gap
        placed[n] = round(min(placed[n], ceiling), 2)
    moved = [0.0] * len(placed)
    for n, i in enumerate(order):
        moved[i] = placed[n]
    return moved


# Intervals on a time axis: a waterfall.


@dataclass(frozen=True)
class TimeScale:
    """From times (any unit: a trace's are nanoseconds) to px along an axis `width` px long that
    spans start..end."""

    start: int
    end: int
    width: float

    @property
    def total(self) -> int:
        return max(self.end - self.start, 1)

    @property
    def scale(self) -> float:
        """px per unit of time."""
        return self.width / self.total

    def x(self, time: int) -> float:
        return round((time - self.start) * self.scale, 2)

    def length(self, duration: int) -> float:
        """The px of a duration, at least MIN_BAR_WIDTH."""
        return round(max(max(duration, 0) * self.scale, MIN_BAR_WIDTH), 2)

    @classmethod
    def covering(cls, times: Iterable[int], *, width: float) -> TimeScale:
        """The scale whose axis spans every one of `times` (one at least)."""
        times = list(times)
        return cls(start=min(times), end=max(times), width=width)


def ticks(
    total: float, *, width: float, label: Callable[[float], str], count: int = 5
) -> list[Tick]:
    """`count` evenly spaced ticks along `width` px, labelled from 0 to `total`."""
    return [
        Tick(x=round(width * i / (count - 1), 2), label=label(total * i / (count - 1)))
        for i in range(count)
    ]


@dataclass
class Palette:
    """A fill per key, in order of first appearance, cycling through `colors`."""

    colors: Sequence[str] = PALETTE
    assigned: dict[Hashable, str] = field(default_factory=dict)

    def __call__(self, key: Hashable) -> str:
        return self.assigned.setdefault(key, self.colors[len(self.assigned) % len(self.colors)])


def tree_order(
    items: Sequence[T],
    *,
    key: Callable[[T], Hashable],
    parent: Callable[[T], Hashable],
    order: Callable[[T], tuple[Any, ...]],
) -> list[tuple[T, int]]:
    """Items with their depth, parents before children, siblings and roots by `order`.

    An item whose parent is not among `items` (not arrived yet, or past a cap) is a root. Items
    caught in a parent cycle (bad data) are not lost: the first of them by `order` becomes a
    root. Iterative, so that a deep chain cannot reach the recursion limit.
    """
    ids = {key(item) for item in items}
    children: dict[Hashable, list[T]] = defaultdict(list)
    roots = []
    for item in items:
        up = parent(item)
        if up and up in ids and up != key(item):
            children[up].append(item)
        else:
            roots.append(item)
    for siblings in children.values():
        siblings.sort(key=order)

    ordered: list[tuple[T, int]] = []
    seen: set[int] = set()

    def walk(root: T) -> None:
        stack = [(root, 0)]
        while stack:
            item, depth = stack.pop()
            if id(item) in seen:
                continue
            seen.add(id(item))
            ordered.append((item, depth))
            stack.extend((child, depth + 1) for child in reversed(children[key(item)]))

    for root in sorted(roots, key=order):
        walk(root)
    for item in sorted(items, key=order):  # only items in a cycle are left
        if id(item) not in seen:
            walk(item)
    return ordered
