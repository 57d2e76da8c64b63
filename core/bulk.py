"""Bulk inserts of many rows: COPY on PostgreSQL, bulk_create elsewhere."""

from __future__ import annotations

import json

from django.db import connection, models


def insert(model: type[models.Model], rows: list[models.Model], *, columns: list[str]) -> None:
    """Insert `rows` (unsaved instances) by COPY on PostgreSQL: a bulk INSERT of a few hundred
    rows spends most of its time having psycopg bind thousands of parameters into SQL text.
    COPY has no ON CONFLICT: the caller leaves out rows already stored, and a row stored
    meanwhile by a concurrent transaction fails the COPY with an IntegrityError (transient:
    the retry leaves it out)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
        return
    json_columns = {c for c in columns if _is_json(model, c)}
    sql = f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN"
    # wrap_database_errors: psycopg's UniqueViolation becomes Django's IntegrityError.
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(sql) as copy,
    ):
        for row in rows:
            copy.write_row([_value(row, c, json_columns) for c in columns])


def _is_json(model: type[models.Model], column: str) -> bool:
    field = model._meta.get_field(column)  # a column name, or a foreign key's attname
    return isinstance(field, models.JSONField)


def _value(row: models.Model, column: str, json_columns: set[str]):
    value = getattr(row, column)
    if column in json_columns and value is not None:
        return json.dumps(value)
    return value
