"""`field__one_of=[...]`: membership in a list of many values, bound as one parameter.

`field__in=[...]` binds each value on its own: for the hundreds of trace ids a batch names,
Django's preparation of each value and psycopg's parsing of a query with hundreds of
placeholders cost more than the query. This passes the list as one array (PostgreSQL:
`= ANY(%s::text[])`) or one JSON text (SQLite: `IN (SELECT value FROM json_each(%s))`). For text
columns (ids, keys); values are compared as text.
"""

from __future__ import annotations

import json

from django.db.models import CharField, Lookup

from core import bulk


@CharField.register_lookup
class OneOf(Lookup):
    lookup_name = "one_of"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        values = [str(v) for v in self.rhs]
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s::text[])", [*params, bulk.array_literal(values)]
        return f"{lhs} IN (SELECT value FROM json_each(%s))", [*params, json.dumps(values)]
