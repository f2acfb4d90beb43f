from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Intake and routing"

    def ready(self) -> None:
        # Register the triage tasks in every process (web too), so services can send them by name.
        from routing import tasks  # noqa: F401
