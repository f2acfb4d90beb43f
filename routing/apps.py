from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Intake and routing"

    def ready(self) -> None:
        # Register the triage tasks in every process (web too), so services can send them by name.
        # The reviewer's item page (queues) shows scores and the routing rule without importing routing.
        from queues.panels import panel_register
        from routing import tasks  # noqa: F401
        from routing.review_panels import scores_panel

        panel_register(scores_panel, order=10)
