"""Raw SQL and database-vendor branches of the analytics reads, in one place.

The rollups keep latency histograms as JSON objects (bucket -> count) per daily row. Summing them per slice in
Python would load every daily row's JSON; :func:`histograms_merged` lets the database expand and sum them
(``jsonb_each_text`` on PostgreSQL, ``json_each`` on SQLite), so one row per (key, bucket) leaves it.
:func:`week_start_sql` is the Monday of an ISO week in either dialect, for grouping by week inside that SQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import QuerySet


def rollup_column(name: str) -> str:
    """A column of the rollup row ``d`` that :func:`histograms_merged` reads, quoted for the database."""
    return f"d.{connection.ops.quote_name(name)}"


def week_start_sql(column: str) -> str:
    """SQL for the Monday of a date column's ISO week."""
    if connection.vendor == "postgresql":
        return f"CAST(date_trunc('week', {column}) AS date)"
    return f"date({column}, 'weekday 0', '-6 days')"


HIST_FIELDS = ("turnaround_hist", "wait_hist", "handle_hist")


def histograms_merged(
    rows: QuerySet[Any], keys: Sequence[str], fields: Sequence[str] = HIST_FIELDS
) -> dict[tuple[Any, ...], dict[str, Counter[int]]]:
    """The histograms of ``rows`` (decision or latency rollup rows) summed per key by the database
    (``jsonb_each_text`` on PostgreSQL, ``json_each`` on SQLite): one row per (key, bucket) leaves it, not every
    daily row's JSON. ``keys`` are SQL expressions over the rollup row ``d`` (e.g. ``d."queue_id"``); the result is
    keyed by their values."""
    table = connection.ops.quote_name(rows.model._meta.db_table)
    each = "jsonb_each_text" if connection.vendor == "postgresql" else "json_each"
    ids_sql, ids_params = rows.values("id").query.sql_with_params()
    key_sql = ", ".join(keys)
    merged: dict[tuple[Any, ...], dict[str, Counter[int]]] = {}
    with connection.cursor() as cursor:
        for hist_field in fields:
            name = connection.ops.quote_name(hist_field)
            cursor.execute(
                f"SELECT {key_sql}, j.key, SUM(CAST(j.value AS integer)) FROM {table} d, {each}(d.{name}) j "  # noqa: S608 - names are quoted model fields
                f"WHERE d.id IN ({ids_sql}) GROUP BY {key_sql}, j.key",
                ids_params,
            )
            for *key, bucket, count in cursor.fetchall():
                slot = merged.setdefault(tuple(key), {h: Counter() for h in fields})
                slot[hist_field][int(bucket)] += int(count)
    return merged
