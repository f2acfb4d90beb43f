"""Issue 19: the vendor scorecards' and classifier pages' figures are cached per rewrite of their rollups; each
cursor row (one row each) counts the rewrites."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0007_ops_received_daily"),
    ]

    operations = [
        migrations.AddField(
            model_name="rollupcursor",
            name="generation",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="classifierrollupcursor",
            name="generation",
            field=models.BigIntegerField(default=0),
        ),
    ]
