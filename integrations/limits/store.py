"""Where buckets and circuits are written: on a connection that commits at once.

A handler runs inside its batch's transaction (core.runtime.dispatch), and a webhook batch keeps
it open through its POSTs. A bucket's UPDATE made there would lock the bucket's row until the
batch commits, and every other process sending to that vendor or host would wait for this
batch's POSTs: the limiter would serialize what it only meant to pace (the webhooks hold their
subscriptions FOR KEY SHARE for just that reason). So on PostgreSQL, inside a transaction, every
write of a bucket or a circuit goes through a connection of its own, in autocommit (all of them:
one row locked by the batch's connection and then wanted by this one would wait for itself).
Outside a transaction, and on SQLite, whose one writer is the batch itself, it is the default
connection.

That connection is kept between uses, one per process and thread: opening one costs a connect
(8-15 ms measured), once per sync message or webhook batch when it was opened per use. Kept,
it must not outlive what it was opened for:
- a fork (qcluster forks its workers): a child never uses, nor closes, its parent's (closing it
  would end the parent's session on the socket they share); it opens its own;
- an error on it (a database error through `committing()`, or one Django noted): closed, the
  next use reconnects (so does a server restart: its socket reads as closed before use);
- the database it was opened on: one whose name changed (a test run renames the default
  database) is closed. Between uses the server ends it after IDLE_SESSION_MS on its own
  (idle_session_timeout, set as a use ends and lifted as the next begins: a webhook batch
  holds it idle through its POSTs), so a test database's DROP (which waits up to 5 s for
  other sessions to leave) never finds it there, nor does a process that stopped syncing
  hold a session; one idle longer than REUSE_WITHIN_S is not reused (the server may be
  ending it). The two SETs cost two round trips a use, a connect cost 8-15 ms.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend

ALIAS = "limits_autocommit"
IDLE_SESSION_MS = 3000
REUSE_WITHIN_S = 2.0
_local = threading.local()
# Connections inherited through a fork: kept referenced, never closed nor collected, since
# closing (or collecting) one would send the server a Terminate on the parent's socket.
_inherited: list[Any] = []


@contextmanager
def committing() -> Iterator[BaseDatabaseWrapper]:
    """A connection whose statements commit as they run (a transaction of its own, with
    `transaction.atomic(using=db.alias)`, commits when that ends)."""
    depth = getattr(_local, "depth", 0)
    if depth == 0 and (connection.vendor != "postgresql" or not connection.in_atomic_block):
        yield connection
        return
    if depth == 0:
        connections[ALIAS] = _kept()
    _local.depth = depth + 1
    failed = False
    try:
        yield connections[ALIAS]
    except (DatabaseError, psycopg.Error):
        failed = True
        raise
    finally:
        _local.depth = depth
        if depth == 0:
            db = connections[ALIAS]
            del connections[ALIAS]
            if failed or db.errors_occurred or db.in_atomic_block or not _idle(db):
                _discard(db)
            else:
                _local.last_used = time.monotonic()


def _kept() -> BaseDatabaseWrapper:
    """This thread's limits connection, reused when it still may be, else a new one."""
    settings_dict = _settings()
    db = getattr(_local, "db", None)
    if db is not None:
        if getattr(_local, "pid", None) != os.getpid():
            _inherited.append(db)
            db = _local.db = None
        elif (
            db.settings_dict["NAME"] != settings_dict["NAME"]
            or time.monotonic() - getattr(_local, "last_used", 0.0) > REUSE_WITHIN_S
            or not _alive(db)
            or not _busy(db)
        ):
            _discard(db)
            db = None
    if db is None:
        backend = load_backend(settings_dict["ENGINE"])
        db = backend.DatabaseWrapper(settings_dict, ALIAS)
        _local.db, _local.pid = db, os.getpid()
    return db


def _settings() -> dict[str, Any]:
    # The default database's settings as they are now (a test run renames the database).
    settings_dict = dict(connections.settings[DEFAULT_DB_ALIAS])
    # Its commits do not wait for the WAL flush (a few ms each, on every page a sync reads
    # and every batch a webhook host takes): a PostgreSQL crash can lose the last few
    # hundred milliseconds of grants and outcomes, which lets a few more calls through,
    # and other processes still see each write at once.
    options = dict(settings_dict.get("OPTIONS") or {})
    options["options"] = f"{options.get('options', '')} -c synchronous_commit=off".strip()
    settings_dict["OPTIONS"] = options
    return settings_dict


def _idle(db: BaseDatabaseWrapper) -> bool:
    """Between uses the server may end the session after IDLE_SESSION_MS (one round trip).
    False: the connection is unusable."""
    if db.connection is None:
        return True
    try:
        db.connection.execute(f"SET idle_session_timeout = {IDLE_SESSION_MS}")
    except psycopg.Error:
        return False
    return _alive(db)


def _busy(db: BaseDatabaseWrapper) -> bool:
    """In use, never: a webhook batch holds its limits connection, idle, through its POSTs.
    False: the connection is unusable (the next is opened instead)."""
    if db.connection is None:
        return True
    try:
        db.connection.execute("SET idle_session_timeout = 0")
    except psycopg.Error:
        return False
    return True


def _alive(db: BaseDatabaseWrapper) -> bool:
    """Not closed, by us or by the server (an idle autocommit session has nothing to read
    unless the server ended it: then its socket is readable). No round trip."""
    raw = db.connection
    if raw is None:
        return True  # not connected yet: the first statement connects
    if raw.closed or raw.broken:
        return False
    try:
        readable, _, _ = select.select([raw.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _discard(db: BaseDatabaseWrapper) -> None:
    # A broken connection may fail its close: it is gone either way.
    with contextlib.suppress(Exception):
        db.close()
    if getattr(_local, "db", None) is db:
        _local.db = None


def close() -> None:
    """Close this thread's kept limits connection (if any), e.g. before dropping its database."""
    db = getattr(_local, "db", None)
    if db is not None and getattr(_local, "pid", None) == os.getpid():
        _discard(db)
