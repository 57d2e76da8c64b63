"""Bulk inserts of many rows: COPY on PostgreSQL, a multi-row INSERT elsewhere."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.db import connection, models


def insert(model: type[models.Model], rows: list[models.Model], *, columns: list[str]) -> None:
    """Insert `rows` (unsaved instances) as insert_rows does."""
    json_columns = _json_columns(model, columns)
    insert_rows(model, columns, [_values(row, columns, json_columns) for row in rows])


def insert_rows(model: type[models.Model], columns: list[str], rows: Sequence[tuple]) -> None:
    """Insert plain rows: tuples in `columns` order (column names, or a foreign key's attname),
    JSON columns as JSON text. COPY on PostgreSQL: a bulk INSERT of a few hundred rows spends
    most of its time having psycopg bind thousands of parameters into SQL text. COPY has no
    ON CONFLICT: the caller leaves out rows already stored, and a row stored meanwhile by a
    concurrent transaction fails the COPY with an IntegrityError (transient: the retry leaves
    it out). Elsewhere (SQLite, one writer at a time) rows already stored are skipped."""
    if not rows:
        return
    table = model._meta.db_table
    if connection.vendor == "postgresql":
        _copy(table, columns, rows)
    else:
        _insert_ignoring_conflicts(model, table, columns, rows)


def _copy(table: str, columns: list[str], rows: Sequence[tuple]) -> None:
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    # wrap_database_errors: psycopg's UniqueViolation becomes Django's IntegrityError.
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(sql) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _insert_ignoring_conflicts(model, table: str, columns: list[str], rows) -> None:
    fields = [model._meta.get_field(c) for c in columns]
    json_columns = _json_columns(model, columns)
    prepare = [
        (lambda v: v) if c in json_columns else (lambda v, f=f: f.get_db_prep_save(v, connection))
        for c, f in zip(columns, fields, strict=True)
    ]
    values = [[p(v) for p, v in zip(prepare, row, strict=True)] for row in rows]
    placeholders = ", ".join(["%s"] * len(columns))
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, values)


def _json_columns(model: type[models.Model], columns: list[str]) -> set[str]:
    # A column name, or a foreign key's attname: get_field takes both.
    return {c for c in columns if isinstance(model._meta.get_field(c), models.JSONField)}


def _values(row: models.Model, columns: list[str], json_columns: set[str]) -> tuple:
    return tuple(
        json.dumps(getattr(row, c)) if c in json_columns and getattr(row, c) is not None
        else getattr(row, c)
        for c in columns
    )  # fmt: skip
