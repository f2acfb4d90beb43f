"""Keyset pagination: a page of a list is the rows after the last one shown, in the list's own order, found by the
index that serves the order (``WHERE (k1, k2) < (v1, v2) … LIMIT n``) instead of counting and skipping every row
before it (``OFFSET``), which reads the whole list to show its last page.

The list's ``order_by`` names the keys (model fields or annotations, each ascending or descending, the last one
unique, e.g. ``-received_at, -id``); keys must not be null in the rows listed. The cursor is the last row's keys,
JSON in the query string; a cursor that does not parse is a 400 naming its parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import F, Model, OrderBy, Q, QuerySet

from ops_platform.core.errors import ApplicationError


@dataclass(frozen=True)
class KeysetPage:
    rows: list[Any]
    after: str | None  # the cursor of the next page; None: this is the last page
    first: bool  # no cursor was given: the list's first page

    @property
    def has_next(self) -> bool:
        return self.after is not None


def _keys(queryset: QuerySet[Any]) -> list[tuple[str, bool]]:
    """(name, descending) of each key of the queryset's explicit order."""
    out = []
    for term in queryset.query.order_by:
        if isinstance(term, str):
            out.append((term.lstrip("-"), term.startswith("-")))
        elif isinstance(term, OrderBy) and isinstance(term.expression, F):
            out.append((term.expression.name, term.descending))
        else:
            raise TypeError(f"keyset pages order by fields or annotations only, not {term!r}")
    if not out:
        raise TypeError("keyset pages need an explicit order_by")
    return out


def _field(queryset: QuerySet[Any], name: str) -> Any:
    if name in queryset.query.annotations:
        return queryset.query.annotations[name].output_field
    model: type[Model] = queryset.model
    return model._meta.pk if name == "pk" else model._meta.get_field(name)


def _value(row: Any, name: str) -> Any:
    return row.pk if name == "pk" else getattr(row, name)


def _encode(row: Any, keys: list[tuple[str, bool]]) -> str:
    values = [_value(row, name) for name, _ in keys]
    return json.dumps([v.isoformat() if hasattr(v, "isoformat") else v for v in values], separators=(",", ":"))


def _after(queryset: QuerySet[Any], keys: list[tuple[str, bool]], cursor: str, param: str) -> Q:
    """Rows strictly after the cursor in the order: (k1 beyond v1) or (k1 = v1 and k2 beyond v2) or …"""
    bad = ApplicationError(f"'{param}' is not a position in this list; start again from its first page.", field=param)
    try:
        raw = json.loads(cursor)
    except ValueError:
        raise bad from None
    if not isinstance(raw, list) or len(raw) != len(keys) or any(v is None for v in raw):
        raise bad
    try:
        values = [_field(queryset, name).to_python(v) for (name, _), v in zip(keys, raw, strict=True)]
    except (ValidationError, TypeError, ValueError):
        raise bad from None
    condition: Q | None = None
    equal = Q()
    for (name, descending), value in zip(keys, values, strict=True):
        beyond = equal & Q(**{f"{name}__{'lt' if descending else 'gt'}": value})
        condition = beyond if condition is None else condition | beyond
        equal &= Q(**{name: value})
    assert condition is not None  # _keys returns at least one key
    return condition


def keyset_page(queryset: QuerySet[Any], cursor: str | None, size: int, *, param: str = "after") -> KeysetPage:
    """The ``size`` rows after ``cursor`` (None: from the start) in the queryset's order, and the next cursor."""
    keys = _keys(queryset)
    if cursor:
        queryset = queryset.filter(_after(queryset, keys, cursor, param))
    rows = list(queryset[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(rows=rows, after=_encode(rows[-1], keys) if more else None, first=not cursor)
