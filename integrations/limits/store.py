"""Where buckets and circuits are written: on a connection that commits at once.

A handler runs inside its batch's transaction (core.runtime.dispatch), and a webhook batch keeps
it open through its POSTs. A bucket's UPDATE made there would lock the bucket's row until the
batch commits, and every other process sending to that vendor or host would wait for this
batch's POSTs: the limiter would serialize what it only meant to pace (the webhooks hold their
subscriptions FOR KEY SHARE for just that reason). So on PostgreSQL, inside a transaction, every
write of a bucket or a circuit goes through a connection of its own, in autocommit (all of them:
one row locked by the batch's connection and then wanted by this one would wait for itself).
It is opened for the outermost `committing()` and closed when that ends: a cached one would
outlive the test database it was opened on (DROP DATABASE refuses while a session is
connected), and one `committing()` around a batch's calls opens it once. Outside a transaction,
and on SQLite, whose one writer is the batch itself, it is the default connection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend

ALIAS = "limits_autocommit"
_depth = threading.local()


@contextmanager
def committing() -> Iterator[BaseDatabaseWrapper]:
    """A connection whose statements commit as they run (a transaction of its own, with
    `transaction.atomic(using=db.alias)`, commits when that ends)."""
    depth = getattr(_depth, "n", 0)
    if depth == 0 and (connection.vendor != "postgresql" or not connection.in_atomic_block):
        yield connection
        return
    if depth == 0:
        # The default database's settings as they are now (a test run renames the database);
        # this thread's own, known to the ORM by ALIAS but not one of DATABASES.
        settings_dict = dict(connections.settings[DEFAULT_DB_ALIAS])
        # Its commits do not wait for the WAL flush (a few ms each, on every page a sync reads
        # and every batch a webhook host takes): a PostgreSQL crash can lose the last few
        # hundred milliseconds of grants and outcomes, which lets a few more calls through,
        # and other processes still see each write at once.
        options = dict(settings_dict.get("OPTIONS") or {})
        options["options"] = f"{options.get('options', '')} -c synchronous_commit=off".strip()
        settings_dict["OPTIONS"] = options
        backend = load_backend(settings_dict["ENGINE"])
        connections[ALIAS] = backend.DatabaseWrapper(settings_dict, ALIAS)
    _depth.n = depth + 1
    try:
        yield connections[ALIAS]
    finally:
        _depth.n = depth
        if depth == 0:
            connections[ALIAS].close()
            del connections[ALIAS]
