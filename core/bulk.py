"""Bulk inserts of many rows: COPY on PostgreSQL, a multi-row INSERT elsewhere."""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from django.db import IntegrityError, connection, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

Row = tuple[Any, ...]  # a row's values, in the order of the statement's columns
Preparer = Callable[..., Any]  # a Python value to the database's: (value, connection)


def insert(model: type[models.Model], rows: Sequence[models.Model], *, columns: list[str]) -> None:
    """Insert `rows` (unsaved instances) as insert_rows does."""
    json_columns = _json_columns(model, columns)
    insert_rows(model, columns, [_values(row, columns, json_columns) for row in rows])


def insert_rows(model: type[models.Model], columns: list[str], rows: Sequence[Row]) -> None:
    """Insert plain rows: tuples in `columns` order (column names, or a foreign key's attname),
    JSON columns as JSON text. COPY on PostgreSQL: a bulk INSERT of a few hundred rows spends
    most of its time having psycopg bind thousands of parameters into SQL text. COPY has no
    ON CONFLICT: the caller leaves out rows already stored, and a row stored meanwhile by a
    concurrent transaction fails the COPY with an IntegrityError (transient: the retry leaves
    it out). Elsewhere (SQLite, one writer at a time) rows already stored are skipped."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        _copy(model, columns, rows)
    else:
        insert_new(model, columns, rows)


def _copy(model: type[models.Model], columns: list[str], rows: Sequence[Row]) -> None:
    # wrap_database_errors: psycopg's UniqueViolation becomes Django's IntegrityError.
    with connection.cursor() as cursor, connection.wrap_database_errors:
        _copy_into(cursor.cursor, model._meta.db_table, model, columns, rows)


def _copy_into(
    cursor: Any, table: str, model: type[models.Model], columns: list[str], rows: Sequence[Row]
) -> None:
    """COPY the rows into `table`'s `columns` (typed as `model`'s) on a psycopg cursor: in
    binary where every column's type has a binary form here (_BINARY_TYPES), in which psycopg
    packs each value in C by the column's type, where text COPY formats each in Python
    (measured: 20,000 alert instances' 7 columns in 0.05 s against 0.17-0.21 s as text)."""
    names = ", ".join(columns)
    types = _binary_types(model, tuple(columns))
    if types is None:
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    if "jsonb" in types:
        cursor.adapters.register_dumper(None, _JsonText)  # this cursor's, by type only
    with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


# A column's type (its db_type, without a length) -> what its values are sent as in a binary
# COPY. The values must be of the type's Python kind: an int for an integer, a UUID (not its
# text) for a uuid, an aware datetime, a str for text, JSON text for jsonb (as every bulk
# function takes JSON). A row with a column of any other type goes as text.
_BINARY_TYPES = {
    "bigint": "int8",
    "integer": "int4",
    "smallint": "int2",
    "uuid": "uuid",
    "text": "text",
    "varchar": "text",  # the column's own input checks its length
    "boolean": "bool",
    "timestamp with time zone": "timestamptz",
    "double precision": "float8",
    "date": "date",
    "jsonb": "jsonb",
}


@functools.cache
def _binary_types(model: type[models.Model], columns: tuple[str, ...]) -> list[str] | None:
    types = [_BINARY_TYPES.get(_db_type(model, c).split("(")[0]) for c in columns]
    return None if None in types else [t for t in types if t is not None]


class _JsonText(Dumper):
    """JSON text, as the bulk functions take it, in jsonb's binary form: a version byte (1),
    then the text. Looked up by type in a binary COPY (set_types), never by Python type."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + (obj.encode() if isinstance(obj, str) else bytes(obj))


def insert_new(
    model: type[models.Model],
    columns: list[str],
    rows: Sequence[Row],
    *,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert plain rows (as insert_rows takes them), skipping those whose unique key is stored
    already (ON CONFLICT DO NOTHING): one statement, without building a model per row. With
    `returning`, those columns of the rows it inserted (PostgreSQL, and SQLite from 3.35)."""
    table, names = model._meta.db_table, ", ".join(columns)
    if connection.vendor == "postgresql" and len(rows) >= COPY_NEW_FROM and not returning:
        # Mostly none is stored yet (a synced page's events): COPY them straight in, in a
        # savepoint. Only if one is (a unique key taken: IntegrityError) are they staged and
        # inserted ON CONFLICT DO NOTHING, which writes every row twice (measured on 1,000
        # events: 15 ms against 20 ms staged, commit included).
        try:
            with transaction.atomic():
                _copy(model, columns, rows)
        except IntegrityError:
            _copy_new(model, columns, rows)
        return []
    tail = f" RETURNING {', '.join(returning)}" if returning else ""
    inserted: list[tuple[Any, ...]] = []
    for source, params in row_sources(model, columns, rows):
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({names}) {source} ON CONFLICT DO NOTHING{tail}", params
            )
            if returning:
                inserted.extend(tuple(row) for row in cursor.fetchall())
    return inserted


# Past a few hundred rows, on PostgreSQL, insert_new goes through COPY (into a temporary table
# and one INSERT ... SELECT ... ON CONFLICT DO NOTHING from it when a row is stored): building
# and parsing array literals cost more than the rows' writes (measured: 1,000 events in 22-29
# ms against 40-68 ms unnested; at 100 rows the two are even, below that the extra statements
# lose).
COPY_NEW_FROM = 250
# And update_rows and upsert, past a few hundred rows, through COPY into a temporary table and
# one UPDATE ... FROM it, or INSERT ... ON CONFLICT DO UPDATE (an alert tick's 20,000 instances:
# their JSON states need no array literal; measured, about half the time of the arrays).
COPY_UPDATE_FROM = 500


def _copy_new(model: type[models.Model], columns: list[str], rows: Sequence[Row]) -> None:
    table = model._meta.db_table
    _staged(
        model,
        columns,
        rows,
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM staged "
        "ON CONFLICT DO NOTHING",
    )


def _staged(
    model: type[models.Model], columns: list[str], rows: Sequence[Row], statement: str
) -> None:
    """COPY the rows into a temporary table shaped like `model`'s table's columns, then run
    `statement`, which reads them as `staged`; the table is emptied after it."""
    table, names = model._meta.db_table, ", ".join(columns)
    staging = f"{table}_staged_{zlib.crc32(names.encode()):08x}"
    # In a transaction of its own when the caller has none: in autocommit, ON COMMIT DELETE
    # ROWS would empty the staging table between the COPY and the statement.
    with (
        transaction.atomic(savepoint=False),
        connection.cursor() as cursor,
        connection.wrap_database_errors,
    ):
        # One table per session and column list (created once, not per transaction: each
        # creation writes the catalog), emptied once the statement has read it, so a second
        # call in the same transaction starts from nothing; ON COMMIT DELETE ROWS reclaims the
        # deleted rows' space (autovacuum never visits temporary tables).
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "
            f"SELECT {names} FROM {table} WITH NO DATA"
        )
        _copy_into(cursor.cursor, staging, model, columns, rows)
        # Read in place, then emptied: a DELETE ... RETURNING feeding the statement kept the
        # rows in a tuplestore, which spilled to disk past work_mem (measured on 20,000 alert
        # instances: the UPDATE with its commit in 167 ms against 224).
        cursor.execute(
            f"WITH staged AS NOT MATERIALIZED (SELECT {names} FROM {staging}) {statement}"
        )
        cursor.execute(f"DELETE FROM {staging}")


def upsert(
    model: type[models.Model],
    columns: list[str],
    rows: Sequence[Row],
    *,
    unique: list[str],
    update: list[str],
) -> None:
    """Insert plain rows, or overwrite the `update` columns of the rows stored under the same
    `unique` columns: one statement (ON CONFLICT DO UPDATE), without building a model per row
    (Django's bulk_create binds each value of each row on its way); past COPY_UPDATE_FROM rows
    on PostgreSQL from a COPY."""
    table, names = model._meta.db_table, ", ".join(columns)
    sets = ", ".join(f"{c} = excluded.{c}" for c in update)
    conflict = f"ON CONFLICT ({', '.join(unique)}) DO UPDATE SET {sets}"
    if connection.vendor == "postgresql" and len(rows) >= COPY_UPDATE_FROM:
        _staged(
            model,
            columns,
            rows,
            f"INSERT INTO {table} ({names}) SELECT {names} FROM staged {conflict}",
        )
        return
    for source, params in row_sources(model, columns, rows):
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({names}) {source} {conflict}",
                params,
            )


def update_rows(
    model: type[models.Model], columns: list[str], rows: Sequence[Row], *, key: str = "id"
) -> None:
    """Set `columns` of many rows, each to its own values: rows are tuples of (key, *columns).
    On PostgreSQL one UPDATE ... FROM unnest(arrays), or past COPY_UPDATE_FROM rows from a
    COPY: Django's bulk_update builds a CASE WHEN per row and field, which cost more CPU than
    the rest of a webhook batch (measured: 262 ms for 64 rows of 8 fields, 8 ms this way).
    Elsewhere one UPDATE per row."""
    if not rows:
        return
    table = model._meta.db_table
    sets = ", ".join(f"{c} = s.{c}" for c in columns)
    if connection.vendor == "postgresql" and len(rows) >= COPY_UPDATE_FROM:
        _staged(
            model,
            [key, *columns],
            rows,
            f"UPDATE {table} AS t SET {sets} FROM staged AS s WHERE t.{key} = s.{key}",
        )
        return
    if connection.vendor == "postgresql":
        names = [key, *columns]
        arrays = ", ".join(f"%s::text::{_db_type(model, c)}[]" for c in names)
        literals = [array_literal(values) for values in zip(*rows, strict=True)]
        sql = (
            f"UPDATE {table} AS t SET {sets} FROM unnest({arrays}) AS s({', '.join(names)}) "
            f"WHERE t.{key} = s.{key}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, literals)
        return
    prepare = _preparers(model, [*columns, key])
    assignments = ", ".join(f"{c} = %s" for c in columns)
    params = [
        [p(v, connection) for p, v in zip(prepare, (*row[1:], row[0]), strict=True)] for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET {assignments} WHERE {key} = %s", params)


def row_sources(
    model: type[models.Model], columns: list[str], rows: Sequence[Row]
) -> Iterator[tuple[str, list[Any]]]:
    """(SQL, params) for the rows of an INSERT ... <source>, in as few statements as the
    database takes: on PostgreSQL one array per column, unnested (a dozen parameters however
    many rows, where VALUES would bind thousands); elsewhere VALUES, 500 rows at a time."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        types = [_db_type(model, c) for c in columns]
        arrays = ", ".join(f"%s::text::{t}[]" for t in types)
        literals = [array_literal(values) for values in zip(*rows, strict=True)]
        yield f"SELECT * FROM unnest({arrays})", literals
        return
    prepare = _preparers(model, columns)
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        params = [p(v, connection) for row in chunk for p, v in zip(prepare, row, strict=True)]
        yield f"VALUES {', '.join([placeholders] * len(chunk))}", params


def array_literal(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal of `values` (str, numbers, bools, UUIDs, datetimes): each
    element quoted, None as NULL. Written here because psycopg dumps a list element by element
    in Python, which cost more than the INSERT (twice the CPU, measured on 74 event rows)."""
    return "{" + ",".join("NULL" if v is None else _element(v) for v in values) + "}"


def _element(value: Any) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _db_type(model: type[models.Model], column: str) -> str:
    return _db_type_of(model, column, connection.vendor)


@functools.cache
def _db_type_of(model: type[models.Model], column: str, vendor: str) -> str:
    # Asked for every column of every bulk statement (a publish makes two), and Django derives
    # it anew each time: a sixth of a single-event publish's CPU (measured: 3.3 -> 2.7 ms).
    field = model._meta.get_field(column)
    if isinstance(field, models.ForeignKey):
        return str(field.target_field.rel_db_type(connection))
    assert isinstance(field, models.Field)
    return str(field.db_type(connection))


def _preparers(model: type[models.Model], columns: list[str]) -> list[Preparer]:
    """Per column, what turns a Python value into the database's (JSON text is kept as is)."""
    json_columns = _json_columns(model, columns)
    return [_as_is if c in json_columns else _field(model, c).get_db_prep_save for c in columns]


def _field(model: type[models.Model], column: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(column)
    assert isinstance(field, models.Field)  # a column: not a reverse relation
    return field


def _as_is(value: Any, connection: BaseDatabaseWrapper | None = None) -> Any:
    return value


def _json_columns(model: type[models.Model], columns: list[str]) -> set[str]:
    # A column name, or a foreign key's attname: get_field takes both.
    return {c for c in columns if isinstance(model._meta.get_field(c), models.JSONField)}


def _values(row: models.Model, columns: list[str], json_columns: set[str]) -> Row:
    return tuple(
        json.dumps(getattr(row, c)) if c in json_columns and getattr(row, c) is not None
        else getattr(row, c)
        for c in columns
    )  # fmt: skip
