"""Per-tenant request rates (OTLP ingestion, POST /api/events), exact across processes.

A rate table holds one row per tenant: the current second and the requests made in it so far.
A request counts itself with one statement, an upsert that starts the count again when the
second has changed (the database cache took eleven, a table count among them).
"""

from __future__ import annotations

import time

from django.db import connection, models

from core.models import Tenant


def over(table: type[models.Model], tenant: Tenant, *, limit: int) -> bool:
    """Count this request; True when it is past `limit` in its second (0: no limit, not counted)."""
    return bool(limit) and count(table, tenant) > limit


def count(table: type[models.Model], tenant: Tenant) -> int:
    """This request's number within the current second, for its tenant. `table` has the
    columns tenant_id (its primary key), second and requests."""
    name = table._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {name} (tenant_id, second, requests) VALUES (%s, %s, 1) "
            f"ON CONFLICT (tenant_id) DO UPDATE SET "
            f"requests = CASE WHEN {name}.second = excluded.second "
            f"THEN {name}.requests + 1 ELSE 1 END, second = excluded.second "
            f"RETURNING requests",
            [table._meta.pk.get_db_prep_value(tenant.pk, connection), int(time.time())],
        )
        row = cursor.fetchone()
        return int(row[0]) if row else 0
