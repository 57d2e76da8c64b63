"""A process that hammers one rate bucket for a while: `python -m
tests.integrations.limits.hammer <key> <rate> <burst> <seconds>` with DJANGO_SETTINGS_MODULE
and DATABASE_URL set; prints how many acquires it made and how many were granted, as JSON."""

import json
import sys
import time

import django

django.setup()

from integrations.limits import buckets  # noqa: E402

if __name__ == "__main__":
    key, rate, burst, seconds = (
        sys.argv[1],
        float(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
    )
    tries = granted = 0
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        tries += 1
        granted += buckets.acquire(key=key, rate=rate, burst=burst) is None
    print(json.dumps({"tries": tries, "granted": granted}))
