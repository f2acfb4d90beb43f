"""One-statement bulk inserts for the hot paths (intake, scoring, triage), optionally skipping rows already there.

Django's ``bulk_create(ignore_conflicts=True)`` cannot say which rows it created, and on PostgreSQL it
binds one parameter per field per row: for a batch of 500 that is thousands of parameters quoted in
Python, which costs more than the insert itself. Here the whole batch travels as one jsonb parameter
(``jsonb_to_recordset``); SQLite (3.35+) takes the plain ``VALUES`` form.

Rows are unsaved instances or, on the hot paths, mappings of field attnames (``item_id``, not ``item``) to
values: a field the mapping leaves out takes its default, as the model's constructor would give it (computed
once for the batch), which is cheaper than building a model instance per row (why: docs/performance.md, "Kernel").
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import connection, models

Rows = Sequence[models.Model] | Sequence[Mapping[str, Any]]


def insert_ignoring_conflicts(
    model: type[models.Model], rows: Rows, *, conflict: str = "", returning: str = ""
) -> list[tuple[Any, ...]]:
    """Insert ``rows``, skipping those that hit a unique constraint.

    ``conflict`` names the constraint's columns (``"source, external_id"``), empty for any constraint;
    ``returning`` the columns to return for each row actually inserted.
    """
    tail = f"ON CONFLICT {f'({conflict}) ' if conflict else ''}DO NOTHING" + (
        f" RETURNING {returning}" if returning else ""
    )
    return _insert(model, rows, tail=tail, returning=bool(returning))


def rows_insert(model: type[models.Model], rows: Rows) -> int:
    """Insert ``rows`` in one statement, as ``bulk_create`` would but without binding a parameter per field per
    row (history rows, routing decisions: hundreds per triage batch). Returns the count; instances do not get
    their ids. Elsewhere than PostgreSQL it is ``bulk_create``."""
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(_instances(model, rows))
    else:
        _insert(model, rows, tail="", returning=False)
    return len(rows)


def _instances(model: type[models.Model], rows: Rows) -> list[models.Model]:
    return [row if isinstance(row, models.Model) else model(**row) for row in rows]


def _insert(model: type[models.Model], rows: Rows, *, tail: str, returning: bool) -> list[tuple[Any, ...]]:
    if not rows:
        return []
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    table = connection.ops.quote_name(model._meta.db_table)
    names = [connection.ops.quote_name(f.column) for f in fields]
    columns = ", ".join(names)
    if connection.vendor == "postgresql":
        record = ", ".join(f"{name} {f.db_type(connection)}" for name, f in zip(names, fields, strict=True))
        sql = (
            f"INSERT INTO {table} ({columns}) SELECT {columns} "  # noqa: S608 - names come from _meta
            f"FROM jsonb_to_recordset(%s::jsonb) AS r({record}) {tail}"
        )
        # A JSONField's value nests as JSON, and jsonb_to_recordset hands it to the jsonb column as is.
        params: list[Any] = [json.dumps(_prepared(fields, rows), default=_isoformat)]
    else:
        instances = _instances(model, rows)
        one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join([one_row] * len(rows))} {tail}"  # noqa: S608
        params = [f.get_db_prep_save(getattr(row, f.attname), connection) for row in instances for f in fields]
    with server_bound_cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if returning else []


@contextmanager
def server_bound_cursor() -> Iterator[Any]:
    """Django's cursor, but on PostgreSQL one that sends the parameters apart from the SQL (server-side binding).

    Django's psycopg cursor binds on the client, quoting a batch's jsonb parameter into the statement for
    PostgreSQL to lex back out (why that matters: docs/performance.md, "Kernel"). The cursor is wrapped as Django
    wraps its own: database errors become Django's, and tests and debug logging see the query.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]  # psycopg 3

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = ServerBindingCursor(connection.connection)
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    with wrap(raw) as cursor:
        yield cursor


def _prepared(fields: list[models.Field[Any, Any]], rows: Rows) -> list[dict[str, Any]]:
    """Each row as {column: value for the database}. get_prep_value lets a field translate its value (the NUL-safe
    text fields); it is skipped where it would return a plain value unchanged (a str for a CharField, an int for
    an integer field): why, docs/performance.md, "Kernel"."""
    plan = [(f.column, f.attname, f.get_prep_value, _unchanged_by_prep(f)) for f in fields]
    defaults = {f.attname: f.get_default() for f in fields}
    # An unsaved instance holds its field values in __dict__ by attname, as a mapping row does.
    mappings = [row.__dict__ if isinstance(row, models.Model) else row for row in rows]
    return [
        {
            column: value if type(value) in unchanged else prep(value)
            for column, attname, prep, unchanged in plan
            for value in (row[attname] if attname in row else defaults[attname],)
        }
        for row in mappings
    ]


_NONE = type(None)
# Stock get_prep_value implementations, and the value types each returns unchanged (bool is not an int here:
# IntegerField turns True into 1). A field that overrides get_prep_value is not listed, so it is always called.
_PREP_UNCHANGED: dict[Any, frozenset[type]] = {
    models.Field.get_prep_value: frozenset({str, int, float, bool, dict, list, _NONE}),
    models.CharField.get_prep_value: frozenset({str, _NONE}),
    models.TextField.get_prep_value: frozenset({str, _NONE}),
    models.IntegerField.get_prep_value: frozenset({int, _NONE}),
    models.BooleanField.get_prep_value: frozenset({bool, _NONE}),
    models.FloatField.get_prep_value: frozenset({float, _NONE}),
    # Only an empty one: a naive datetime is made aware (with a warning), so a datetime is always prepared. An item
    # row has ten datetime columns, most of them empty at intake.
    models.DateTimeField.get_prep_value: frozenset({_NONE}),
    models.DateField.get_prep_value: frozenset({_NONE}),
}


def _unchanged_by_prep(field: models.Field[Any, Any]) -> frozenset[type]:
    """The value types ``field.get_prep_value`` returns as they are (a foreign key: its target's)."""
    target = field.target_field if isinstance(field, models.ForeignKey) else field
    return _PREP_UNCHANGED.get(type(target).get_prep_value, frozenset())


def _isoformat(value: Any) -> str:
    # Full microseconds: DjangoJSONEncoder would cut datetimes to milliseconds.
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
