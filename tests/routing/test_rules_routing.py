"""Live routing by the active rule sets: first match, tags, auto-action caps, the child-safety guard,
shadow versions and the overdue escalation sweep."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ops_platform.core.models import ApiClient, EnforcementAction, Policy, Role, Team, User, Vendor, WebhookEvent
from ops_platform.core.services import user_create
from queues.models import ItemEvent, ItemState, Queue, ReviewItem
from routing.models import AutoActionTally, RoutingDecision, RuleAction, RuleSet, RuleSetKind
from routing.rules.apply import items_escalate_overdue, items_route
from routing.rules.lifecycle import RuleData, ruleset_shadow, ruleset_submit
from tests.conftest import PASSWORD
from tests.routing.rules_setup import (
    item_received,
    ruleset_drafted,
    ruleset_live,
    scores_write,
    unscored_mark,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def child_safety_queue(db: None) -> Queue:
    return Queue.objects.create(slug=settings.ROUTING_CHILD_SAFETY_QUEUE, name="Child safety", is_restricted=True)


@pytest.fixture
def remove(hate_policy: Policy) -> EnforcementAction:
    action = EnforcementAction.objects.create(slug="remove", name="Remove", strength=2)
    hate_policy.enforcement_actions.add(action)
    return action


def route(name: str, condition: str, queue: Queue, **fields: Any) -> RuleData:
    return RuleData(name=name, condition=condition, action=RuleAction.ROUTE, queue_id=queue.pk, **fields)


def tag(name: str, condition: str, *tags: str) -> RuleData:
    return RuleData(name=name, condition=condition, action=RuleAction.TAG, tags=list(tags))


def auto(name: str, condition: str, policy: Policy, action: EnforcementAction, *, cap: int, queue: Queue) -> RuleData:
    return RuleData(
        name=name,
        condition=condition,
        action=RuleAction.AUTO_ACTION,
        policy_id=policy.pk,
        enforcement_action_id=action.pk,
        daily_cap=cap,
        queue_id=queue.pk,
    )


def scored_item(text: str = "some text", *, surface: str = "", report_count: int = 0, **scores: float) -> ReviewItem:
    item = item_received(text, surface=surface, report_count=report_count)
    scores_write(item, **scores)
    return item


def fresh(item: ReviewItem) -> ReviewItem:
    return ReviewItem.objects.select_related("queue").get(pk=item.pk)


def live_decision(item: ReviewItem) -> RoutingDecision:
    return RoutingDecision.objects.select_related("rule", "rule_set").get(item=item, shadow=False)


# --- first match, default, tags ----------------------------------------------------------------------


@pytest.fixture
def intake_v1(policy_staff: User, priya: User, intake_queue: Queue, hate_queue: Queue, senior_queue: Queue) -> RuleSet:
    return ruleset_live(
        RuleSetKind.INTAKE,
        [
            tag("dm-watch", 'surface == "dm"', "dm"),
            route("hate-high", "score.hate >= 0.8", hate_queue, priority=5, required_reviews=2),
            route("hate-any", "score.hate >= 0.3", senior_queue, priority=1),
            tag("reported", "report_count >= 3", "reported", "watch"),
        ],
        author=policy_staff,
        approver=priya,
        default_queue=intake_queue,
    )


def test_the_first_matching_rule_decides(intake_v1: RuleSet, hate_queue: Queue, senior_queue: Queue):
    high = scored_item(hate=0.9, violence=0.1)
    middling = scored_item(hate=0.5)

    assert items_route(item_ids=[high.pk, middling.pk]) == [high.pk, middling.pk]

    high, middling = fresh(high), fresh(middling)
    assert (high.state, high.queue, high.priority) == (ItemState.QUEUED, hate_queue, 5)
    assert (middling.queue, middling.priority) == (senior_queue, 1)
    assert live_decision(high).matched == "hate-high"
    assert live_decision(middling).matched == "hate-any"


@pytest.mark.postgres  # SQLite splits bulk statements by its variable limit, so its counts grow with the batch
def test_a_batch_is_routed_in_as_many_queries_whatever_its_size_and_groups(
    intake_v1: RuleSet, django_assert_max_num_queries: Any
):
    """Triage routes a batch with a fixed number of statements: not one per item (a field the rows read left
    unloaded) nor per group of items bound for the same queue, priority and tags."""
    items_route(item_ids=[scored_item(hate=0.9).pk, scored_item(hate=0.5).pk])  # programs compiled and cached
    large = [
        scored_item(hate=hate, surface=surface, report_count=reports, text=f"item {n}")
        for n, (hate, surface, reports) in enumerate(
            [(0.9, "dm", 0), (0.5, "", 3), (0.1, "dm", 5), (0.95, "", 0), (0.4, "dm", 0), (0.0, "", 4)] * 3
        )
    ]
    with CaptureQueriesContext(connection) as small_run:
        items_route(item_ids=[scored_item(hate=0.9).pk, scored_item(hate=0.5).pk])
    with django_assert_max_num_queries(len(small_run.captured_queries)):
        assert len(items_route(item_ids=[i.pk for i in large])) == len(large)
    assert {fresh(i).state for i in large} == {ItemState.QUEUED}


def test_an_item_no_rule_matches_goes_to_the_default_queue(intake_v1: RuleSet, intake_queue: Queue):
    calm = scored_item(hate=0.1)

    items_route(item_ids=[calm.pk])

    calm = fresh(calm)
    assert (calm.state, calm.queue, calm.priority, calm.required_reviews) == (ItemState.QUEUED, intake_queue, 0, 1)
    decision = live_decision(calm)
    assert (decision.matched, decision.rule, decision.destination) == ("default", None, "queue:general")
    assert calm.events.get().data["reason"] == "default queue (no rule matched)"


def test_the_routing_decision_records_version_rule_and_scores(intake_v1: RuleSet, hate_queue: Queue):
    item = scored_item(hate=0.91234567, violence=0.1, sexual_minors=0.01)

    items_route(item_ids=[item.pk])

    decision = live_decision(item)
    assert decision.rule_set == intake_v1
    assert decision.rule is not None
    assert (decision.rule.name, decision.rule.rule_set) == ("hate-high", intake_v1)
    assert decision.matched == "hate-high"
    assert (decision.action, decision.destination, decision.queue, decision.priority) == (
        RuleAction.ROUTE,
        "queue:hate",
        hate_queue,
        5,
    )
    assert decision.scores == {"hate": 0.9123, "violence": 0.1, "sexual_minors": 0.01}
    assert decision.shadow is False


def test_the_deciding_rule_sets_required_reviews(intake_v1: RuleSet):
    item = scored_item(hate=0.95)

    items_route(item_ids=[item.pk])

    assert fresh(item).required_reviews == 2


def test_every_matching_tag_rule_adds_its_tags_wherever_it_stands(intake_v1: RuleSet, hate_queue: Queue):
    # "dm-watch" comes before the deciding rule, "reported" after it: both apply.
    both = scored_item(hate=0.9, surface="dm", report_count=4)
    neither = scored_item(hate=0.9, surface="comments")

    items_route(item_ids=[both.pk, neither.pk])

    assert fresh(both).tags == ["dm", "reported", "watch"]
    assert fresh(both).queue == hate_queue
    assert live_decision(both).tags == ["dm", "reported", "watch"]
    assert fresh(neither).tags == []


def test_routing_twice_changes_nothing(intake_v1: RuleSet):
    item = scored_item(hate=0.9)

    assert items_route(item_ids=[item.pk]) == [item.pk]
    assert items_route(item_ids=[item.pk]) == []

    assert RoutingDecision.objects.filter(item=item).count() == 1
    assert item.events.count() == 1


# --- auto-action ------------------------------------------------------------------------------------


@pytest.fixture
def auto_v1(
    policy_staff: User,
    priya: User,
    intake_queue: Queue,
    hate_queue: Queue,
    hate_policy: Policy,
    remove: EnforcementAction,
) -> RuleSet:
    return ruleset_live(
        RuleSetKind.INTAKE,
        [auto("hate-auto", "score.hate >= 0.8 or report_count >= 10", hate_policy, remove, cap=2, queue=hate_queue)],
        author=policy_staff,
        approver=priya,
        default_queue=intake_queue,
    )


def test_auto_action_closes_items_up_to_the_daily_cap_and_queues_the_rest(auto_v1: RuleSet, hate_queue: Queue):
    items = [scored_item(hate=0.95) for _ in range(3)]

    items_route(item_ids=[i.pk for i in items])

    first, second, third = (fresh(i) for i in items)
    assert [first.state, second.state] == [ItemState.AUTO_ACTIONED, ItemState.AUTO_ACTIONED]
    assert (third.state, third.queue) == (ItemState.QUEUED, hate_queue)
    assert live_decision(first).destination == "auto:hate-speech/remove"
    assert live_decision(first).action == RuleAction.AUTO_ACTION
    assert live_decision(first).queue is None
    assert live_decision(third).matched == "cap-reached:hate-auto"
    assert live_decision(third).destination == "queue:hate"
    assert live_decision(third).action == RuleAction.ROUTE  # counted as routed, not as an auto-action
    event = first.events.get()
    assert (event.event, event.data["policy"], event.data["action"]) == ("auto_actioned", "hate-speech", "remove")
    assert AutoActionTally.objects.get(rule__name="hate-auto").count == 2


def test_auto_actioned_items_are_sent_to_their_client_as_final_decisions(
    auto_v1: RuleSet, django_capture_on_commit_callbacks: Any
):
    client = ApiClient.objects.create(
        name="Test app", source="test", callback_url="http://127.0.0.1:9/hook", webhook_secret="s3cret"
    )
    items = [scored_item(hate=0.95) for _ in range(3)]  # the cap is 2: the third goes to people

    with django_capture_on_commit_callbacks(execute=False) as sends:
        items_route(item_ids=[i.pk for i in items])

    events = list(WebhookEvent.objects.filter(client=client).order_by("payload__item_id"))
    assert [e.payload["item_id"] for e in events] == [items[0].pk, items[1].pk]
    assert {e.event_type for e in events} == {"decision.final"}
    payload = events[0].payload
    assert payload["decided_by"] == "rule"
    assert payload["rule"] == "hate-auto"
    assert (payload["is_violation"], payload["policy"], payload["action"]) == (True, "hate-speech", "remove")
    assert payload["decision_id"] is None
    assert "text" not in payload
    assert len(sends) == 1  # one after-commit hand-off for the whole batch


def test_the_cap_holds_across_batches_and_resets_the_next_day(auto_v1: RuleSet, hate_queue: Queue):
    today = timezone.now()
    items_route(item_ids=[scored_item(hate=0.95).pk, scored_item(hate=0.95).pk], at=today)
    late = scored_item(hate=0.95)
    tomorrow = scored_item(hate=0.95)

    items_route(item_ids=[late.pk], at=today)
    items_route(item_ids=[tomorrow.pk], at=today + timedelta(days=1))

    assert (fresh(late).state, fresh(late).queue) == (ItemState.QUEUED, hate_queue)
    assert fresh(tomorrow).state == ItemState.AUTO_ACTIONED
    tallies = AutoActionTally.objects.order_by("day").values_list("count", flat=True)
    assert list(tallies) == [2, 1]


@pytest.mark.parametrize("failed_scoring", [True, False], ids=["marked-unscored", "no-scores-at-all"])
def test_an_unscored_item_is_never_auto_actioned(failed_scoring: bool, auto_v1: RuleSet, hate_queue: Queue):
    item = item_received("buy now", report_count=12)  # the rule matches on reports alone
    if failed_scoring:
        unscored_mark(item)

    items_route(item_ids=[item.pk])

    item = fresh(item)
    assert (item.state, item.queue) == (ItemState.QUEUED, hate_queue)
    decision = live_decision(item)
    assert decision.matched == "unscored:hate-auto"
    assert decision.destination == "queue:hate"
    assert not AutoActionTally.objects.filter(count__gt=0).exists()


# --- the child-safety guard -------------------------------------------------------------------------


def test_child_safety_scores_go_to_the_child_safety_queue_even_when_a_rule_would_auto_action(
    auto_v1: RuleSet, child_safety_queue: Queue
):
    threshold = settings.ROUTING_CHILD_SAFETY_THRESHOLD
    flagged = scored_item(hate=0.99, sexual_minors=threshold)
    below = scored_item(hate=0.99, sexual_minors=threshold - 0.01)

    items_route(item_ids=[flagged.pk, below.pk])

    flagged = fresh(flagged)
    assert (flagged.state, flagged.queue) == (ItemState.QUEUED, child_safety_queue)
    assert flagged.priority == settings.ROUTING_CHILD_SAFETY_PRIORITY
    decision = live_decision(flagged)
    assert (decision.matched, decision.rule, decision.destination) == (
        "builtin:child-safety",
        None,
        f"queue:{child_safety_queue.slug}",
    )
    assert fresh(below).state == ItemState.AUTO_ACTIONED
    assert AutoActionTally.objects.get().count == 1


def test_the_child_safety_guard_holds_with_no_active_rule_set(intake_queue: Queue, child_safety_queue: Queue):
    flagged = scored_item(sexual_minors=0.97)
    calm = scored_item(sexual_minors=0.01)

    items_route(item_ids=[flagged.pk, calm.pk])

    assert fresh(flagged).queue == child_safety_queue
    assert fresh(calm).queue == intake_queue
    assert live_decision(flagged).rule_set is None


# --- shadow versions --------------------------------------------------------------------------------


def test_a_shadow_version_records_what_it_would_do_and_moves_nothing(
    intake_v1: RuleSet,
    policy_staff: User,
    intake_queue: Queue,
    senior_queue: Queue,
    hate_queue: Queue,
    hate_policy: Policy,
    remove: EnforcementAction,
):
    candidate = ruleset_drafted(
        RuleSetKind.INTAKE,
        [
            auto("hate-auto", "score.hate >= 0.9", hate_policy, remove, cap=100, queue=hate_queue),
            route("calm", "score.hate < 0.2", senior_queue),
        ],
        author=policy_staff,
        default_queue=intake_queue,
    )
    ruleset_submit(actor=policy_staff, rule_set=candidate)
    ruleset_shadow(actor=policy_staff, rule_set=candidate, on=True)
    severe = scored_item(hate=0.95)
    calm = scored_item(hate=0.1)

    items_route(item_ids=[severe.pk, calm.pk])

    assert (fresh(severe).state, fresh(severe).queue) == (ItemState.QUEUED, hate_queue)
    assert (fresh(calm).state, fresh(calm).queue) == (ItemState.QUEUED, intake_queue)
    shadow = {d.item_id: d for d in RoutingDecision.objects.filter(shadow=True).select_related("rule_set", "rule")}
    assert {d.rule_set for d in shadow.values()} == {candidate}
    assert (shadow[severe.pk].matched, shadow[severe.pk].destination) == ("hate-auto", "auto:hate-speech/remove")
    assert (shadow[calm.pk].matched, shadow[calm.pk].destination) == ("calm", "queue:senior")
    assert live_decision(severe).rule_set == intake_v1
    assert not AutoActionTally.objects.exists()
    assert not ItemEvent.objects.filter(queue=senior_queue).exists()


def test_a_stopped_shadow_records_nothing(
    intake_v1: RuleSet, policy_staff: User, intake_queue: Queue, senior_queue: Queue
):
    rules = [route("calm", "score.hate < 0.2", senior_queue)]
    candidate = ruleset_drafted(RuleSetKind.INTAKE, rules, author=policy_staff, default_queue=intake_queue)
    ruleset_submit(actor=policy_staff, rule_set=candidate)
    ruleset_shadow(actor=policy_staff, rule_set=candidate, on=True)
    ruleset_shadow(actor=policy_staff, rule_set=candidate, on=False)
    item = scored_item(hate=0.1)

    items_route(item_ids=[item.pk])

    assert not RoutingDecision.objects.filter(shadow=True).exists()


# --- the overdue sweep ------------------------------------------------------------------------------


@pytest.fixture
def escalation_v1(policy_staff: User, priya: User, intake_queue: Queue, senior_queue: Queue) -> RuleSet:
    leads = Queue.objects.create(slug="leads", name="Leads")
    senior_queue.escalation_target = leads
    senior_queue.save()
    intake_queue.escalation_target = senior_queue
    intake_queue.save()
    rule = RuleData(name="overdue-30", condition="overdue_minutes > 30", action=RuleAction.ESCALATE, priority=20)
    return ruleset_live(RuleSetKind.ESCALATION, [rule], author=policy_staff, approver=priya)


def test_an_overdue_item_is_escalated_to_its_queues_target_once(
    escalation_v1: RuleSet, intake_queue: Queue, senior_queue: Queue
):
    now = timezone.now()
    received = now - intake_queue.sla - timedelta(hours=2)
    overdue = item_received(received_at=received)
    on_time = item_received(received_at=now)
    items_route(item_ids=[overdue.pk, on_time.pk], at=received)
    assert fresh(overdue).queue == intake_queue  # escalation rules at triage see nothing overdue yet

    assert items_escalate_overdue(now=now) == 1
    # Still overdue in the senior queue, whose own target exists: the rule escalates an item once.
    assert items_escalate_overdue(now=now + timedelta(hours=1)) == 0

    overdue, on_time = fresh(overdue), fresh(on_time)
    assert (overdue.state, overdue.queue, overdue.priority) == (ItemState.QUEUED, senior_queue, 20)
    assert on_time.queue == intake_queue
    escalated = overdue.events.get(event="escalated")
    assert escalated.data["rule"] == "overdue-30"
    assert escalated.data["from_queue"] == "general"
    decision = RoutingDecision.objects.get(item=overdue, rule_set=escalation_v1)
    assert (decision.matched, decision.destination, decision.action) == (
        "overdue-30",
        "queue:senior",
        RuleAction.ESCALATE,
    )


def test_a_notify_rule_emails_the_destination_queues_leads_ids_and_no_content(
    policy_staff: User,
    priya: User,
    intake_queue: Queue,
    senior_queue: Queue,
    in_house_team: Team,
    vendor_a: Vendor,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
):
    intake_queue.escalation_target = senior_queue
    intake_queue.save()
    rule = RuleData(name="overdue-notify", condition="overdue_minutes > 30", action=RuleAction.ESCALATE, notify=True)
    ruleset_live(RuleSetKind.ESCALATION, [rule], author=policy_staff, approver=priya)
    vendor_team = Team.objects.create(slug="vendor-a-seniors", name="A seniors", vendor=vendor_a)
    people = [
        ("lead", [Role.SENIOR_REVIEWER], in_house_team, "lead@example.org"),  # the one to tell
        ("silent", [Role.SENIOR_REVIEWER], in_house_team, ""),  # no address
        ("outside", [Role.SENIOR_REVIEWER], vendor_team, "outside@example.org"),  # the queue does not admit them
        ("worker", [Role.REVIEWER], in_house_team, "worker@example.org"),  # not a lead
    ]
    for username, roles, team, email in people:
        user_create(actor="test", username=username, password=PASSWORD, roles=roles, team=team, email=email)
    now = timezone.now()
    received = now - intake_queue.sla - timedelta(hours=2)
    hostile = [item_received(received_at=received, text=f"<script>steal()</script> secret {n}") for n in range(3)]
    items_route(item_ids=[i.pk for i in hostile], at=received)

    with django_capture_on_commit_callbacks(execute=True):
        assert items_escalate_overdue(now=now) == 3

    [mail] = mailoutbox
    assert mail.to == ["lead@example.org"]
    assert mail.subject == f"3 items escalated to {senior_queue.name}"
    assert "overdue-notify" in mail.body
    assert all(str(i.pk) in mail.body for i in hostile)
    assert f"{settings.SITE_URL}/review/" in mail.body
    assert "secret" not in mail.body
    assert "script" not in mail.body


def test_a_rule_without_notify_sends_no_email(
    escalation_v1: RuleSet,
    intake_queue: Queue,
    qa_lead: User,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
):
    qa_lead.email = "quinn@example.org"
    qa_lead.save()
    received = timezone.now() - intake_queue.sla - timedelta(hours=2)
    item = item_received(received_at=received)
    items_route(item_ids=[item.pk], at=received)

    with django_capture_on_commit_callbacks(execute=True):
        assert items_escalate_overdue() == 1

    assert mailoutbox == []


def test_the_sweep_does_nothing_without_an_active_escalation_version(intake_queue: Queue):
    received = timezone.now() - timedelta(days=3)
    item = item_received(received_at=received)
    items_route(item_ids=[item.pk], at=received)

    assert items_escalate_overdue() == 0
    assert fresh(item).queue == intake_queue


def test_a_policy_made_human_review_only_after_activation_sends_items_to_people(
    auto_v1: RuleSet, hate_queue: Queue, hate_policy: Policy
):
    Policy.objects.filter(pk=hate_policy.pk).update(human_review_only=True)
    item = scored_item(hate=0.95)

    assert items_route(item_ids=[item.pk]) == [item.pk]  # the batch does not fail

    item = fresh(item)
    assert (item.state, item.queue) == (ItemState.QUEUED, hate_queue)
    assert live_decision(item).matched == "policy-refuses-auto:hate-auto"
    assert not AutoActionTally.objects.exists()


def test_an_escalation_at_triage_counts_as_that_rules_one_escalation(
    policy_staff: User, priya: User, intake_queue: Queue, senior_queue: Queue
):
    intake_queue.escalation_target = senior_queue
    intake_queue.save()
    senior_queue.escalation_target = Queue.objects.create(slug="leads", name="Leads")
    senior_queue.save()
    repeat = RuleData(name="always", condition='kind == "content"', action=RuleAction.ESCALATE, priority=5)
    escalation = ruleset_live(RuleSetKind.ESCALATION, [repeat], author=policy_staff, approver=priya)
    now = timezone.now()
    item = item_received(received_at=now - timedelta(days=3))

    items_route(item_ids=[item.pk], at=now)
    assert fresh(item).queue == senior_queue
    recorded = RoutingDecision.objects.get(item=item, rule_set=escalation)
    assert (recorded.matched, recorded.destination) == ("always", "queue:senior")

    # Overdue now, and the rule still matches: it has escalated this item already.
    assert items_escalate_overdue(now=now) == 0
    assert fresh(item).queue == senior_queue
