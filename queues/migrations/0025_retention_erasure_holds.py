"""Retention and erasure (docs/retention.md): items' purge marks, legal holds and erasure requests.

Non-atomic: the purge's partial index on the items is built CONCURRENTLY (intake and triage keep writing); the two
new item columns are nullable or have a constant default, which PostgreSQL adds without rewriting the table.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from ops_platform.core.migration_operations import AddIndexConcurrentlyOnPostgreSQL


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("queues", "0024_item_decided_op_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Erasure",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("source", models.SlugField(max_length=100)),
                ("idempotency_key", models.CharField(blank=True, max_length=200)),
                ("by_account", models.BooleanField(default=False)),
                ("item_ids", models.JSONField(blank=True, default=list)),
                (
                    "state",
                    models.CharField(
                        choices=[("running", "Running"), ("done", "Done")], default="running", max_length=20
                    ),
                ),
                ("items_erased", models.PositiveIntegerField(default=0)),
                ("wiped", models.JSONField(blank=True, default=dict)),
                ("requested_by", models.CharField(max_length=200)),
                ("requested_at", models.DateTimeField()),
                ("completed_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name="LegalHold",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("reason", models.CharField(help_text="The matter or order the hold is for.", max_length=500)),
                ("set_at", models.DateTimeField()),
                ("cleared_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        # Plain SQL on the database: SQLite would otherwise rebuild the items table for a NOT NULL column and
        # recreate every index of the model state, the PostgreSQL-only text-search index included. A constant
        # default is a catalogue change on PostgreSQL 11+ (no rewrite) and gives rows written by older code ''.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="reviewitem",
                    name="content_purge_reason",
                    field=models.CharField(
                        blank=True,
                        choices=[("retention", "Retention period over"), ("erasure", "Erased on request")],
                        max_length=20,
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE queues_reviewitem ADD COLUMN content_purge_reason varchar(20) NOT NULL DEFAULT ''",
                    reverse_sql="ALTER TABLE queues_reviewitem DROP COLUMN content_purge_reason",
                ),
            ],
        ),
        migrations.AddField(
            model_name="reviewitem",
            name="content_purged_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="reviewitem",
            index=models.Index(
                condition=models.Q(("content_purged_at__isnull", True), ("state__in", ["decided", "auto_actioned"])),
                fields=["decided_at"],
                name="item_purge_due_idx",
            ),
        ),
        migrations.AddField(
            model_name="erasure",
            name="account",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="queues.account",
            ),
        ),
        migrations.AddField(
            model_name="legalhold",
            name="account",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="queues.account",
            ),
        ),
        migrations.AddField(
            model_name="legalhold",
            name="cleared_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="legalhold",
            name="item",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="queues.reviewitem",
            ),
        ),
        migrations.AddField(
            model_name="legalhold",
            name="set_by",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.AddConstraint(
            model_name="erasure",
            constraint=models.UniqueConstraint(
                condition=models.Q(("idempotency_key", ""), _negated=True),
                fields=("source", "idempotency_key"),
                name="erasure_unique_key",
            ),
        ),
        migrations.AddIndex(
            model_name="legalhold",
            index=models.Index(
                condition=models.Q(("cleared_at__isnull", True)), fields=["item"], name="legalhold_item_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="legalhold",
            index=models.Index(
                condition=models.Q(("cleared_at__isnull", True)), fields=["account"], name="legalhold_account_idx"
            ),
        ),
        migrations.AddConstraint(
            model_name="legalhold",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("account__isnull", True), ("item__isnull", False)),
                    models.Q(("account__isnull", False), ("item__isnull", True)),
                    _connector="OR",
                ),
                name="legalhold_item_or_account",
            ),
        ),
    ]
