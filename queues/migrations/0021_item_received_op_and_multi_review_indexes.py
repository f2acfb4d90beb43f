"""Issue 19, pages at a million decisions: item_received_idx becomes (received_at, is_golden), so that a period's
operational items (golden left out: the drill-down's count, the home's intake) are counted from the index alone
(an index-only scan) instead of reading every item of the period; and a partial index of the few items that need
several independent reviews, where QA's multi-rater figures start instead of joining every decision of the period;
and a partial index of the backlog (open operational items: queue, received_at, due_at), from which the backlog
panel and its snapshot count by queue and age without reading the items. Its entries are written when triage queues
an item and when a reviewer claims it, updates that change the indexed state and were never HOT.
The new index is built first, CONCURRENTLY, then the old one dropped CONCURRENTLY: no query goes without one.
"""

from django.db import migrations, models

from ops_platform.core.migration_operations import (
    AddIndexConcurrentlyOnPostgreSQL,
    RemoveIndexConcurrentlyOnPostgreSQL,
)


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("queues", "0020_decision_item_reviewer_index"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="reviewitem",
            index=models.Index(fields=["received_at", "is_golden"], name="item_received_op_idx"),
        ),
        RemoveIndexConcurrentlyOnPostgreSQL(model_name="reviewitem", name="item_received_idx"),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="reviewitem",
            index=models.Index(
                condition=models.Q(("required_reviews__gt", 1)), fields=["id"], name="item_multi_review_idx"
            ),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="reviewitem",
            index=models.Index(
                condition=models.Q(("is_golden", False), ("state__in", ["queued", "claimed"])),
                fields=["queue", "received_at", "due_at"],
                name="item_backlog_idx",
            ),
        ),
    ]
