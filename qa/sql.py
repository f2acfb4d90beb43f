"""Database-vendor branches of QA, in one place.

:func:`first_unlocked` takes the next sample for a QA reviewer: on PostgreSQL it skips rows another transaction holds
locked (``SELECT ... FOR UPDATE SKIP LOCKED``), so two reviewers claiming at once do not queue behind each other's
lock; elsewhere (SQLite: the embedded mode, one writer at a time) it reads the first row, and the conditional
update that follows decides the race either way.
"""

from __future__ import annotations

from typing import TypeVar

from django.db import connection
from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)


def first_unlocked(rows: QuerySet[M]) -> M | None:
    """The first of ``rows`` that no other transaction holds locked, locked for this one (PostgreSQL); the first
    of ``rows`` elsewhere. Call it inside a transaction."""
    if connection.vendor == "postgresql":
        return rows.select_for_update(skip_locked=True).first()
    return rows.first()
