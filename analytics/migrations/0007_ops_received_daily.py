# The home's "SLA attainment, 7 days" and "Automation rate today" tiles read a rollup by received day instead of
# every item received in the period (issue 19: pages at a million decisions), filled here from the items so far
# (as ``analytics.rollups.operations.received_counts`` counts them); the rollup refresh keeps it from then on.

from django.db import migrations, models
from django.db.models import Count, F, Q
from django.db.models.functions import TruncDate


def backfill(apps, schema_editor):
    ReviewItem = apps.get_model("queues", "ReviewItem")
    OpsReceivedDaily = apps.get_model("analytics", "OpsReceivedDaily")
    sla = Q(decided_at__isnull=False, due_at__isnull=False)
    groups = (
        ReviewItem.objects.filter(is_golden=False)
        .annotate(received_day=TruncDate("received_at"))
        .values("received_day")
        .annotate(
            sla_decided=Count("pk", filter=sla),
            within_sla=Count("pk", filter=sla & Q(decided_at__lte=F("due_at"))),
            closed=Count("pk", filter=Q(state__in=["auto_actioned", "decided"])),
            closed_by_rule=Count("pk", filter=Q(state="auto_actioned")),
        )
        .order_by()
    )
    fields = ("sla_decided", "within_sla", "closed", "closed_by_rule")
    OpsReceivedDaily.objects.bulk_create(
        [
            OpsReceivedDaily(day=g["received_day"], **{k: g[k] for k in fields})
            for g in groups
            if any(g[k] for k in fields)
        ],
        batch_size=2000,
    )


class Migration(migrations.Migration):

    dependencies = [
        ("analytics", "0006_classifier_truth_imported_and_any_view"),
        ("queues", "0021_item_received_op_and_multi_review_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="OpsReceivedDaily",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField(unique=True)),
                ("sla_decided", models.PositiveIntegerField(default=0)),
                ("within_sla", models.PositiveIntegerField(default=0)),
                ("closed", models.PositiveIntegerField(default=0)),
                ("closed_by_rule", models.PositiveIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
