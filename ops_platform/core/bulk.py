"""One-statement bulk inserts for the hot paths (intake, scoring, triage), optionally skipping rows already there.

Django's ``bulk_create(ignore_conflicts=True)`` cannot say which rows it created, and on PostgreSQL it
binds one parameter per field per row: for a batch of 500 that is thousands of parameters quoted in
Python, which costs more than the insert itself. Here the whole batch travels as one jsonb parameter
(``jsonb_to_recordset``); SQLite (3.35+) takes the plain ``VALUES`` form.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection, models


def insert_ignoring_conflicts(
    model: type[models.Model], rows: Sequence[models.Model], *, conflict: str = "", returning: str = ""
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (unsaved instances), skipping those that hit a unique constraint.

    ``conflict`` names the constraint's columns (``"source, external_id"``), empty for any constraint;
    ``returning`` the columns to return for each row actually inserted.
    """
    tail = f"ON CONFLICT {f'({conflict}) ' if conflict else ''}DO NOTHING" + (
        f" RETURNING {returning}" if returning else ""
    )
    return _insert(model, rows, tail=tail, returning=bool(returning))


def rows_insert(model: type[models.Model], rows: Sequence[models.Model]) -> int:
    """Insert ``rows`` (unsaved instances) in one statement, as ``bulk_create`` would but without binding a
    parameter per field per row (history rows, routing decisions: hundreds per triage batch). Returns the count;
    the instances do not get their ids. Elsewhere than PostgreSQL it is ``bulk_create``."""
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(rows)
    else:
        _insert(model, rows, tail="", returning=False)
    return len(rows)


def _insert(
    model: type[models.Model], rows: Sequence[models.Model], *, tail: str, returning: bool
) -> list[tuple[Any, ...]]:
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
        # get_prep_value lets a field translate its value for the database (the NUL-safe text fields); it is
        # skipped where it would return a plain value unchanged (a str for a CharField, an int for an integer
        # field), which for a batch of 500 items was a sixth of intake's CPU in gunicorn (bench/e2e.py).
        plan = [(f.column, f.attname, f.get_prep_value, _unchanged_by_prep(f)) for f in fields]
        batch = [
            {
                column: value if type(value) in unchanged else prep(value)
                for column, attname, prep, unchanged in plan
                for value in (getattr(row, attname),)
            }
            for row in rows
        ]
        params: list[Any] = [json.dumps(batch, default=_isoformat)]
    else:
        one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join([one_row] * len(rows))} {tail}"  # noqa: S608
        params = [f.get_db_prep_save(getattr(row, f.attname), connection) for row in rows for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if returning else []


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
