"""``field__any=[…]``: ``IN`` for a long list of values, sent as one array parameter on PostgreSQL.

Triage asks for its batch's 500 items, their scores and their authors by lists of ids or names. With ``__in``
Django builds a parameter per value and psycopg (client-side binding) quotes each one into the SQL; one array
parameter is cheaper (figures: docs/performance.md, "Kernel"). PostgreSQL plans ``IN (…)`` as ``= ANY(ARRAY[…])``
anyway. Elsewhere (SQLite) it is ``__in``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Field, ForeignObject, Lookup
from django.db.models.lookups import In


@ForeignObject.register_lookup  # a foreign key has lookups of its own (``item__any``, ``item_id__any``)
@Field.register_lookup
class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        sql, params = In(self.lhs, list(self.rhs)).as_sql(compiler, connection)
        return sql, list(params)

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        field = self.lhs.output_field
        values = [field.get_db_prep_value(value, connection, prepared=False) for value in self.rhs]
        return f"{lhs} = ANY(%s::{field.db_type(connection)}[])", [*lhs_params, values]
