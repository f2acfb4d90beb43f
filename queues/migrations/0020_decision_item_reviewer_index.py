"""An (item, reviewer) index on decisions: the blind-review exclusion ("not an item you decided") is one lookup per
candidate item, however many decisions the reviewer has and whatever the planner knows (bench/qa.py's claim curve).

Every decision writes a row here, so on PostgreSQL the index is built CONCURRENTLY (the rule for hot tables,
tests/core/test_migrations_nonblocking.py); SQLite (the embedded demo) builds it plainly.
"""

from django.conf import settings
from django.db import migrations, models

from ops_platform.core.migration_operations import AddIndexConcurrentlyOnPostgreSQL


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("core", "0009_periodic_job_runs"),
        ("queues", "0019_ground_truth_origin_imported"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="decision",
            index=models.Index(fields=["item", "reviewer"], name="decision_item_reviewer_idx"),
        ),
    ]
