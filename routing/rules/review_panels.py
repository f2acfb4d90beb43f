"""What routing shows on the reviewer's item page: the classifier scores and the rule that routed the item."""

from __future__ import annotations

from ops_platform.core.models import ClassifierCategory
from queues.models import ReviewItem
from queues.panels import Panel
from routing.rules.models import RoutingDecision
from routing.scoring.models import Backend, ClassifierScore


def scores_panel(item: ReviewItem) -> Panel | None:
    routed = (
        RoutingDecision.objects.filter(item=item, shadow=False).select_related("rule_set").order_by("at", "pk").first()
    )
    rows = list(ClassifierScore.objects.filter(item=item).order_by("backend", "-created_at"))
    if routed is None and not rows:
        return None
    # Every category of the taxonomy is listed: one the backend did not score reads "not scored" (None here),
    # never a blank or a 0 a reviewer could take for "clean".
    scores = [
        {
            "backend": row.get_backend_display(),
            "version": row.model_version,
            "scores": [(key, row.scores.get(key)) for key in sorted({*ClassifierCategory.values, *row.scores})],
        }
        for row in rows
        if row.backend != Backend.UNSCORED
    ]
    unscored = next((row.detail.get("reason", "") for row in rows if row.backend == Backend.UNSCORED), None)
    return Panel(
        "Classifier scores and routing",
        "routing/review_panel.html",
        {"routed": routed, "scores": scores, "unscored": unscored},
    )
