from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("core", "0008_apiclient_vendor")]

    operations = [
        migrations.CreateModel(
            name="PeriodicJobRun",
            fields=[
                ("name", models.CharField(max_length=200, primary_key=True, serialize=False)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("failed", models.BooleanField(default=False)),
            ],
        ),
    ]
