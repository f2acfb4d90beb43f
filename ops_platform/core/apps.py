from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "ops_platform.core"
    label = "core"
    verbose_name = "Kernel"

    def ready(self) -> None:
        # Register the webhook tasks in every process, web too: services send them by name, and only a
        # celery worker autodiscovers tasks modules (tests/drills/webhook_outage.py found them missing).
        from ops_platform.core import lookups, tasks  # noqa: F401  (``__any``; the webhook tasks)
        from ops_platform.core.roles import roles_sync_after_migrate

        post_migrate.connect(roles_sync_after_migrate, sender=self)
