"""Claiming work: each item goes to one reviewer at a time, in the queue's order, under a lease that expires;
independent reviews go to different people; appeals never to the original decider; escalations to a named
senior are theirs alone."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict, NotPermitted
from ops_platform.core.models import Policy, Role, Skill, Team, User, Vendor
from ops_platform.core.services import user_create
from queues.models import Decision, ItemEvent, ItemKind, ItemState, Queue, QueueOrdering, ReviewItem
from queues.services import (
    decision_record,
    item_claim_next,
    item_escalate,
    item_release,
    lease_renew,
    leases_expire,
)
from tests.conftest import PASSWORD
from tests.queues.factories import item_queued as queued

pytestmark = pytest.mark.django_db


def person(username: str, team: Team, role: Role = Role.REVIEWER) -> User:
    return user_create(actor="test", username=username, password=PASSWORD, roles=[role], team=team)


def claim(queue: Queue, actor: User) -> ReviewItem:
    item = item_claim_next(queue=queue, actor=actor)
    assert item is not None, f"{actor.username} got nothing from {queue.slug}"
    return item


def work_through(queue: Queue, actor: User) -> list[int]:
    """Claim and decide (not a violation) until the queue has nothing left for ``actor``."""
    order = []
    while (item := item_claim_next(queue=queue, actor=actor)) is not None:
        order.append(item.pk)
        assert decision_record(item=item, actor=actor, is_violation=False).closed
    return order


@pytest.fixture
def bob(in_house_team: Team) -> User:
    return person("bob", in_house_team)


@pytest.fixture
def carol(in_house_team: Team) -> User:
    return person("carol", in_house_team)


@pytest.fixture
def escalations(db: None) -> Queue:
    return Queue.objects.create(slug="escalations", name="Escalations")


@pytest.fixture
def spam(intake_queue: Queue, escalations: Queue) -> Policy:
    policy = Policy.objects.create(slug="spam", name="Spam", guidelines="No unsolicited promotion.")
    for queue in (intake_queue, escalations):  # decisions cite only a policy of the item's queue
        queue.policies.add(policy)
    return policy


# --- concurrency, on the real PostgreSQL ---------------------------------------------------------------

REVIEWERS = 50
ITEMS = 10_000


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_50_reviewers_claiming_at_once_get_each_of_10000_items_exactly_once():
    team = Team.objects.create(slug="in-house", name="In-house")
    queue = Queue.objects.create(slug="busy", name="Busy")
    reviewers = [person(f"r{n:02d}", team) for n in range(REVIEWERS)]
    now = timezone.now()
    ReviewItem.objects.bulk_create(
        ReviewItem(
            source="load",
            external_id=f"l-{n}",
            text="t",
            state=ItemState.QUEUED,
            queue=queue,
            priority=n % 7,
            received_at=now - timedelta(seconds=n),
            queued_at=now,
            due_at=now + timedelta(seconds=n % 1000),
        )
        for n in range(ITEMS)
    )
    start = threading.Barrier(REVIEWERS)

    def review(actor: User) -> list[int]:
        """Claim, then close the item with a direct update so the next claim moves on."""
        taken = []
        try:
            start.wait(timeout=60)
            while (item := item_claim_next(queue=queue, actor=actor)) is not None:
                taken.append(item.pk)
                assert (item.state, item.assignee_id) == (ItemState.CLAIMED, actor.pk)
                closed = ReviewItem.objects.filter(pk=item.pk, state=ItemState.CLAIMED, assignee=actor).update(
                    state=ItemState.DECIDED, decided_at=timezone.now(), assignee=None, lease_expires_at=None
                )
                assert closed == 1, f"item {item.pk} was no longer {actor.username}'s to close"
        finally:
            connection.close()
        return taken

    with ThreadPoolExecutor(REVIEWERS) as pool:
        per_reviewer = list(pool.map(review, reviewers))

    given = Counter(pk for taken in per_reviewer for pk in taken)
    assert [pk for pk, times in given.items() if times > 1] == [], "an item was given to two reviewers"
    assert set(given) == set(ReviewItem.objects.filter(queue=queue).values_list("pk", flat=True))
    assert sum(given.values()) == ITEMS
    assert not ReviewItem.objects.filter(queue=queue).exclude(state=ItemState.DECIDED).exists()
    assert ItemEvent.objects.filter(event="claimed").count() == ITEMS
    assert sum(1 for taken in per_reviewer if taken) >= REVIEWERS // 2, "the reviewers did not claim side by side"


# --- order and permission ----------------------------------------------------------------------------


def test_highest_priority_first_then_earliest_due_then_first_created(intake_queue, reviewer):
    late_low = queued(intake_queue, priority=0, due_in=timedelta(hours=1))
    late_high = queued(intake_queue, priority=10, due_in=timedelta(hours=3))
    soon_high = queued(intake_queue, priority=10, due_in=timedelta(hours=2))
    soon_low = queued(intake_queue, priority=0, due_in=timedelta(minutes=30))
    soon_high_again = queued(intake_queue, priority=10, due_in=timedelta(hours=2))
    soon_high_again.due_at = soon_high.due_at
    soon_high_again.save(update_fields=["due_at"])

    order = work_through(intake_queue, reviewer)

    assert order == [soon_high.pk, soon_high_again.pk, late_high.pk, soon_low.pk, late_low.pk]


def test_a_due_first_queue_ignores_priority(intake_queue, reviewer):
    intake_queue.ordering = QueueOrdering.DUE_FIRST
    intake_queue.save()
    later = queued(intake_queue, priority=90, due_in=timedelta(hours=2))
    sooner = queued(intake_queue, priority=0, due_in=timedelta(hours=1))

    assert work_through(intake_queue, reviewer) == [sooner.pk, later.pk]


def test_an_oldest_first_queue_goes_by_receipt(intake_queue, reviewer):
    intake_queue.ordering = QueueOrdering.OLDEST_FIRST
    intake_queue.save()
    newer = queued(intake_queue, priority=90, due_in=timedelta(minutes=1), received_ago=timedelta(minutes=1))
    older = queued(intake_queue, priority=0, due_in=timedelta(hours=9), received_ago=timedelta(hours=2))

    assert work_through(intake_queue, reviewer) == [older.pk, newer.pk]


def test_items_in_other_states_or_queues_are_not_claimed(intake_queue, escalations, reviewer, bob):
    queued(escalations)
    queued(intake_queue, state=ItemState.RECEIVED)
    queued(intake_queue, state=ItemState.DECIDED)
    queued(intake_queue, state=ItemState.CLAIMED, assignee=bob)

    assert item_claim_next(queue=intake_queue, actor=reviewer) is None


def test_a_reviewer_holding_an_item_gets_it_back_with_a_fresh_lease(intake_queue, reviewer):
    first = queued(intake_queue, priority=5)
    queued(intake_queue)
    t0 = timezone.now()

    claimed = item_claim_next(queue=intake_queue, actor=reviewer, at=t0)
    again = item_claim_next(queue=intake_queue, actor=reviewer, at=t0 + timedelta(minutes=10))

    assert claimed is not None
    assert again is not None
    assert claimed.pk == again.pk == first.pk
    assert again.lease_expires_at == t0 + timedelta(minutes=25)
    assert ItemEvent.objects.filter(event="claimed").count() == 1


def test_a_claim_stores_its_times_and_records_who_claimed_it(intake_queue, reviewer):
    item = queued(intake_queue, tags=["reported"], metadata={"lang": "en"})
    t0 = timezone.now() - timedelta(seconds=30)

    claimed = item_claim_next(queue=intake_queue, actor=reviewer, at=t0, lease=timedelta(minutes=5))

    assert claimed is not None
    assert claimed.pk == item.pk
    for got in (claimed, ReviewItem.objects.get(pk=item.pk)):
        assert (got.state, got.assignee_id, got.queue_id) == (ItemState.CLAIMED, reviewer.pk, intake_queue.pk)
        assert (got.claimed_at, got.lease_expires_at) == (t0, t0 + timedelta(minutes=5))
        assert (got.tags, got.metadata) == (["reported"], {"lang": "en"})
    event = ItemEvent.objects.get(item=item)
    assert (event.event, event.at, event.actor, event.actor_label) == ("claimed", t0, reviewer, "user:alice")
    assert (event.from_state, event.to_state, event.queue, event.data) == ("queued", "claimed", intake_queue, {})


def test_a_held_item_comes_back_only_in_its_own_queue(intake_queue, escalations, reviewer):
    mine = queued(intake_queue)
    other = queued(escalations)
    t0 = timezone.now()
    claim(intake_queue, reviewer)

    # Held past its lease but not yet swept: still theirs, with a fresh lease.
    again = item_claim_next(queue=intake_queue, actor=reviewer, at=t0 + timedelta(minutes=20))
    elsewhere = claim(escalations, reviewer)

    assert again is not None
    assert (again.pk, again.lease_expires_at) == (mine.pk, t0 + timedelta(minutes=35))
    assert ReviewItem.objects.get(pk=mine.pk).lease_expires_at == t0 + timedelta(minutes=35)
    assert elsewhere.pk == other.pk
    assert ItemEvent.objects.filter(event="claimed").count() == 2


def test_allow_lists_and_required_skills_decide_who_may_claim(intake_queue, reviewer, vendor_reviewer, vendor_a):
    vendor_b_team = Team.objects.create(
        slug="vendor-b-team", name="B team", vendor=Vendor.objects.create(slug="vendor-b", name="Vendor B")
    )
    outsourced = person("val", vendor_b_team)
    no_team = user_create(actor="test", username="nora", password=PASSWORD, roles=[Role.REVIEWER])
    queued(intake_queue)

    def allowed() -> set[str]:
        return {u.username for u in (reviewer, vendor_reviewer, outsourced, no_team) if _may_claim(intake_queue, u)}

    assert allowed() == {"alice"}, "no allow-lists: in-house teams only"
    intake_queue.allowed_vendors.add(vendor_a)
    assert allowed() == {"vic"}, "an allow-list admits only who is on it"
    intake_queue.allowed_teams.add(reviewer.reviewer_profile.team, vendor_b_team)
    assert allowed() == {"alice", "vic", "val"}
    graphic = Skill.objects.create(slug="graphic", name="Graphic violence")
    arabic = Skill.objects.create(slug="ar", name="Arabic")
    intake_queue.required_skills.add(graphic, arabic)
    vendor_reviewer.reviewer_profile.skills.add(graphic, arabic)
    reviewer.reviewer_profile.skills.add(graphic)
    assert allowed() == {"vic"}, "every required skill, not some"


def _may_claim(queue: Queue, actor: User) -> bool:
    try:
        item_claim_next(queue=queue, actor=actor)
    except NotPermitted:
        return False
    ReviewItem.objects.filter(assignee=actor).update(state=ItemState.QUEUED, assignee=None)
    return True


def test_a_vendor_reviewer_may_not_claim_from_an_in_house_queue(intake_queue, vendor_reviewer, vendor_a):
    item = queued(intake_queue)

    with pytest.raises(NotPermitted, match="may not review items in 'General'"):
        item_claim_next(queue=intake_queue, actor=vendor_reviewer)

    assert ReviewItem.objects.get(pk=item.pk).state == ItemState.QUEUED
    intake_queue.allowed_vendors.add(vendor_a)
    claimed = claim(intake_queue, vendor_reviewer)
    assert claimed.pk == item.pk


def test_people_without_the_review_permission_or_on_an_inactive_queue_are_refused(
    intake_queue, reviewer, policy_staff, in_house_team
):
    queued(intake_queue)
    teamed_policy_staff = user_create(
        actor="test", username="paula", password=PASSWORD, roles=[Role.POLICY_STAFF], team=in_house_team
    )
    for actor in (policy_staff, teamed_policy_staff):
        with pytest.raises(NotPermitted):
            item_claim_next(queue=intake_queue, actor=actor)
    intake_queue.is_active = False
    intake_queue.save()
    with pytest.raises(NotPermitted):
        item_claim_next(queue=intake_queue, actor=reviewer)


# --- leases ------------------------------------------------------------------------------------------


def test_expired_lease_returns_item_to_queue_and_someone_else_can_claim_it(intake_queue, reviewer, bob):
    item = queued(intake_queue)
    t0 = timezone.now()
    item_claim_next(queue=intake_queue, actor=reviewer, at=t0, lease=timedelta(minutes=15))

    assert leases_expire(now=t0 + timedelta(minutes=14)) == 0
    assert item_claim_next(queue=intake_queue, actor=bob) is None
    assert leases_expire(now=t0 + timedelta(minutes=16)) == 1

    item.refresh_from_db()
    assert (item.state, item.assignee, item.lease_expires_at, item.claimed_at) == (ItemState.QUEUED, None, None, None)
    expired = item.events.get(event="lease_expired")
    assert (expired.from_state, expired.to_state, expired.data) == ("claimed", "queued", {"assignee": reviewer.pk})
    taken = claim(intake_queue, bob)
    assert (taken.pk, taken.assignee) == (item.pk, bob)
    with pytest.raises(Conflict, match="no longer yours"):
        lease_renew(item=item, actor=reviewer)


def test_a_renewed_lease_is_not_expired(intake_queue, reviewer):
    item = queued(intake_queue)
    t0 = timezone.now()
    item_claim_next(queue=intake_queue, actor=reviewer, at=t0 - timedelta(minutes=10), lease=timedelta(minutes=15))

    expires = lease_renew(item=item, actor=reviewer, lease=timedelta(minutes=15))

    assert expires >= t0 + timedelta(minutes=15)
    assert leases_expire(now=t0 + timedelta(minutes=10)) == 0
    item.refresh_from_db()
    assert (item.state, item.assignee, item.lease_expires_at) == (ItemState.CLAIMED, reviewer, expires)
    assert leases_expire(now=expires + timedelta(seconds=1)) == 1


def test_a_lease_that_ran_out_is_not_renewed_even_before_the_sweep(intake_queue, reviewer):
    item = queued(intake_queue)
    item_claim_next(queue=intake_queue, actor=reviewer, at=timezone.now() - timedelta(minutes=20))

    with pytest.raises(Conflict, match="no longer yours"):
        lease_renew(item=item, actor=reviewer)


def test_only_the_holder_renews_and_a_released_item_cannot_be_renewed(intake_queue, reviewer, bob):
    item = queued(intake_queue)
    item_claim_next(queue=intake_queue, actor=reviewer)
    with pytest.raises(Conflict):
        lease_renew(item=item, actor=bob)

    item_release(item=item, actor=reviewer, reason="not my language")

    with pytest.raises(Conflict):
        lease_renew(item=item, actor=reviewer)
    taken = claim(intake_queue, bob)
    assert taken.pk == item.pk


# --- independent reviews -------------------------------------------------------------------------------


def test_two_required_reviews_need_two_different_reviewers_and_agreement_closes(intake_queue, reviewer, bob, spam):
    item = queued(intake_queue, required_reviews=2)

    claimed = claim(intake_queue, reviewer)
    assert claimed.pk == item.pk
    first = decision_record(item=claimed, actor=reviewer, is_violation=True, policy=spam)
    assert (first.closed, first.adjudication, first.decision.is_final) == (False, False, False)
    item.refresh_from_db()
    assert (item.state, item.assignee) == (ItemState.QUEUED, None)

    assert item_claim_next(queue=intake_queue, actor=reviewer) is None, "the same reviewer reviewed it again"
    second_claim = claim(intake_queue, bob)
    assert second_claim.pk == item.pk
    second = decision_record(item=second_claim, actor=bob, is_violation=True, policy=spam)

    assert (second.closed, second.adjudication, second.decision.is_final) == (True, False, True)
    item.refresh_from_db()
    assert item.state == ItemState.DECIDED
    assert sorted(Decision.objects.filter(item=item).values_list("reviewer__username", flat=True)) == ["alice", "bob"]


def test_disagreement_goes_to_adjudication_in_the_escalation_target(
    intake_queue, escalations, reviewer, bob, carol, spam
):
    intake_queue.escalation_target = escalations
    intake_queue.save()
    item = queued(intake_queue, required_reviews=2, priority=3)
    for actor, violation in ((reviewer, True), (bob, False)):
        claimed = claim(intake_queue, actor)
        assert claimed.pk == item.pk
        result = decision_record(item=claimed, actor=actor, is_violation=violation, policy=spam if violation else None)

    assert (result.closed, result.adjudication, result.decision.is_final) == (False, True, False)
    item.refresh_from_db()
    assert (item.state, item.queue, item.assignee) == (ItemState.QUEUED, escalations, None)
    assert "adjudication" in item.tags
    assert item.priority >= 50
    assert item.events.filter(event="to_adjudication").count() == 1
    for earlier in (reviewer, bob):
        assert item_claim_next(queue=escalations, actor=earlier) is None

    adjudicating = claim(escalations, carol)
    assert adjudicating.pk == item.pk
    final = decision_record(item=adjudicating, actor=carol, is_violation=True, policy=spam)

    assert (final.closed, final.adjudication, final.decision.is_final) == (True, False, True)
    item.refresh_from_db()
    assert item.state == ItemState.DECIDED
    assert Decision.objects.filter(item=item, is_final=True).get().reviewer == carol


# --- appeals -------------------------------------------------------------------------------------------


def test_an_appeal_never_goes_to_the_reviewer_who_made_the_decision(intake_queue, reviewer, bob):
    original = queued(intake_queue)
    assert work_through(intake_queue, reviewer) == [original.pk]
    appeal = queued(intake_queue, priority=20, kind=ItemKind.APPEAL, appeal_of=original)

    assert item_claim_next(queue=intake_queue, actor=reviewer) is None
    other = queued(intake_queue, priority=0)
    mine = claim(intake_queue, reviewer)
    assert mine.pk == other.pk

    theirs = claim(intake_queue, bob)
    assert theirs.pk == appeal.pk


# --- escalation to a named senior ----------------------------------------------------------------------


def test_an_item_escalated_to_a_named_senior_is_theirs_alone(intake_queue, reviewer, bob, qa_lead):
    item = queued(intake_queue, priority=5)
    routine = queued(intake_queue, priority=0)
    claimed = claim(intake_queue, reviewer)
    assert claimed.pk == item.pk

    target = item_escalate(item=claimed, actor=reviewer, reason="possible threat", to_user=qa_lead)

    assert target == intake_queue
    item.refresh_from_db()
    assert (item.state, item.assignee, item.reserved_for, item.priority) == (ItemState.QUEUED, None, qa_lead, 50)
    passed_over = claim(intake_queue, bob)
    assert passed_over.pk == routine.pk, "the escalated item ranks first, but not for bob"
    assert item_claim_next(queue=intake_queue, actor=reviewer) is None
    senior = claim(intake_queue, qa_lead)
    assert senior.pk == item.pk

    # Their lease running out does not free the item for anyone else.
    assert leases_expire(now=timezone.now() + timedelta(hours=1)) == 2
    item.refresh_from_db()
    assert (item.state, item.reserved_for) == (ItemState.QUEUED, qa_lead)
    after_expiry = claim(intake_queue, reviewer)
    assert after_expiry.pk == routine.pk
    again = claim(intake_queue, qa_lead)
    assert again.pk == item.pk


def test_escalating_to_a_senior_moves_the_item_to_the_escalation_target(
    intake_queue, escalations, reviewer, bob, qa_lead
):
    intake_queue.escalation_target = escalations
    intake_queue.save()
    item = queued(intake_queue)
    claimed = item_claim_next(queue=intake_queue, actor=reviewer)
    assert claimed is not None

    assert item_escalate(item=claimed, actor=reviewer, reason="needs a second look", to_user=qa_lead) == escalations

    assert item_claim_next(queue=escalations, actor=bob) is None
    senior = claim(escalations, qa_lead)
    assert senior.pk == item.pk


def test_escalation_only_to_a_senior_who_may_work_the_queue(intake_queue, reviewer, bob):
    item = queued(intake_queue)
    claimed = item_claim_next(queue=intake_queue, actor=reviewer)
    assert claimed is not None

    with pytest.raises(ApplicationError, match="not a senior reviewer"):
        item_escalate(item=claimed, actor=reviewer, reason="help", to_user=bob)
    with pytest.raises(ApplicationError, match="no escalation queue"):
        item_escalate(item=claimed, actor=reviewer, reason="help")

    item.refresh_from_db()
    assert (item.state, item.assignee, item.reserved_for) == (ItemState.CLAIMED, reviewer, None)
