"""``placements_preview``: where live triage places items under given programs, computed without writing, so a
check can route stored items again and compare (bench/e2e.py does after its load)."""

from __future__ import annotations

import pytest

from ops_platform.core.models import User
from queues.models import Queue, ReviewItem
from routing.models import RoutingDecision, RuleAction, RuleSet, RuleSetKind
from routing.rules.apply import items_route, placements_preview
from routing.rules.engine import program_for
from routing.rules.features import item_rows
from routing.rules.lifecycle import RuleData
from tests.routing.rules_setup import item_received, ruleset_live, scores_write

pytestmark = pytest.mark.django_db


def test_a_preview_places_items_as_triage_then_does_and_writes_nothing(
    policy_staff: User, priya: User, intake_queue: Queue, hate_queue: Queue, senior_queue: Queue
) -> None:
    intake_queue.escalation_target = senior_queue
    intake_queue.save()
    intake = ruleset_live(
        RuleSetKind.INTAKE,
        [
            RuleData(name="dm-watch", condition='surface == "dm"', action=RuleAction.TAG, tags=["dm"]),
            RuleData(name="hate", condition="score.hate >= 0.8", action=RuleAction.ROUTE, queue_id=hate_queue.pk),
        ],
        author=policy_staff,
        approver=priya,
        default_queue=intake_queue,
    )
    escalation = ruleset_live(
        RuleSetKind.ESCALATION,
        [
            RuleData(name="reported", condition="report_count >= 3", action=RuleAction.RAISE_PRIORITY, priority=20),
            RuleData(name="violent", condition="score.violence >= 0.9", action=RuleAction.ESCALATE, priority=40),
        ],
        author=policy_staff,
        approver=priya,
    )
    items = []
    for surface, reports, hate, violence in [("dm", 0, 0.9, 0.0), ("", 5, 0.1, 0.0), ("", 0, 0.2, 0.95), ("", 0, 0, 0)]:
        items.append(item_received(surface=surface, report_count=reports))
        scores_write(items[-1], hate=hate, violence=violence)
    rows = item_rows(list(ReviewItem.objects.filter(pk__in=[i.pk for i in items]).order_by("pk")))

    preview = placements_preview(
        list(rows.items()), intake=program_for(intake), escalation=program_for(RuleSet.objects.get(pk=escalation.pk))
    )

    assert not RoutingDecision.objects.exists()
    items_route(item_ids=[i.pk for i in items])
    stored = {d.item_id: d for d in RoutingDecision.objects.filter(rule_set=intake, shadow=False)}
    previewed = {p.item_id: (p.matched, p.destination, p.priority, sorted(set(p.tags))) for p in preview}
    assert previewed == {pk: (d.matched, d.destination, d.priority, sorted(d.tags)) for pk, d in stored.items()}
    assert [p.destination for p in preview] == ["queue:hate", "queue:general", "queue:senior", "queue:general"]
    assert [p.priority for p in preview] == [0, 20, 40, 0]


def test_one_item_previewed_in_two_views_is_escalated_by_each_views_own_row(
    policy_staff: User, priya: User, intake_queue: Queue
) -> None:
    """bench/e2e.py routes an item once per author history the run went through: the escalation rules must read
    each view's row, not whichever view of the item came last."""
    intake = ruleset_live(
        RuleSetKind.INTAKE,
        [RuleData(name="dm-watch", condition='surface == "dm"', action=RuleAction.TAG, tags=["dm"])],
        author=policy_staff,
        approver=priya,
        default_queue=intake_queue,
    )
    escalation = ruleset_live(
        RuleSetKind.ESCALATION,
        [
            RuleData(
                name="repeat-offender",
                condition="author.prior_violations >= 5",
                action=RuleAction.RAISE_PRIORITY,
                priority=10,
            )
        ],
        author=policy_staff,
        approver=priya,
    )
    item = item_received()
    scores_write(item, hate=0.1)
    row = item_rows([ReviewItem.objects.get(pk=item.pk)])[item.pk]
    views = [(item.pk, {**row, "author.prior_violations": float(v)}) for v in (0, 7)]

    preview = placements_preview(views, intake=program_for(intake), escalation=program_for(escalation))

    assert [p.priority for p in preview] == [0, 10]
