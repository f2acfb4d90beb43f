"""Promises about decisions and claims, attacked through the services and over HTTP: a decision cites only what
the item's queue offers; an appeal ends only with an appeal outcome; an escalated item can always be worked and a
reservation ends; a lapsed lease is gone; one reviewer holds one item per queue however fast they click; a
skipped item goes to someone else next and does not count toward the exposure cap."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import (
    ApiClient,
    AuditLog,
    DecisionLabel,
    EnforcementAction,
    Policy,
    Role,
    Skill,
    Team,
    User,
    WebhookEvent,
)
from ops_platform.core.services import user_create
from queues import services, tasks
from queues.models import AppealOutcome, Decision, ItemEvent, ItemKind, ItemState, Queue, ReviewItem
from queues.services import (
    appeal_decide,
    decision_correct,
    decision_record,
    item_claim_next,
    item_escalate,
    item_release,
    items_auto_action,
    leases_expire,
)
from queues.wellness import exposure_category_save, exposure_today, queue_exposure_set
from tests.conftest import PASSWORD
from tests.queues.factories import bulk_decide, item_queued

pytestmark = pytest.mark.django_db


def signed_in(user: User) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def claimed(queue: Queue, actor: User, **at: Any) -> ReviewItem:
    item = item_claim_next(queue=queue, actor=actor, **at)
    assert item is not None, f"{actor.username} got nothing from {queue.slug}"
    return item


def still_held(item: ReviewItem, actor: User) -> bool:
    item.refresh_from_db()
    return (item.state, item.assignee_id) == (ItemState.CLAIMED, actor.pk)


@pytest.fixture
def bob(in_house_team: Team) -> User:
    return user_create(actor="test", username="bob", password=PASSWORD, roles=[Role.REVIEWER], team=in_house_team)


@pytest.fixture
def sam(in_house_team: Team) -> User:
    """A second senior reviewer."""
    return user_create(
        actor="test", username="sam", password=PASSWORD, roles=[Role.SENIOR_REVIEWER], team=in_house_team
    )


@pytest.fixture
def remove(db: None) -> EnforcementAction:
    return EnforcementAction.objects.create(slug="remove", name="Remove content", strength=4)


@pytest.fixture
def hate(remove: EnforcementAction) -> Policy:
    policy = Policy.objects.create(slug="harassment", name="Harassment", guidelines="No targeted abuse.")
    policy.enforcement_actions.add(remove)
    DecisionLabel.objects.create(policy=policy, slug="insult", name="Insult")
    return policy


@pytest.fixture
def child_safety(remove: EnforcementAction) -> Policy:
    policy = Policy.objects.create(slug="child-safety", name="Child safety", severity=4, guidelines="-")
    report = EnforcementAction.objects.create(slug="report-ncmec", name="Report to NCMEC", strength=8)
    policy.enforcement_actions.add(remove, report)
    return policy


@pytest.fixture
def hate_queue(hate: Policy) -> Queue:
    queue = Queue.objects.create(slug="hate-harassment", name="Hate & harassment")
    queue.policies.add(hate)
    return queue


@pytest.fixture
def child_queue(child_safety: Policy) -> Queue:
    queue = Queue.objects.create(slug="child-safety", name="Child safety")
    queue.policies.add(child_safety)
    return queue


# --- 1. decisions are scoped to the item's queue ---------------------------------------------------------


def test_a_decision_may_not_cite_a_policy_the_items_queue_does_not_offer(
    hate_queue: Queue, child_queue: Queue, child_safety: Policy, reviewer: User
):
    item = item_queued(hate_queue)
    held = claimed(hate_queue, reviewer)
    report = EnforcementAction.objects.get(slug="report-ncmec")

    for violation in (True, False):  # a "no violation" recorded under a policy is scoped the same way
        with pytest.raises(ApplicationError) as refused:
            decision_record(
                item=held,
                actor=reviewer,
                is_violation=violation,
                policy=child_safety,
                action=report if violation else None,
            )
        assert (refused.value.status_code, refused.value.field) == (400, "policy")
        assert "'child-safety' is not one of the policies of queue 'hate-harassment'" in refused.value.message

    assert not Decision.objects.filter(item=item).exists()
    assert still_held(item, reviewer)


def test_a_queue_that_lists_no_policy_offers_none(intake_queue: Queue, hate: Policy, reviewer: User):
    item_queued(intake_queue)
    held = claimed(intake_queue, reviewer)

    with pytest.raises(ApplicationError, match="not one of the policies of queue 'general'"):
        decision_record(item=held, actor=reviewer, is_violation=True, policy=hate)
    no_action = EnforcementAction.objects.create(slug="no-action", name="No action", strength=0)
    hate.enforcement_actions.add(no_action)
    with pytest.raises(ApplicationError, match="not an action of any policy of queue 'general'"):
        decision_record(item=held, actor=reviewer, is_violation=False, action=no_action)

    assert decision_record(item=held, actor=reviewer, is_violation=False).closed


def test_a_decision_in_the_escalation_queue_is_scoped_to_that_queues_policies(
    hate_queue: Queue, child_queue: Queue, hate: Policy, child_safety: Policy, reviewer: User, qa_lead: User
):
    hate_queue.escalation_target = child_queue
    hate_queue.save()
    item = item_queued(hate_queue)
    item_escalate(item=claimed(hate_queue, reviewer), actor=reviewer, reason="needs a specialist")
    held = claimed(child_queue, qa_lead)
    assert held.pk == item.pk

    with pytest.raises(ApplicationError, match="'harassment' is not one of the policies of queue 'child-safety'"):
        decision_record(item=held, actor=qa_lead, is_violation=True, policy=hate)

    assert decision_record(item=held, actor=qa_lead, is_violation=True, policy=child_safety).closed


def test_a_bulk_decision_may_not_cite_a_policy_the_queue_does_not_offer(
    hate_queue: Queue, child_queue: Queue, child_safety: Policy, qa_lead: User
):
    items = [item_queued(hate_queue) for _ in range(3)]
    report = EnforcementAction.objects.get(slug="report-ncmec")

    with pytest.raises(ApplicationError, match="not one of the policies of queue 'hate-harassment'"):
        bulk_decide(
            queue=hate_queue,
            item_ids=[i.pk for i in items],
            actor=qa_lead,
            is_violation=True,
            policy=child_safety,
            action=report,
            rationale="wave",
        )

    assert not Decision.objects.exists()
    assert set(ReviewItem.objects.filter(pk__in=[i.pk for i in items]).values_list("state", flat=True)) == {"queued"}


def test_a_qa_correction_may_not_cite_a_policy_the_queue_does_not_offer(
    hate_queue: Queue, child_queue: Queue, hate: Policy, child_safety: Policy, reviewer: User, qa_lead: User
):
    item = item_queued(hate_queue)
    original = decision_record(item=claimed(hate_queue, reviewer), actor=reviewer, is_violation=True, policy=hate)

    with pytest.raises(ApplicationError, match="not one of the policies of queue 'hate-harassment'"):
        decision_correct(
            item=item, actor=qa_lead, is_violation=True, policy=child_safety, action=None, rationale="wrong policy"
        )

    assert list(Decision.objects.filter(item=item)) == [original.decision]
    # An item a rule closed has no queue: any active policy may correct it, as QA's forms offer.
    closed_by_rule = ReviewItem.objects.create(source="s", external_id="auto", received_at=timezone.now())
    items_auto_action(
        item_ids=[closed_by_rule.pk],
        actor="rules:x",
        policy=hate,
        action=EnforcementAction.objects.get(slug="remove"),
        reason="rule",
    )
    assert (
        decision_correct(
            item=closed_by_rule,
            actor=qa_lead,
            is_violation=True,
            policy=child_safety,
            action=None,
            rationale="worse than the rule thought",
        ).policy
        == child_safety
    )


def test_posting_another_queues_policy_to_the_decide_form_is_refused_with_a_4xx(
    hate_queue: Queue, child_queue: Queue, child_safety: Policy, reviewer: User
):
    item = item_queued(hate_queue)
    held = claimed(hate_queue, reviewer)
    report = EnforcementAction.objects.get(slug="report-ncmec")

    response = signed_in(reviewer).post(
        reverse("review-decide", args=[held.pk]),
        {"violation": "yes", "policy": child_safety.pk, "action": report.pk, "rationale": "x"},
    )

    assert response.status_code == 400
    assert "is not one of the policies of queue" in response.content.decode()
    assert not Decision.objects.filter(item=item).exists()
    assert still_held(item, reviewer)


def test_posting_another_queues_policy_to_the_bulk_form_stores_nothing(
    hate_queue: Queue, child_queue: Queue, child_safety: Policy, qa_lead: User
):
    items = [item_queued(hate_queue) for _ in range(2)]

    response = signed_in(qa_lead).post(
        reverse("review-bulk", args=[hate_queue.slug]),
        {
            "items": [i.pk for i in items],
            "violation": "yes",
            "policy": child_safety.pk,
            "action": EnforcementAction.objects.get(slug="report-ncmec").pk,
            "rationale": "wave",
        },
    )

    assert response.status_code == 400
    assert "is not one of the policies of queue" in response.content.decode()
    assert not Decision.objects.exists()


# --- 2. appeals end only through an appeal outcome ------------------------------------------------------


@pytest.fixture
def appeal(hate_queue: Queue, hate: Policy, reviewer: User) -> ReviewItem:
    """An appeal, waiting in the hate queue, of alice's violation decision."""
    ApiClient.objects.create(name="App", source="claims", callback_url="http://127.0.0.1:9/h", webhook_secret="s")
    original = item_queued(hate_queue)
    decision_record(item=claimed(hate_queue, reviewer), actor=reviewer, is_violation=True, policy=hate)
    return item_queued(hate_queue, kind=ItemKind.APPEAL, appeal_of=original, text="it was a joke")


def test_an_appeal_cannot_be_closed_with_an_ordinary_decision(appeal: ReviewItem, hate: Policy, bob: User):
    held = claimed(appeal.queue, bob)
    assert held.pk == appeal.pk

    for violation in (False, True):
        with pytest.raises(ApplicationError) as refused:
            decision_record(item=held, actor=bob, is_violation=violation, policy=hate if violation else None)
        assert (refused.value.status_code, refused.value.field) == (409, "item")
        assert "ends only by upholding or overturning" in refused.value.message

    assert not Decision.objects.filter(item=appeal).exists()
    assert still_held(appeal, bob)
    decision = appeal_decide(item=held, actor=bob, uphold=True, rationale="a threat, not a joke")
    assert decision.appeal_outcome == AppealOutcome.UPHELD


def test_the_decide_form_refuses_an_appeal_and_the_appeal_form_ends_it(
    appeal: ReviewItem, bob: User, django_capture_on_commit_callbacks: Any
):
    held = claimed(appeal.queue, bob)
    http = signed_in(bob)

    refused = http.post(reverse("review-decide", args=[held.pk]), {"quick": "none", "rationale": "fine"})

    assert refused.status_code == 409
    assert "ends only by upholding or overturning" in refused.content.decode()
    assert not Decision.objects.filter(item=appeal).exists()
    with django_capture_on_commit_callbacks(execute=False):
        done = http.post(reverse("review-appeal", args=[held.pk]), {"outcome": "overturn", "rationale": "satire"})
    assert done.status_code == 302
    assert Decision.objects.get(item=appeal).appeal_outcome == AppealOutcome.OVERTURNED
    assert WebhookEvent.objects.filter(event_type="appeal.outcome", payload__appeal_id=appeal.pk).count() == 1


def test_a_qa_correction_cannot_rewrite_an_appeals_outcome(appeal: ReviewItem, bob: User, qa_lead: User):
    held = claimed(appeal.queue, bob)
    appeal_decide(item=held, actor=bob, uphold=True, rationale="stands")

    with pytest.raises(ApplicationError, match=f"correct item {appeal.appeal_of_id}, the one appealed"):
        decision_correct(item=appeal, actor=qa_lead, is_violation=False, policy=None, action=None, rationale="no")

    assert Decision.objects.filter(item=appeal).count() == 1


def test_a_rule_cannot_close_an_appeal(hate: Policy, remove: EnforcementAction, reviewer: User):
    original = ReviewItem.objects.create(source="s", external_id="o", received_at=timezone.now(), state="decided")
    received = ReviewItem.objects.create(
        source="s", external_id="a", received_at=timezone.now(), kind=ItemKind.APPEAL, appeal_of=original
    )

    with pytest.raises(ApplicationError, match="A rule cannot close an appeal"):
        items_auto_action(item_ids=[received.pk], actor="rules:x", policy=hate, action=remove, reason="rule")

    received.refresh_from_db()
    assert received.state == ItemState.RECEIVED


def test_a_bulk_decision_never_closes_an_appeal(appeal: ReviewItem, qa_lead: User):
    with pytest.raises(ApplicationError, match="None of the selected items is still waiting"):
        bulk_decide(queue=appeal.queue, item_ids=[appeal.pk], actor=qa_lead, is_violation=False, rationale="wave")

    appeal.refresh_from_db()
    assert appeal.state == ItemState.QUEUED


# --- 3. an escalated item can always be worked ------------------------------------------------------------


@pytest.fixture
def quinns_appeal(hate_queue: Queue, hate: Policy, qa_lead: User) -> ReviewItem:
    """An appeal of a decision quinn, a senior reviewer, made."""
    original = item_queued(hate_queue)
    decision_record(item=claimed(hate_queue, qa_lead), actor=qa_lead, is_violation=True, policy=hate)
    return item_queued(hate_queue, kind=ItemKind.APPEAL, appeal_of=original)


def test_an_appeal_cannot_be_escalated_to_its_original_decider(quinns_appeal: ReviewItem, bob: User, qa_lead: User):
    held = claimed(quinns_appeal.queue, bob)

    with pytest.raises(ApplicationError) as refused:
        item_escalate(item=held, actor=bob, reason="over my head", to_user=qa_lead)

    assert (refused.value.status_code, refused.value.field) == (400, "to_user")
    assert "quinn decided the item under appeal" in refused.value.message
    assert still_held(quinns_appeal, bob)
    quinns_appeal.refresh_from_db()
    assert quinns_appeal.reserved_for is None


def test_escalation_to_a_senior_without_the_queues_skill_or_vendor_access_is_refused(
    hate_queue: Queue, reviewer: User, qa_lead: User, vendor_a: Any
):
    vendor_senior = user_create(
        actor="test",
        username="vince",
        password=PASSWORD,
        roles=[Role.SENIOR_REVIEWER],
        team=Team.objects.create(slug="a-team", name="A", vendor=vendor_a),
    )
    hate_queue.required_skills.add(Skill.objects.create(slug="hate", name="Hate speech"))
    reviewer.reviewer_profile.skills.add(*hate_queue.required_skills.all())
    item_queued(hate_queue)
    held = claimed(hate_queue, reviewer)

    for senior in (qa_lead, vendor_senior):
        with pytest.raises(ApplicationError, match=f"{senior.username} is not a senior reviewer of"):
            item_escalate(item=held, actor=reviewer, reason="help", to_user=senior)
    assert still_held(held, reviewer)


def test_the_escalate_form_refuses_the_original_decider_with_a_4xx(quinns_appeal: ReviewItem, bob: User, qa_lead: User):
    held = claimed(quinns_appeal.queue, bob)
    http = signed_in(bob)

    page = http.get(reverse("review-item", args=[held.pk])).content.decode()
    response = http.post(reverse("review-escalate", args=[held.pk]), {"reason": "help", "to_user": qa_lead.pk})

    assert f'<option value="{qa_lead.pk}">' not in page, "the original decider is offered as an escalation target"
    assert response.status_code == 400
    assert "decided the item under appeal" in response.content.decode()
    assert still_held(quinns_appeal, bob)


def test_escalation_to_a_colleague_at_the_queues_exposure_cap_is_refused(
    hate_queue: Queue, reviewer: User, qa_lead: User, ops_manager: User
):
    """Reserved for someone the cap keeps from claiming it, the item would wait for nobody until the
    reservation ran out: the service refuses, and the form answers 400 naming the field."""
    gore = exposure_category_save(actor=ops_manager, slug="gore", name="Gore", daily_cap=1)
    queue_exposure_set(actor=ops_manager, queue=hate_queue, category=gore)
    item_queued(hate_queue)
    decision_record(item=claimed(hate_queue, qa_lead), actor=qa_lead, is_violation=False)  # quinn's one for today
    item = item_queued(hate_queue)
    held = claimed(hate_queue, reviewer)

    with pytest.raises(ApplicationError, match="quinn has reached today's cap of Gore items") as refused:
        item_escalate(item=held, actor=reviewer, reason="threat?", to_user=qa_lead)
    assert refused.value.field == "to_user"
    response = signed_in(reviewer).post(
        reverse("review-escalate", args=[held.pk]), {"reason": "threat?", "to_user": qa_lead.pk}
    )
    assert response.status_code == 400
    assert "reached today&#x27;s cap of Gore items" in response.content.decode()
    assert still_held(item, reviewer)

    exposure_category_save(actor=ops_manager, slug="gore", name="Gore", daily_cap=2, reason="a lighter week")
    item_escalate(item=held, actor=reviewer, reason="threat?", to_user=qa_lead)
    item.refresh_from_db()
    assert item.reserved_for == qa_lead


def test_a_reservation_ends_and_the_lease_sweep_gives_the_item_back_to_everyone(
    hate_queue: Queue, reviewer: User, bob: User, qa_lead: User
):
    item = item_queued(hate_queue, priority=5)
    t0 = timezone.now()
    item_escalate(item=claimed(hate_queue, reviewer), actor=reviewer, reason="possible threat", to_user=qa_lead, at=t0)
    item.refresh_from_db()
    assert (item.reserved_for, item.reserved_until) == (qa_lead, t0 + settings.ESCALATION_RESERVATION)
    assert item_claim_next(queue=hate_queue, actor=bob) is None

    assert services.reservations_expire(now=t0 + settings.ESCALATION_RESERVATION - timedelta(seconds=1)) == 0
    ReviewItem.objects.filter(pk=item.pk).update(reserved_until=timezone.now() - timedelta(seconds=1))
    assert tasks.leases_expire_task() == 1  # the every-minute sweep celery beat runs

    item.refresh_from_db()
    assert (item.state, item.reserved_for, item.reserved_until) == (ItemState.QUEUED, None, None)
    assert item.events.filter(event="reservation_expired").get().data == {"reserved_for": qa_lead.pk}
    assert claimed(hate_queue, bob).pk == item.pk


def test_a_reserved_item_whose_reservation_ended_is_not_kept_when_its_lease_runs_out(
    hate_queue: Queue, reviewer: User, bob: User, qa_lead: User
):
    item = item_queued(hate_queue)
    t0 = timezone.now()
    item_escalate(item=claimed(hate_queue, reviewer), actor=reviewer, reason="threat?", to_user=qa_lead, at=t0)
    claimed(hate_queue, qa_lead)  # and then they close the laptop

    assert leases_expire(now=t0 + settings.ESCALATION_RESERVATION + timedelta(minutes=1)) == 1

    item.refresh_from_db()
    assert (item.state, item.reserved_for) == (ItemState.QUEUED, None)
    assert claimed(hate_queue, bob).pk == item.pk


def test_a_decided_item_keeps_no_reservation_end_whichever_way_it_was_decided(
    hate_queue: Queue, reviewer: User, qa_lead: User
):
    """A reservation is reserved_for *and* reserved_until: deciding an item clears both, so no stale end
    time is left behind for a page or a sweep to read without its owner."""
    one_by_one, in_bulk = item_queued(hate_queue), item_queued(hate_queue)
    for item in (one_by_one, in_bulk):
        item_escalate(item=claimed(hate_queue, reviewer), actor=reviewer, reason="threat?", to_user=qa_lead)
        item.refresh_from_db()
        assert item.reserved_until is not None

    decision_record(item=claimed(hate_queue, qa_lead), actor=qa_lead, is_violation=False)
    bulk_decide(queue=hate_queue, item_ids=[in_bulk.pk], actor=qa_lead, is_violation=False, rationale="wave")

    for item in (one_by_one, in_bulk):
        item.refresh_from_db()
        assert (item.state, item.reserved_for, item.reserved_until) == (ItemState.DECIDED, None, None)


def test_leads_see_who_holds_a_reservation_until_when_and_can_release_it_audited(
    hate_queue: Queue, reviewer: User, bob: User, qa_lead: User, sam: User, ops_manager: User
):
    item = item_queued(hate_queue)
    item_escalate(item=claimed(hate_queue, reviewer), actor=reviewer, reason="threat?", to_user=qa_lead)
    item.refresh_from_db()
    assert item.reserved_until is not None
    until = timezone.localtime(item.reserved_until).strftime("%Y-%m-%d %H:%M")

    for lead, url in ((sam, reverse("review-queues")), (ops_manager, reverse("review-wellness"))):
        page = signed_in(lead).get(url).content.decode()
        assert 'data-testid="reserved"' in page, lead.username
        assert "quinn" in page, lead.username
        assert until in page, lead.username
    assert 'data-testid="reserved"' not in signed_in(bob).get(reverse("review-queues")).content.decode()
    release = reverse("review-reservation-release", args=[item.pk])
    assert signed_in(bob).post(release, {"reason": "quinn is away"}).status_code == 403
    assert signed_in(sam).post(release, {"reason": ""}).status_code == 400

    response = signed_in(sam).post(release, {"reason": "quinn is away this week"})

    assert response.status_code == 302
    item.refresh_from_db()
    assert (item.state, item.reserved_for, item.reserved_until) == (ItemState.QUEUED, None, None)
    entry = AuditLog.objects.get(action="item.reservation_release")
    assert (entry.actor, entry.target_id, entry.reason) == (sam, str(item.pk), "quinn is away this week")
    assert entry.before == {"reserved_for": "quinn", "reserved_until": entry.before["reserved_until"]}
    assert entry.before["reserved_until"] is not None
    assert entry.after == {"reserved_for": None, "reserved_until": None}
    assert item.events.filter(event="reservation_released", actor=sam).exists()
    assert claimed(hate_queue, bob).pk == item.pk


# --- 4. a lease is a lease --------------------------------------------------------------------------------


def test_after_the_lease_runs_out_deciding_skipping_and_escalating_are_refused(
    hate_queue: Queue, hate: Policy, reviewer: User, qa_lead: User
):
    item = item_queued(hate_queue)
    t0 = timezone.now() - timedelta(minutes=20)
    held = claimed(hate_queue, reviewer, at=t0, lease=timedelta(minutes=15))

    attempts = {
        "decide": lambda: decision_record(item=held, actor=reviewer, is_violation=True, policy=hate),
        "skip": lambda: item_release(item=held, actor=reviewer, reason="not my language"),
        "escalate": lambda: item_escalate(item=held, actor=reviewer, reason="help", to_user=qa_lead),
    }
    for act, attempt in attempts.items():
        with pytest.raises(ApplicationError) as refused:
            attempt()
        assert (refused.value.status_code, refused.value.code) == (409, "lease_expired"), act
        assert "your lease on it expired" in refused.value.message

    assert not Decision.objects.filter(item=item).exists()
    assert not item.events.exclude(event="claimed").exists()
    assert leases_expire() == 1


def test_after_the_lease_runs_out_an_appeal_cannot_be_decided(appeal: ReviewItem, bob: User):
    held = claimed(appeal.queue, bob, at=timezone.now() - timedelta(minutes=16), lease=timedelta(minutes=15))

    with pytest.raises(ApplicationError, match="your lease on it expired"):
        appeal_decide(item=held, actor=bob, uphold=False, rationale="satire")

    assert not Decision.objects.filter(item=appeal).exists()


def test_the_decide_form_answers_409_once_the_lease_ran_out(hate_queue: Queue, reviewer: User):
    item = item_queued(hate_queue)
    held = claimed(hate_queue, reviewer, at=timezone.now() - timedelta(minutes=20))
    http = signed_in(reviewer)

    response = http.post(reverse("review-decide", args=[held.pk]), {"quick": "none"})

    assert response.status_code == 409
    assert "your lease on it expired" in response.content.decode()
    assert not Decision.objects.filter(item=item).exists()
    assert http.post(reverse("review-lease", args=[held.pk])).status_code == 409  # as renewing always said


def _claim_at_once(queue: Queue, actor: User, tabs: int) -> list[int | None]:
    start = threading.Barrier(tabs)

    def tab(_: int) -> int | None:
        try:
            start.wait(timeout=30)
            item = item_claim_next(queue=queue, actor=actor)
            return item.pk if item else None
        finally:
            connection.close()

    with ThreadPoolExecutor(tabs) as pool:
        return list(pool.map(tab, range(tabs)))


@pytest.mark.django_db(transaction=True)
def test_ten_claims_at_once_by_one_reviewer_leave_them_holding_one_item() -> None:
    """Real threads, each with its own connection, on PostgreSQL and SQLite alike (as DATABASE_URL says)."""
    team = Team.objects.create(slug="in-house", name="In-house")
    alice = user_create(actor="test", username="alice", password=PASSWORD, roles=[Role.REVIEWER], team=team)
    queue = Queue.objects.create(slug="busy", name="Busy")
    for n in range(20):
        item_queued(queue, priority=n)

    for _ in range(3):  # rounds: the race is a matter of timing
        got = _claim_at_once(queue, alice, tabs=10)
        held = list(ReviewItem.objects.filter(queue=queue, state=ItemState.CLAIMED, assignee=alice))
        assert len(held) == 1, f"alice holds {len(held)} items of one queue"
        assert set(got) == {held[0].pk}, "every tab shows the one item she holds"
        assert ItemEvent.objects.filter(event="claimed", item=held[0]).count() == 1
        decision_record(item=held[0], actor=alice, is_violation=False)


# --- 5. skip means someone else next ----------------------------------------------------------------------


def test_a_skipped_item_goes_to_someone_else_first_and_back_after_the_hold_off(
    hate_queue: Queue, reviewer: User, bob: User
):
    first = item_queued(hate_queue, priority=9)
    second = item_queued(hate_queue, priority=1)
    t0 = timezone.now()
    assert claimed(hate_queue, reviewer, at=t0).pk == first.pk

    item_release(item=first, actor=reviewer, reason="not my language", at=t0)

    assert claimed(hate_queue, reviewer, at=t0).pk == second.pk, "the skipped item came straight back"
    assert claimed(hate_queue, bob, at=t0).pk == first.pk
    item_release(item=first, actor=bob, reason="unsure", at=t0)
    decision_record(item=second, actor=reviewer, is_violation=False, at=t0)
    assert item_claim_next(queue=hate_queue, actor=reviewer, at=t0 + timedelta(minutes=1)) is None
    later = t0 + settings.SKIP_HOLDOFF + timedelta(seconds=1)
    assert claimed(hate_queue, reviewer, at=later).pk == first.pk  # nobody else took it: it waits no longer
    assert services.skips_purge(now=later) == 2


def test_skip_then_start_reviewing_opens_another_item(hate_queue: Queue, reviewer: User):
    first = item_queued(hate_queue, priority=9)
    second = item_queued(hate_queue, priority=1)
    http = signed_in(reviewer)
    opened = http.post(reverse("review-next", args=[hate_queue.slug]))
    assert opened["Location"] == reverse("review-item", args=[first.pk])

    assert http.post(reverse("review-release", args=[first.pk]), {"reason": "not my language"}).status_code == 302
    again = http.post(reverse("review-next", args=[hate_queue.slug]))

    assert again["Location"] == reverse("review-item", args=[second.pk])


def test_a_skip_does_not_count_toward_the_exposure_cap(hate_queue: Queue, reviewer: User, ops_manager: User):
    gore = exposure_category_save(actor=ops_manager, slug="gore", name="Gore", daily_cap=1)
    queue_exposure_set(actor=ops_manager, queue=hate_queue, category=gore)
    for _ in range(3):
        item_queued(hate_queue)
    http = signed_in(reviewer)

    for _ in range(2):  # two opened and skipped, each under the cap of one: neither counts
        opened = http.post(reverse("review-next", args=[hate_queue.slug]))
        assert opened["Location"].startswith("/review/items/"), "refused: the skip was counted"
        pk = int(opened["Location"].rstrip("/").rsplit("/", 1)[1])
        assert http.post(reverse("review-release", args=[pk]), {"reason": "too much today"}).status_code == 302
    assert exposure_today(reviewer) == {}
    decision_record(item=claimed(hate_queue, reviewer), actor=reviewer, is_violation=False)

    assert exposure_today(reviewer) == {gore.pk: 1}
    assert "1 / 1 Gore" in http.get(reverse("review-queues")).content.decode()
