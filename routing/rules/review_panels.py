"""What routing shows on the reviewer's item page: the classifier scores and the rule that routed the item."""

from __future__ import annotations

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
    scores = [
        {"backend": row.get_backend_display(), "version": row.model_version, "scores": sorted(row.scores.items())}
        for row in rows
        if row.backend != Backend.UNSCORED
    ]
    unscored = next((row.detail.get("reason", "") for row in rows if row.backend == Backend.UNSCORED), None)
    return Panel(
        "Classifier scores and routing",
        "routing/review_panel.html",
        {"routed": routed, "scores": scores, "unscored": unscored},
    )
