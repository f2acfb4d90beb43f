"""Intake's one raw SQL statement: items inserted in bulk, those already held skipped (``ON CONFLICT DO NOTHING``,
which says which rows it created), through the kernel's one-statement insert (``ops_platform.core.bulk``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ops_platform.core.bulk import insert_ignoring_conflicts
from queues.models import ReviewItem


def items_insert_new(rows: Sequence[ReviewItem] | Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Insert rows, skipping (source, external_id) pairs that exist; return external_id -> id created."""
    created = insert_ignoring_conflicts(ReviewItem, rows, conflict="source, external_id", returning="id, external_id")
    return {external_id: pk for pk, external_id in created}
