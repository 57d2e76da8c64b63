"""Cooperative draining on SIGTERM.

`manage.py qcluster` creates the flag before django-q2 forks its processes, so every worker
process inherits it; a drain task checks it between messages, finishes the one in hand, commits,
and releases the rest of its batch for redelivery (seed 002: bounded drain on SIGTERM).
"""

from __future__ import annotations

import multiprocessing

_stopping = None


def install() -> None:
    global _stopping
    _stopping = multiprocessing.get_context("fork").Event()


def request() -> None:
    if _stopping is not None:
        _stopping.set()


def requested() -> bool:
    return _stopping is not None and _stopping.is_set()


def reset() -> None:
    """For tests: forget a previous request."""
    if _stopping is not None:
        _stopping.clear()
