from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Intake and routing"

    def ready(self) -> None:
        # Register the triage tasks in every process (web too), so services can send them by name.
        # The reviewer's item page (queues) shows scores and the routing rule without importing routing; the scoring
        # overview shows rules' incidents and intake's dead letters without scoring importing either.
        from ops_platform.core.home import home_notice_register
        from ops_platform.core.retention import content_wipe_step_register
        from queues.panels import panel_register
        from routing import retention, tasks  # noqa: F401
        from routing.intake.selectors import dead_letters_open
        from routing.rules.review_panels import scores_panel
        from routing.rules.selectors import rule_incidents_open
        from routing.scoring.media.selectors import media_panel
        from routing.scoring.notices import coverage_notices
        from routing.scoring.overview import overview_section_register

        panel_register(scores_panel, order=10)
        panel_register(media_panel, order=5)
        overview_section_register(lambda: {"rule_incidents": rule_incidents_open()[:100]})
        overview_section_register(lambda: {"dead_letters": dead_letters_open()[:200]})
        home_notice_register(coverage_notices)
        content_wipe_step_register("scores", retention.score_details_wipe)
        content_wipe_step_register("media", retention.media_copies_wipe)
        content_wipe_step_register("idempotency", retention.idempotency_records_wipe)
        content_wipe_step_register("dead_letters", retention.dead_letters_wipe)
