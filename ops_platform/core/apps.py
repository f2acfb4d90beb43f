from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "ops_platform.core"
    label = "core"
    verbose_name = "Kernel"

    def ready(self) -> None:
        from ops_platform.core.roles import roles_sync_after_migrate

        post_migrate.connect(roles_sync_after_migrate, sender=self)
