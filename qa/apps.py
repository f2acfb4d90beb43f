from django.apps import AppConfig


class QaConfig(AppConfig):
    name = "qa"
    verbose_name = "Quality assurance"

    def ready(self) -> None:
        from ops_platform.core.retention import content_wipe_step_register
        from qa.retention import qa_content_wipe

        content_wipe_step_register("qa", qa_content_wipe)
