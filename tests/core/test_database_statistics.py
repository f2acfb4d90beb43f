"""The embedded SQLite database gets planner statistics after migrate and from a daily beat task, so the claim
query keeps using the queue's index as a reviewer's own decisions grow (issue 22). Timing is bench work; this
checks the query plan only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from ops_platform.core.models import User
from ops_platform.core.tasks import database_statistics_task
from queues.models import Decision, ItemState, Queue, ReviewItem
from queues.services import claimable
from queues.sql import claim_statement

pytestmark = pytest.mark.django_db

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite keeps no statistics by itself")


def test_the_daily_task_is_on_the_beat_schedule():
    entry = settings.CELERY_BEAT_SCHEDULE["database-statistics"]

    assert entry["task"] == "ops_platform.core.tasks.database_statistics_task"
    assert entry["schedule"] == timedelta(days=1)


def test_gathering_does_nothing_on_other_databases():
    assert database_statistics_task() is (connection.vendor == "sqlite")


@sqlite_only
def test_migrate_gathered_statistics():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
        assert cursor.fetchone()[0] == 1  # ANALYZE creates it; SQLite alone never does


def _plan(queue: Queue, actor: User) -> str:
    sql, params = claimable(queue, actor).order_by("-priority", "due_at", "pk")[:1].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


@sqlite_only
def test_claim_query_uses_the_queue_index_after_statistics_with_many_own_decisions(reviewer, intake_queue):
    now = timezone.now()
    decided = ReviewItem.objects.bulk_create(
        ReviewItem(
            source="s",
            external_id=f"d{i}",
            text="t",
            received_at=now,
            queue=intake_queue,
            state=ItemState.DECIDED,
            due_at=now,
            required_reviews=3,
        )
        for i in range(3000)
    )
    Decision.objects.bulk_create(
        Decision(item=item, reviewer=reviewer, queue=intake_queue, is_violation=False, decided_at=now, is_final=False)
        for item in decided
    )
    ReviewItem.objects.bulk_create(
        ReviewItem(
            source="s",
            external_id=f"q{i}",
            text="t",
            received_at=now,
            queue=intake_queue,
            state=ItemState.QUEUED,
            due_at=now,
            required_reviews=3,
        )
        for i in range(20)
    )
    # Even without statistics, the "not an item you decided" probe is one lookup by item and reviewer
    # (decision_item_reviewer_idx), never a read of all of the reviewer's own decisions per candidate.
    assert "decision_item_reviewer_idx (item_id=? AND reviewer_id=?)" in _plan(intake_queue, reviewer)

    assert database_statistics_task()  # the daily beat task

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_stat1")
        assert cursor.fetchone()[0] > 0
    plan = _plan(intake_queue, reviewer)
    assert "USING INDEX item_queue_work_idx (queue_id=? AND state=?)" in plan
    assert "(reviewer_id=?)" not in plan  # by item instead: a handful of rows per candidate, however many own
    assert "decision_item_reviewer_idx (item_id=? AND reviewer_id=?)" in plan


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's claim statement")
def test_postgres_claims_probe_own_decisions_by_item_and_reviewer_before_any_analyze(reviewer, intake_queue):
    """Without statistics (a bulk load autovacuum has not analysed yet), PostgreSQL ANDed the reviewer index into
    the probe and read every decision of the reviewer per candidate (bench/qa.py: 56 ms a claim at 10,000)."""
    now = timezone.now()
    fields = {"text": "t", "received_at": now, "queue": intake_queue, "due_at": now, "required_reviews": 3}
    decided = ReviewItem.objects.bulk_create(
        ReviewItem(source="s", external_id=f"d{i}", state=ItemState.DECIDED, **fields) for i in range(3000)
    )
    Decision.objects.bulk_create(
        Decision(item=item, reviewer=reviewer, is_violation=False, decided_at=now) for item in decided
    )
    params = {"queue": intake_queue.pk, "actor": reviewer.pk, "now": now, "expires": now, "actor_label": "r"}
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (COSTS OFF) " + claim_statement(intake_queue), params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"Index Cond: ((item_id = item.id) AND (reviewer_id = {reviewer.pk}))" in plan, plan
    assert "queues_decision_reviewer_id" not in plan, plan
