from django.apps import AppConfig
from django.core.signals import request_started
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "ops_platform.core"
    label = "core"
    verbose_name = "Kernel"

    def ready(self) -> None:
        # Register the webhook tasks in every process, web too: services send them by name, and only a
        # celery worker autodiscovers tasks modules (tests/drills/webhook_outage.py found them missing).
        from ops_platform.core import lookups, tasks  # noqa: F401  (``__any``; the webhook tasks)
        from ops_platform.core.db_statistics import statistics_after_migrate
        from ops_platform.core.periodic import periodic_thread_start
        from ops_platform.core.retention import content_wipe_step_register, webhook_payloads_wipe
        from ops_platform.core.roles import roles_sync_after_migrate
        from ops_platform.core.tracing import tracing_configure

        post_migrate.connect(roles_sync_after_migrate, sender=self)
        content_wipe_step_register("webhook_payloads", webhook_payloads_wipe)
        post_migrate.connect(statistics_after_migrate, sender=self)
        # The embedded mode's beat starts with the first request a web process serves (a no-op elsewhere).
        request_started.connect(periodic_thread_start, dispatch_uid="periodic-thread-start")
        tracing_configure()  # a no-op unless TRACING_ENABLED
