# The home's "SLA attainment, 7 days" tile reads a rollup by received day instead of every item received in the
# week (issue 19: pages at a million decisions), filled here from the items so far; the rollup refresh keeps it.

from django.db import migrations, models
from django.db.models import Count, F, Q
from django.db.models.functions import TruncDate


def backfill(apps, schema_editor):
    ReviewItem = apps.get_model("queues", "ReviewItem")
    OpsReceivedSlaDaily = apps.get_model("analytics", "OpsReceivedSlaDaily")
    groups = (
        ReviewItem.objects.filter(is_golden=False, decided_at__isnull=False, due_at__isnull=False)
        .annotate(received_day=TruncDate("received_at"))
        .values("received_day")
        .annotate(decided=Count("pk"), within=Count("pk", filter=Q(decided_at__lte=F("due_at"))))
        .order_by()
    )
    OpsReceivedSlaDaily.objects.bulk_create(
        [OpsReceivedSlaDaily(day=g["received_day"], decided=g["decided"], within_sla=g["within"]) for g in groups],
        batch_size=2000,
    )


class Migration(migrations.Migration):

    dependencies = [
        ("analytics", "0004_backlog_overdue"),
        ("queues", "0020_item_received_op_and_multi_review_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="OpsReceivedSlaDaily",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField(unique=True)),
                ("decided", models.PositiveIntegerField(default=0)),
                ("within_sla", models.PositiveIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
