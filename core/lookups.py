"""`field__one_of=[...]`: membership in a long list of values, bound as one parameter.

`field__in=[...]` binds each value on its own: for the hundreds of trace ids a batch names, or
the hundreds of message ids a drain claims, Django's preparation of each value and psycopg's
parsing of a query with hundreds of placeholders cost more than the query. This passes the list
as one array literal (PostgreSQL: `= ANY(%s::<column type>[])`) or one JSON text (SQLite:
`IN (SELECT value FROM json_each(%s))`).

Pass a set: Django walks a list or a tuple element by element before any lookup sees it (to
resolve expressions in it), which for hundreds of values costs about what the query does.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, ForeignObject, Lookup
from django.db.models.sql.compiler import SQLCompiler

from core import bulk


class OneOf(Lookup):
    lookup_name = "one_of"
    prepare_rhs = False

    def as_sql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, tuple[Any, ...]]:
        lhs, params = self.process_lhs(compiler, connection)
        field = self.lhs.output_field
        value = one_of_value(field, self.rhs, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s::{field.db_type(connection)}[])", (*params, value)
        return f"{lhs} IN (SELECT value FROM json_each(%s))", (*params, value)


def one_of_value(field: Field[Any, Any], values: Any, connection: BaseDatabaseWrapper) -> str:
    """The one parameter `one_of` binds for `values`: a query compiled once can be run again
    with another list in its place."""
    if connection.vendor == "postgresql":
        return bulk.array_literal(values)
    return json.dumps([field.get_db_prep_value(v, connection) for v in values])


Field.register_lookup(OneOf)
ForeignObject.register_lookup(OneOf)  # foreign keys take only the lookups they register
