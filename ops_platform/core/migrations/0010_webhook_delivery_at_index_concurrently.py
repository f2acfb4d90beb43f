"""An index on WebhookDelivery.at: /metrics counts the delivery attempts of the last minutes.

Every webhook attempt writes a row here, so on PostgreSQL the index is built CONCURRENTLY (the rule for hot tables,
tests/core/test_migrations_nonblocking.py); SQLite (the embedded demo) builds it plainly.
"""

from django.db import migrations, models

from ops_platform.core.migration_operations import AddIndexConcurrentlyOnPostgreSQL


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("core", "0009_periodic_job_runs"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="webhookdelivery",
            index=models.Index(fields=["at"], name="webhook_delivery_at_idx"),
        ),
    ]
