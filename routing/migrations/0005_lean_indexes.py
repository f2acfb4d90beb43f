"""Fewer indexes on the rows triage writes for every item, as queues 0013 does for the item and its events.

Dropped, since a wider index leads with the same column: classifierscore.item (the unique (item, backend, model
version, prompt version)), routingdecision.item ((item, at)) and .rule_set ((rule_set, shadow, at)).
routingdecision.rule, empty for items no rule matched, is indexed only where set.
"""

import django.db.models.deletion
from django.db import migrations, models

from ops_platform.core.migration_operations import (
    AddIndexConcurrentlyOnPostgreSQL,
    DropIndexesConcurrentlyOnPostgreSQL,
)


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("queues", "0013_lean_indexes"),
        ("routing", "0004_idempotency_response_nul_safe"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="routingdecision",
            index=models.Index(
                condition=models.Q(("rule__isnull", False)), fields=["rule"], name="routingdecision_rule_idx"
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="classifierscore",
                    name="item",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="scores",
                        to="queues.reviewitem",
                    ),
                ),
                migrations.AlterField(
                    model_name="routingdecision",
                    name="item",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="routing_decisions",
                        to="queues.reviewitem",
                    ),
                ),
                migrations.AlterField(
                    model_name="routingdecision",
                    name="rule",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="routing.rule",
                    ),
                ),
                migrations.AlterField(
                    model_name="routingdecision",
                    name="rule_set",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="decisions",
                        to="routing.ruleset",
                    ),
                ),
            ],
            database_operations=[
                DropIndexesConcurrentlyOnPostgreSQL(
                    {
                        "routing_classifierscore_item_id_9ef67f5c": ("routing_classifierscore", "item_id", ""),
                        "routing_routingdecision_item_id_b9446a3a": ("routing_routingdecision", "item_id", ""),
                        "routing_routingdecision_rule_id_cb213d68": ("routing_routingdecision", "rule_id", ""),
                        "routing_routingdecision_rule_set_id_2604484e": ("routing_routingdecision", "rule_set_id", ""),
                    }
                )
            ],
        ),
    ]
