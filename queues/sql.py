"""The queues app's raw SQL and database-vendor branches, behind named functions the services call.

PostgreSQL gets one-statement forms (``FOR UPDATE SKIP LOCKED``, an advisory lock, ``UPDATE … FROM
jsonb_to_recordset``); other databases (SQLite for the demo) get the ORM equivalent. Why each is shaped so:
docs/performance.md, "Queues: claims and placement".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypedDict

from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.sql import Query

from ops_platform.core.bulk import server_bound_cursor
from ops_platform.core.models import User
from ops_platform.core.services import actor_label
from queues.models import ItemEvent, ItemState, Queue, QueueOrdering, ReviewItem


def on_postgresql() -> bool:
    """Whether the one-statement forms of this module run (they need PostgreSQL)."""
    return connection.vendor == "postgresql"


# --- placement -------------------------------------------------------------------------------------


class QueuedRow(TypedDict):
    """Where one item of a triage batch goes: its queue, priority, the queue's SLA, tags and review count."""

    id: int
    queue_id: int
    priority: int
    sla_seconds: float
    tags: list[str]
    required_reviews: int


def items_queue_many(*, rows: list[QueuedRow], now: datetime) -> list[int]:
    """PostgreSQL: move the given items, which the caller locked and saw 'received', to 'queued' in one UPDATE,
    each row with its own queue, priority, due time (received + SLA), tags and review count. Returns the ids
    moved, sorted."""
    table = connection.ops.quote_name(ReviewItem._meta.db_table)
    with server_bound_cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS i SET state = %s, queue_id = v.queue_id, priority = v.priority, "  # noqa: S608
            "triaged_at = %s, queued_at = %s, due_at = i.received_at + make_interval(secs => v.sla_seconds), "
            "tags = v.tags, required_reviews = v.required_reviews "
            "FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, queue_id bigint, priority smallint, "
            "sla_seconds double precision, tags jsonb, required_reviews smallint) "
            "WHERE i.id = v.id RETURNING i.id",
            [ItemState.QUEUED, now, now, json.dumps(rows)],
        )
        return sorted(row[0] for row in cursor.fetchall())


# --- claim next ------------------------------------------------------------------------------------

# ``item_claim_next`` on PostgreSQL in one statement, so one round trip and atomic without a transaction:
# - held: the reviewer's unfinished item in this queue, its lease renewed (gone if the lease sweep took it);
# - claimed: else, as ``queues.services.claims.claimable`` says (change both together), the first row in the
#   queue's order that no other transaction has locked (SKIP LOCKED: concurrent reviewers pass over each other's
#   rows instead of waiting), now theirs;
# - event: the 'claimed' history row for it.
# It is sent after ``CLAIM_LOCK_SQL`` in the same message (see ``claim_next_skip_locked``).
CLAIM_SQL = """
WITH held AS (
    UPDATE queues_reviewitem SET lease_expires_at = %(expires)s
    WHERE id = (
        SELECT id FROM queues_reviewitem
        WHERE queue_id = %(queue)s AND state = 'claimed' AND assignee_id = %(actor)s
        ORDER BY claimed_at LIMIT 1
    ) AND state = 'claimed' AND assignee_id = %(actor)s
    RETURNING *
), claimed AS (
    UPDATE queues_reviewitem
    SET state = 'claimed', assignee_id = %(actor)s, claimed_at = %(now)s, lease_expires_at = %(expires)s
    WHERE NOT EXISTS (SELECT FROM held) AND id = (
        SELECT id FROM queues_reviewitem AS item
        WHERE queue_id = %(queue)s AND state = 'queued'
          AND (reserved_for_id IS NULL OR reserved_for_id = %(actor)s)
          AND NOT EXISTS (SELECT FROM queues_decision WHERE item_id = item.id AND reviewer_id = %(actor)s)
          AND NOT EXISTS (SELECT FROM queues_decision WHERE item_id = item.appeal_of_id AND reviewer_id = %(actor)s)
          AND NOT EXISTS (
              SELECT FROM queues_itemskip WHERE item_id = item.id AND reviewer_id = %(actor)s AND until > %(now)s
          )
        ORDER BY {order}
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING *
), event AS (
    INSERT INTO queues_itemevent (item_id, at, actor_id, actor_label, event, from_state, to_state, queue_id, data)
    SELECT id, %(now)s, %(actor)s, %(actor_label)s, 'claimed', 'queued', 'claimed', queue_id, '{{}}' FROM claimed
)
SELECT * FROM held UNION ALL SELECT * FROM claimed
"""
# ``claim_order`` in SQL; each matches one of the item_queue_*_idx indexes, so the claim walks an index.
_CLAIM_SQL_BY_ORDERING = {
    QueueOrdering.PRIORITY_THEN_DUE: CLAIM_SQL.format(order="priority DESC, due_at, id"),
    QueueOrdering.DUE_FIRST: CLAIM_SQL.format(order="due_at, id"),
    QueueOrdering.OLDEST_FIRST: CLAIM_SQL.format(order="received_at, id"),
}
# One claim at a time per reviewer and queue: two claims of the same reviewer at the same instant (two tabs, a
# double click) would each see no held item and each take one. The lock is taken by its own statement in the
# same message as the claim (one round trip, one implicit transaction that keeps the lock until the claim is
# committed), because only a statement that starts after the wait sees the other claim's item as held; other
# reviewers never wait on it.
CLAIM_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0));\n"


def claim_statement(queue: Queue) -> str:
    """``CLAIM_SQL`` in ``queue``'s claim order."""
    return _CLAIM_SQL_BY_ORDERING[QueueOrdering(queue.ordering)]


def claim_order(queue: Queue) -> list[str]:
    """The ORM ``order_by`` of ``queue``'s claims, as ``CLAIM_SQL`` orders them on PostgreSQL."""
    if queue.ordering == QueueOrdering.DUE_FIRST:
        return ["due_at", "pk"]
    if queue.ordering == QueueOrdering.OLDEST_FIRST:
        return ["received_at", "pk"]
    return ["-priority", "due_at", "pk"]


def claim_next(
    queue: Queue,
    actor: User,
    *,
    now: datetime,
    expires: datetime,
    candidates: Callable[[], QuerySet[ReviewItem]],
) -> ReviewItem | None:
    """The reviewer's held item in ``queue`` (lease renewed), else the next claimable one, now theirs with a
    'claimed' history row; None when nothing waits for them. ``candidates`` gives the claimable items in claim
    order for databases without SKIP LOCKED (built only there)."""
    if on_postgresql():
        return claim_next_skip_locked(queue, actor, now=now, expires=expires)
    return claim_next_conditional(queue, actor, now=now, expires=expires, candidates=candidates())


def claim_next_skip_locked(queue: Queue, actor: User, *, now: datetime, expires: datetime) -> ReviewItem | None:
    """PostgreSQL: :func:`claim_next` in one round trip (``CLAIM_LOCK_SQL`` then ``CLAIM_SQL``)."""
    params: dict[str, int | str | datetime] = {
        "queue": queue.pk,
        "actor": actor.pk,
        "now": now,
        "expires": expires,
        "actor_label": actor_label(actor),
        "lock": f"claim-next:{queue.pk}:{actor.pk}",
    }
    # Two statements in one execute: Django's cursors bind client-side, so psycopg sends them as one message.
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_LOCK_SQL + claim_statement(queue), params)
        cursor.nextset()
        items = items_from_cursor(cursor)
    return items[0] if items else None


def items_from_cursor(cursor: Any) -> list[ReviewItem]:
    """Items from a cursor's ``SELECT *`` rows, converted as ``Manager.raw`` would (in model field order,
    whatever order the table's columns were added in)."""
    columns = [column.name for column in cursor.description]
    fields = ReviewItem._meta.concrete_fields
    position = [columns.index(field.column) for field in fields]
    compiler = connection.ops.compiler("SQLCompiler")(Query(ReviewItem), connection, connection.alias)
    converters = compiler.get_converters([field.get_col(ReviewItem._meta.db_table) for field in fields])
    rows = [[row[i] for i in position] for row in cursor.fetchall()]
    values = compiler.apply_converters(rows, converters) if converters else rows
    names = [field.attname for field in fields]
    return [ReviewItem.from_db(connection.alias, names, list(row)) for row in values]


def claim_next_conditional(
    queue: Queue, actor: User, *, now: datetime, expires: datetime, candidates: QuerySet[ReviewItem]
) -> ReviewItem | None:
    """Without SKIP LOCKED: read the first of ``candidates``, take it with an update that only succeeds while it
    is still queued, and read again if another reviewer got there first. The held item is looked for in the same
    transaction as the claim (SQLite begins it IMMEDIATE, so one writer at a time): two claims of one reviewer
    at once cannot both find nothing held and both take an item."""
    with transaction.atomic():
        held = ReviewItem.objects.filter(queue=queue, state=ItemState.CLAIMED, assignee=actor).order_by("claimed_at")
        # Still theirs only if the lease sweep did not return it to the queue since the read; else claim afresh.
        if (mine := held.first()) is not None and ReviewItem.objects.filter(
            pk=mine.pk, state=ItemState.CLAIMED, assignee=actor
        ).update(lease_expires_at=expires):
            mine.lease_expires_at = expires
            return mine
        for _ in range(10):
            with transaction.atomic():
                item = candidates.first()
                if item is None:
                    return None
                changed = ReviewItem.objects.filter(pk=item.pk, state=ItemState.QUEUED, assignee__isnull=True).update(
                    state=ItemState.CLAIMED, assignee=actor, claimed_at=now, lease_expires_at=expires
                )
                if not changed:
                    continue  # another reviewer took it between the read and the update
                ItemEvent.objects.create(
                    item=item,
                    at=now,
                    actor=actor,
                    actor_label=actor_label(actor),
                    event="claimed",
                    from_state=ItemState.QUEUED,
                    to_state=ItemState.CLAIMED,
                    queue=queue,
                )
                item.state, item.assignee, item.queue = ItemState.CLAIMED, actor, queue
                item.claimed_at, item.lease_expires_at = now, expires
                return item
        return None
