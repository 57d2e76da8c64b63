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
        if connection.vendor == "postgresql":
            array = f"%s::{field.db_type(connection)}[]"
            return f"{lhs} = ANY({array})", (*params, bulk.array_literal(self.rhs))
        values = [field.get_db_prep_value(v, connection) for v in self.rhs]
        return f"{lhs} IN (SELECT value FROM json_each(%s))", (*params, json.dumps(values))


Field.register_lookup(OneOf)
ForeignObject.register_lookup(OneOf)  # foreign keys take only the lookups they register
