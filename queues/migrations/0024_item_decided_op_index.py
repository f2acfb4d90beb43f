"""Issue 19, pages at a million decisions: the drill-down's ``on=decided`` lists a period's items by decision time,
newest first, and counts them; with no index on decided_at that read every item. A partial index of the decided
items (decided_at, is_golden), built CONCURRENTLY: intake and triage write undecided items, which it leaves out.
"""

from django.db import migrations, models

from ops_platform.core.migration_operations import AddIndexConcurrentlyOnPostgreSQL


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("queues", "0023_item_text_search_index"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="reviewitem",
            index=models.Index(
                condition=models.Q(("decided_at__isnull", False)),
                fields=["decided_at", "is_golden"],
                name="item_decided_op_idx",
            ),
        ),
    ]
