"""Appeals: submitted over the API against a decided item, routed by the appeals rules, never given to the
reviewer who made the original decision, upheld or overturned (an overturn corrects the original)."""

from __future__ import annotations

import pytest

from ops_platform.core.models import ApiClient, Policy, Role, User, WebhookEvent
from ops_platform.core.services import user_create
from queues.models import AppealOutcome, Decision, ItemKind, ItemState, Queue, ReviewItem
from queues.services import appeal_decide, decision_record, item_claim, item_claim_next
from routing.models import RuleAction, RuleSetKind
from routing.rules.lifecycle import RuleData
from tests.conftest import PASSWORD, item
from tests.routing.rules_setup import policy_staff_member, ruleset_live

pytestmark = pytest.mark.django_db


@pytest.fixture
def appeals_queue(db: None) -> Queue:
    return Queue.objects.create(slug="appeals", name="Appeals", requires_rationale=True)


@pytest.fixture
def bob(in_house_team) -> User:
    return user_create(actor="test", username="bob", password=PASSWORD, roles=[Role.REVIEWER], team=in_house_team)


def decided_by(api, reviewer: User, policy: Policy, n: int = 1) -> ReviewItem:
    """An item submitted over the API, triaged to the intake queue and decided a violation by ``reviewer``."""
    response = api.post("/api/v1/items", item(n))
    assert response.status_code == 201, response.json()
    posted = ReviewItem.objects.get(pk=response.json()["id"])
    assert posted.state == ItemState.QUEUED
    assert posted.queue is not None
    posted.queue.policies.add(policy)  # a decision cites a policy of the item's queue
    item_claim(item=posted, actor=reviewer)
    decision_record(item=posted, actor=reviewer, is_violation=True, policy=policy)
    return posted


def appeal_body(n: int = 1, **fields) -> dict:
    return {"external_id": f"appeal-{n}", "item_external_id": f"ext-{n}", "statement": "It was a joke.", **fields}


def test_an_appeal_is_created_once_and_routed_by_the_appeals_rules(
    api, reviewer, hate_policy, appeals_queue, policy_staff
):
    ruleset_live(
        RuleSetKind.APPEALS,
        [RuleData("all", 'kind == "appeal"', RuleAction.ROUTE, queue_id=appeals_queue.pk)],
        author=policy_staff,
        approver=policy_staff_member("priya"),
        default_queue=appeals_queue,
    )
    original = decided_by(api, reviewer, hate_policy)

    first = api.post("/api/v1/appeals", appeal_body())
    again = api.post("/api/v1/appeals", appeal_body())

    assert first.status_code == 201, first.json()
    assert again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    appeal = ReviewItem.objects.get(pk=first.json()["id"])
    assert (appeal.kind, appeal.appeal_of, appeal.state, appeal.queue) == (
        ItemKind.APPEAL,
        original,
        ItemState.QUEUED,
        appeals_queue,
    )
    assert appeal.text == "It was a joke."


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (appeal_body(item_external_id="nope"), 404, "item_external_id"),
        ({"external_id": "a"}, 400, "item_external_id"),
        (appeal_body(language="not a tag!"), 400, "language"),
    ],
)
def test_bad_appeals_are_refused_naming_the_field(api, body, status, field):
    response = api.post("/api/v1/appeals", body)
    assert response.status_code == status
    assert field in str(response.json())
    assert not ReviewItem.objects.filter(kind=ItemKind.APPEAL).exists()


def test_an_undecided_item_or_one_with_an_open_appeal_cannot_be_appealed(api, reviewer, hate_policy):
    api.post("/api/v1/items", item(7))
    undecided = api.post("/api/v1/appeals", appeal_body(7))
    assert undecided.status_code == 409
    assert "no decision to appeal yet" in undecided.json()["detail"]

    decided_by(api, reviewer, hate_policy, n=1)
    assert api.post("/api/v1/appeals", appeal_body(1)).status_code == 201
    second = api.post("/api/v1/appeals", {**appeal_body(1), "external_id": "appeal-again"})
    assert second.status_code == 409
    assert "still open" in second.json()["detail"]


def test_the_original_decider_never_gets_the_appeal(api, reviewer, bob, hate_policy, intake_queue):
    decided_by(api, reviewer, hate_policy)
    appeal_id = api.post("/api/v1/appeals", appeal_body()).json()["id"]

    assert item_claim_next(queue=intake_queue, actor=reviewer) is None
    claimed = item_claim_next(queue=intake_queue, actor=bob)
    assert claimed is not None
    assert claimed.pk == appeal_id


def test_upholding_keeps_the_decision_and_overturning_corrects_it(api, reviewer, bob, hate_policy, intake_queue):
    ApiClient.objects.filter(pk=api.client.pk).update(callback_url="http://127.0.0.1:9/hook", webhook_secret="s")
    first = decided_by(api, reviewer, hate_policy, n=1)
    second = decided_by(api, reviewer, hate_policy, n=2)
    api.post("/api/v1/appeals", appeal_body(1))
    api.post("/api/v1/appeals", appeal_body(2))

    upheld = item_claim_next(queue=intake_queue, actor=bob)
    assert upheld is not None
    decision = appeal_decide(item=upheld, actor=bob, uphold=True, rationale="Clear slur.")
    assert (decision.appeal_outcome, decision.is_violation, decision.policy) == (
        AppealOutcome.UPHELD,
        True,
        hate_policy,
    )
    assert Decision.objects.get(item=first, is_final=True, superseded_by__isnull=True).reviewer == reviewer

    overturned = item_claim_next(queue=intake_queue, actor=bob)
    assert overturned is not None
    with pytest.raises(Exception, match="rationale"):
        appeal_decide(item=overturned, actor=bob, uphold=False, rationale=" ")
    decision = appeal_decide(item=overturned, actor=bob, uphold=False, rationale="Quoting a song.")
    assert (decision.appeal_outcome, decision.is_violation) == (AppealOutcome.OVERTURNED, False)
    current = Decision.objects.get(item=second, is_final=True, superseded_by__isnull=True)
    assert (current.reviewer, current.is_violation) == (bob, False)
    assert current.supersedes.reviewer == reviewer
    assert second.events.filter(event="appeal_overturned").exists()
    assert ReviewItem.objects.get(pk=overturned.pk).state == ItemState.DECIDED
    outcomes = {
        e.payload["external_id"]: e.payload["outcome"] for e in WebhookEvent.objects.filter(event_type="appeal.outcome")
    }
    assert outcomes == {"ext-1": "upheld", "ext-2": "overturned"}


def test_the_original_decider_cannot_decide_the_appeal_even_if_handed_it(api, reviewer, hate_policy, intake_queue):
    decided_by(api, reviewer, hate_policy)
    appeal = ReviewItem.objects.get(pk=api.post("/api/v1/appeals", appeal_body()).json()["id"])
    ReviewItem.objects.filter(pk=appeal.pk).update(state=ItemState.CLAIMED, assignee=reviewer)
    with pytest.raises(Exception, match="someone else must review it"):
        appeal_decide(item=appeal, actor=reviewer, uphold=True, rationale="mine")
