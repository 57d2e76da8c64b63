"""The limits' own connection (integrations.limits.store): kept between a process's uses instead
of a connect per message or batch, and never kept past an error, an idle spell, or a fork."""

from __future__ import annotations

import os
import time

import pytest
from django.db import DatabaseError, connection

from integrations.limits import store


def backend_pid() -> int:
    with store.committing() as db, db.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_it_keeps_the_limits_connection_from_one_batch_to_the_next(db, postgres):
    first = backend_pid()
    second = backend_pid()

    assert first == second
    assert first != backend_pid_of_default()


def backend_pid_of_default() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_it_opens_a_new_limits_connection_after_an_error_on_it(db, postgres):
    first = backend_pid()
    with pytest.raises(DatabaseError), store.committing() as db, db.cursor() as cursor:
        cursor.execute("SELECT no_such_column FROM limits_ratebucket")

    assert backend_pid() != first


def test_it_opens_a_new_limits_connection_after_an_idle_spell(db, postgres, monkeypatch):
    first = backend_pid()
    monkeypatch.setattr(store, "REUSE_WITHIN_S", 0.0)

    assert backend_pid() != first


def test_it_opens_a_new_limits_connection_when_the_server_ended_the_kept_one(db, postgres):
    first = backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])

    assert backend_pid() != first


def test_it_never_uses_its_parents_limits_connection_in_a_forked_child(db, postgres):
    parent = backend_pid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its own connection, and no finalizer run on the parent's
        try:
            os.write(write, str(backend_pid()).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        seen = int(pipe.read() or 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert seen not in (0, parent)
    assert backend_pid() == parent  # the parent's session is still there, and still kept


def test_it_keeps_the_limits_connection_open_while_a_batch_holds_it_idle(db, postgres, monkeypatch):
    monkeypatch.setattr(store, "IDLE_SESSION_MS", 200)
    first = backend_pid()  # ends with the server's idle limit set
    with store.committing() as db, db.cursor() as cursor:
        time.sleep(0.5)  # a webhook batch's POSTs, with the connection idle in its hands
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == first


def test_it_lets_the_server_end_an_idle_limits_connection_and_opens_another(
    db, postgres, monkeypatch
):
    monkeypatch.setattr(store, "IDLE_SESSION_MS", 200)
    first = backend_pid()
    time.sleep(0.5)  # a test database's DROP would find no session of it now

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [first])
        assert cursor.fetchone()[0] == 0
    assert backend_pid() != first
