"""An index on ItemEvent.at for the analytics rollups, which recompute a day at a time.

The events table is the largest in the schema; on PostgreSQL the index is built CONCURRENTLY so writes to it
(every claim and decision) are not blocked while it builds. SQLite (the embedded demo) builds it plainly.
"""

from django.db import migrations, models

from ops_platform.core.migration_operations import AddIndexConcurrentlyOnPostgreSQL


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("queues", "0008_item_is_golden"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="itemevent",
            index=models.Index(fields=["at"], name="itemevent_at_idx"),
        ),
    ]
