"""Golden items: copies enter through triage like any intake, reach the reviewer byte-identical to a real item with
the same content (page and lease API, ids and times aside), are scored against the known answer once decided, count
in no author's history and never reach a client, though they carry a client's source."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import EnforcementAction, User, WebhookEvent
from qa.models import GoldenInjection, GoldenItem, QaSample, SampleState
from qa.services import (
    golden_copy,
    golden_create,
    golden_from_sample,
    golden_inject,
    golden_rate_set,
    golden_results_score,
)
from queues.models import Decision, ItemEvent, ItemState, Queue, ReviewItem
from queues.selectors import author_history
from queues.services import decision_record, item_claim_next, items_auto_action
from routing.intake.services import items_triage
from routing.models import ModelVersion, RoutingDecision, RuleAction, RuleSetKind
from routing.rules.features import author_history as features_author_history
from routing.rules.lifecycle import RuleData
from tests.conftest import PASSWORD, Api, item
from tests.qa.factories import policy_with_action, policy_with_actions, sample_of
from tests.queues.factories import bulk_decide
from tests.routing.rules_setup import policy_staff_member, ruleset_live

pytestmark = pytest.mark.django_db

TEXT = "Limited offer!!! Send your bank login to claim the prize at bit.ly/x"


@pytest.fixture
def spam(intake_queue: Queue):
    policy, remove = policy_with_actions("spam")
    intake_queue.policies.add(policy)
    return policy, remove


def test_golden_copies_follow_the_queues_rate_and_enter_through_triage(
    intake_queue: Queue, qa_lead: User, spam, local_model: ModelVersion, django_capture_on_commit_callbacks: Any
):
    policy, remove = spam
    golden_create(
        actor=qa_lead,
        queue=intake_queue,
        text=TEXT,
        expected_is_violation=True,
        expected_policy=policy,
        expected_action=remove,
        rationale="Credential phishing is spam/scam: remove.",
    )
    setting = golden_rate_set(actor=qa_lead, queue=intake_queue, rate=0.1)
    setting.last_injected_at = timezone.now() - timedelta(minutes=5)
    setting.save()
    for n in range(30):  # 30 items entered the queue since the last run: 3 golden copies are due
        real = ReviewItem.objects.create(
            source="app",
            external_id=f"r{n}",
            text="hello",
            received_at=timezone.now(),
            state=ItemState.QUEUED,
            queue=intake_queue,
        )
        ItemEvent.objects.create(
            item=real, at=timezone.now() - timedelta(minutes=1), actor_label="rules", event="queued", queue=intake_queue
        )

    with django_capture_on_commit_callbacks(execute=True):
        assert golden_inject() == 3

    copies = list(ReviewItem.objects.filter(is_golden=True))
    assert len(copies) == 3
    assert {c.state for c in copies} == {ItemState.QUEUED}  # scored and routed by triage, eagerly here
    assert {c.queue for c in copies} == {intake_queue}
    assert {c.text for c in copies} == {TEXT}
    assert GoldenInjection.objects.count() == 3


# What an integrating service sends about a reported comment besides its text: all of it reaches the reviewer.
CONTEXT: dict[str, Any] = {
    "kind": "user_report",
    "report_reasons": ["spam", "scam link"],
    "author_ref": "author-7",
    "surface": "comment",
    "language": "en",
    "metadata": {"channel": "deals", "client_version": "web-4.2", "thread": "t-88"},
}


def _submitted(api: Api, name: str, **fields: Any) -> ReviewItem:
    """An item the client sent, triaged (intake hands it to triage on commit; Celery runs eagerly here)."""
    assert api.post("/api/v1/items", item(name, **fields)).status_code == 201
    submitted = ReviewItem.objects.get(source=api.client.source, external_id=f"ext-{name}")
    assert submitted.state == ItemState.QUEUED
    return submitted


def _decided_by(person: User, queue: Queue, expected: ReviewItem, policy: Any, action: Any) -> Decision:
    claimed = item_claim_next(queue=queue, actor=person)
    assert claimed is not None
    assert claimed.pk == expected.pk
    return decision_record(item=claimed, actor=person, is_violation=True, policy=policy, action=action).decision


def _injected(golden: Any) -> ReviewItem:
    copy = golden_copy(golden, now=timezone.now())
    GoldenInjection.objects.create(golden=golden, item=copy, injected_at=timezone.now())
    items_triage(item_ids=[copy.pk])
    return ReviewItem.objects.get(pk=copy.pk)


def _normalised(text: str, item_id: int) -> str:
    """Only what differs between any two items: the item's id, times and the CSRF token."""
    text = re.sub(rf"/review/items/{item_id}/", "/review/items/<id>/", text)
    text = text.replace(f"item {item_id} ·", "item <id> ·")
    text = re.sub(r"\b[A-Za-z0-9]{64}\b", "<csrf>", text)  # Django's masked CSRF token, per response
    return re.sub(r"\d{4}-\d\d-\d\d([ T]\d\d:\d\d(:\d\d(\.\d+)?)?(\+00:00)?)?", "<time>", text)


def _pages_in_turn(reviewer: User, queue: Queue, order: list[ReviewItem], policy: Any, action: Any) -> list[str]:
    """Claim, render (item page, then the lease API) and decide each item in turn, as the reviewer works."""
    http = Client()
    http.login(username=reviewer.username, password=PASSWORD)
    pages = []
    for expected in order:
        claimed = item_claim_next(queue=queue, actor=reviewer)
        assert claimed is not None
        assert claimed.pk == expected.pk
        page = http.get(reverse("review-item", args=[claimed.pk]))
        lease = http.post(reverse("review-lease", args=[claimed.pk]))
        assert (page.status_code, lease.status_code) == (200, 200)
        pages.append(_normalised(page.content.decode() + "\n" + lease.content.decode(), claimed.pk))
        decision_record(item=claimed, actor=reviewer, is_violation=True, policy=policy, action=action)
    return pages


def test_a_golden_copy_of_a_sampled_item_renders_byte_identical_to_a_real_item(
    api: Api, intake_queue: Queue, reviewer: User, qa_lead: User, spam, local_model: ModelVersion
):
    policy, remove = spam
    # A reported comment, decided by a colleague, sampled and settled: it becomes a golden item.
    origin = _submitted(api, "origin", text=TEXT, **CONTEXT)
    earlier = _decided_by(qa_lead, intake_queue, origin, policy, remove)
    sample = sample_of(earlier)
    QaSample.objects.filter(pk=sample.pk).update(state=SampleState.CLOSED)
    sample.refresh_from_db()
    golden = golden_from_sample(actor=qa_lead, sample=sample)
    # Its copy, then a real item with the same content from the same author: the reviewer gets the copy first
    # (due first), decides it, then the real one, whose author history must not show the copy's decision.
    copy = _injected(golden)
    real = _submitted(api, "real", text=TEXT, **CONTEXT)

    copy_page, real_page = _pages_in_turn(reviewer, intake_queue, [copy, real], policy, remove)

    assert copy_page == real_page
    assert (copy.source, copy.author_ref, copy.metadata, copy.kind) == (
        real.source,
        real.author_ref,
        real.metadata,
        real.kind,
    )
    assert 'data-testid="metadata"' in copy_page
    assert "client_version" in copy_page
    assert "2 reports" in copy_page
    assert "User report on <bdi>comment</bdi>" in copy_page
    # The author's earlier decision (the origin's), once on each page: the copy's own decision never shows.
    assert copy_page.count("spam → remove") == real_page.count("spam → remove") == 1
    assert "golden" not in copy_page.lower()


def test_a_written_golden_item_takes_a_real_items_context_and_renders_like_one(
    api: Api, intake_queue: Queue, reviewer: User, qa_lead: User, spam, local_model: ModelVersion
):
    policy, remove = spam
    earlier = _submitted(api, "earlier", text="buy followers cheap", **CONTEXT)
    _decided_by(qa_lead, intake_queue, earlier, policy, remove)
    golden = golden_create(
        actor=qa_lead,
        queue=intake_queue,
        text=TEXT,
        expected_is_violation=True,
        expected_policy=policy,
        expected_action=remove,
        report_reasons=["spam", "scam link"],
        surface="comment",
        language="en",
    )
    # Left blank by the lead: the source, author and metadata of a recent real item of the queue.
    assert (golden.source, golden.author_ref, golden.metadata) == (
        api.client.source,
        CONTEXT["author_ref"],
        CONTEXT["metadata"],
    )
    assert golden.kind == "user_report"
    copy = _injected(golden)
    real = _submitted(api, "real", text=TEXT, **CONTEXT)

    copy_page, real_page = _pages_in_turn(reviewer, intake_queue, [copy, real], policy, remove)

    assert copy_page == real_page
    assert 'data-testid="metadata"' in copy_page
    assert copy_page.count("spam → remove") == 1


def test_the_lead_may_name_the_context_and_only_a_real_clients_source(
    api: Api, intake_queue: Queue, qa_lead: User, spam
):
    golden = golden_create(
        actor=qa_lead,
        queue=intake_queue,
        text=TEXT,
        expected_is_violation=False,
        source=api.client.source,
        author_ref="author-99",
        metadata={"channel": "dm"},
    )
    copy = golden_copy(golden, now=timezone.now())
    assert (copy.source, copy.author_ref, copy.metadata, copy.kind) == (
        api.client.source,
        "author-99",
        {"channel": "dm"},
        "content",
    )
    with pytest.raises(ApplicationError, match="No API client has the source 'made-up'") as refused:
        golden_create(actor=qa_lead, queue=intake_queue, text=TEXT, expected_is_violation=False, source="made-up")
    assert refused.value.field == "source"
    with pytest.raises(ApplicationError, match="needs at least one reason"):
        golden_create(actor=qa_lead, queue=intake_queue, text=TEXT, expected_is_violation=False, kind="user_report")


def test_golden_copies_count_in_no_authors_history(
    api: Api, intake_queue: Queue, reviewer: User, qa_lead: User, spam, local_model: ModelVersion
):
    policy, remove = spam
    earlier = _submitted(api, "earlier", text="buy followers cheap", **CONTEXT)
    _decided_by(qa_lead, intake_queue, earlier, policy, remove)
    golden = golden_create(
        actor=qa_lead,
        queue=intake_queue,
        text=TEXT,
        expected_is_violation=True,
        expected_policy=policy,
        expected_action=remove,
        report_reasons=["spam"],
    )
    decided_copy = _injected(golden)
    _decided_by(reviewer, intake_queue, decided_copy, policy, remove)
    auto_copy = golden_copy(golden, now=timezone.now())
    with pytest.raises(ApplicationError, match="or a QA golden copy"):  # and no rule may close one
        items_auto_action(item_ids=[auto_copy.pk], actor="rules:test", policy=policy, action=remove, reason="test")
    assert decided_copy.source == auto_copy.source == api.client.source
    assert decided_copy.author_ref == auto_copy.author_ref == CONTEXT["author_ref"]
    real = _submitted(api, "real", text=TEXT, **CONTEXT)

    assert [d.item_id for d in author_history(real)] == [earlier.pk]
    # What triage and backtests count: one prior violation and one review, as before any golden copy.
    key = (api.client.source, CONTEXT["author_ref"])
    assert features_author_history([key]) == {key: (1, 1)}


def test_a_golden_item_expects_only_an_answer_its_queues_decide_form_offers(intake_queue: Queue, qa_lead: User, spam):
    """Expecting a policy the queue does not list, every reviewer would 'fail' the item: refused, by its field,
    through the service and the form, and nothing is stored."""
    policy, _ = spam
    elsewhere = policy_with_action("hate", "Hate")  # a real policy, but not one of the queue's
    warn = EnforcementAction.objects.create(slug="warn", name="Warn", strength=1)  # an action of no policy here
    cases = [
        (elsewhere, None, "expected_policy", "not one of the policies of queue 'general'"),
        (policy, warn, "expected_action", "'warn' is not an action of policy 'spam'"),
    ]
    for expected_policy, expected_action, field, message in cases:
        with pytest.raises(ApplicationError, match=message) as refused:
            golden_create(
                actor=qa_lead,
                queue=intake_queue,
                text=TEXT,
                expected_is_violation=True,
                expected_policy=expected_policy,
                expected_action=expected_action,
            )
        assert refused.value.field == field
    http = Client()
    assert http.login(username=qa_lead.username, password=PASSWORD)
    response = http.post(
        reverse("qa-golden"),
        {
            "form": "golden",
            "queue": intake_queue.pk,
            "text": TEXT,
            "expected_is_violation": "yes",
            "expected_policy": elsewhere.pk,
        },
    )

    assert response.status_code == 400
    assert 'id="id_expected_policy_error"' in response.content.decode()
    assert not GoldenItem.objects.exists()
    golden_create(actor=qa_lead, queue=intake_queue, text=TEXT, expected_is_violation=True, expected_policy=policy)


def test_a_rule_that_would_auto_action_a_golden_copy_sends_it_to_people_and_the_page_does_not_tell(
    api: Api, intake_queue: Queue, reviewer: User, qa_lead: User, policy_staff: User, spam, local_model: ModelVersion
):
    """A golden copy exists to test a person: an auto-action rule it matches sends it where the rule sends what
    it does not close, while a real item with the same text is auto-actioned; the reviewer's page names the
    rule as for any item routed to people."""
    policy, remove = spam
    approver = policy_staff_member("priya")
    rule = RuleData(
        name="phishing-auto",
        condition='text contains "bank login"',
        action=RuleAction.AUTO_ACTION,
        policy_id=policy.pk,
        enforcement_action_id=remove.pk,
        queue_id=intake_queue.pk,
        daily_cap=100,
    )
    ruleset_live(RuleSetKind.INTAKE, [rule], author=policy_staff, approver=approver, default_queue=intake_queue)
    golden = golden_create(
        actor=qa_lead,
        queue=intake_queue,
        text=TEXT,
        expected_is_violation=True,
        expected_policy=policy,
        expected_action=remove,
    )

    real = api.post("/api/v1/items", item("real", text=TEXT))
    copy = _injected(golden)

    assert real.status_code == 201
    assert ReviewItem.objects.get(external_id="ext-real").state == ItemState.AUTO_ACTIONED
    assert (copy.state, copy.queue) == (ItemState.QUEUED, intake_queue)
    routed = RoutingDecision.objects.get(item=copy)
    assert (routed.matched, routed.action, routed.destination) == ("phishing-auto", "route", "queue:general")
    claimed = item_claim_next(queue=intake_queue, actor=reviewer)
    assert claimed is not None
    assert claimed.pk == copy.pk
    http = Client()
    assert http.login(username=reviewer.username, password=PASSWORD)
    page = http.get(reverse("review-item", args=[copy.pk])).content.decode()
    assert "<code>phishing-auto</code>" in page
    assert "golden" not in page.lower()


def test_a_golden_copy_never_reaches_the_client_whose_source_it_carries(
    api: Api, intake_queue: Queue, reviewer: User, qa_lead: User, spam, local_model: ModelVersion
):
    policy, remove = spam
    api.client.callback_url = "https://client.invalid/hooks"
    api.client.save(update_fields=["callback_url"])
    real = _submitted(api, "real", text=TEXT, **CONTEXT)
    golden = golden_create(
        actor=qa_lead,
        queue=intake_queue,
        text=TEXT,
        expected_is_violation=True,
        expected_policy=policy,
        expected_action=remove,
        report_reasons=["spam"],
    )
    copy = _injected(golden)
    assert copy.source == api.client.source

    # The items read API and appeals: the copy does not exist for the client.
    missing = api.get(f"/api/v1/items/{copy.pk + 1000}")
    hidden = api.get(f"/api/v1/items/{copy.pk}")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["errors"] == missing.json()["errors"]
    assert api.get(f"/api/v1/items/{real.pk}").status_code == 200
    # Bulk decisions: the real item's client hears of it, nobody of the copy.
    result = bulk_decide(
        queue=intake_queue,
        item_ids=[copy.pk, real.pk],
        actor=qa_lead,
        is_violation=True,
        policy=policy,
        action=remove,
        rationale="spam wave",
    )
    assert sorted(result.decided) == sorted([copy.pk, real.pk])
    assert [e.payload["item_id"] for e in WebhookEvent.objects.all()] == [real.pk]
    appeal = api.post(
        "/api/v1/appeals", {"external_id": "appeal-1", "item_external_id": copy.external_id, "statement": "not spam"}
    )
    assert appeal.status_code == 404
    # A rule's auto-action on a copy is told to nobody either.
    auto_copy = golden_copy(golden, now=timezone.now())
    with pytest.raises(ApplicationError, match="or a QA golden copy"):  # and no rule may close one
        items_auto_action(item_ids=[auto_copy.pk], actor="rules:test", policy=policy, action=remove, reason="test")
    assert [e.payload["item_id"] for e in WebhookEvent.objects.all()] == [real.pk]


def test_the_golden_form_takes_the_context_and_refuses_bad_input_with_a_400(
    api: Api, intake_queue: Queue, qa_lead: User, spam
):
    policy, _ = spam
    http = Client()
    http.login(username=qa_lead.username, password=PASSWORD)
    form = {
        "form": "golden",
        "queue": intake_queue.pk,
        "text": TEXT,
        "expected_is_violation": "yes",
        "expected_policy": policy.pk,
        "report_reasons": "spam",
        "kind": "user_report",
        "source": api.client.source,
        "author_ref": "author-42",
        "metadata": '{"channel": "deals"}',
    }

    for field, bad, problem in (
        ("metadata", "[1, 2]", "JSON object"),
        ("metadata", "{oops", "JSON"),
        ("source", "made-up", "No API client has the source"),
        ("kind", "appeal", ""),
    ):
        response = http.post("/qa/golden/", {**form, field: bad})
        assert response.status_code == 400, field
        errors = re.search(rf'id="id_{field}".*?</div>', response.content.decode(), re.S)
        assert errors is not None
        assert "errorlist" in errors.group(0), field
        assert problem in errors.group(0), field
    assert not GoldenItem.objects.exists()

    assert http.post("/qa/golden/", form).status_code == 302
    golden = GoldenItem.objects.get()
    assert (golden.kind, golden.source, golden.author_ref, golden.metadata) == (
        "user_report",
        api.client.source,
        "author-42",
        {"channel": "deals"},
    )


def test_a_decided_copy_is_scored_against_the_answer_and_no_client_is_told(
    intake_queue: Queue,
    reviewer: User,
    vendor_reviewer: User,
    qa_lead: User,
    spam,
    django_capture_on_commit_callbacks: Any,
):
    policy, remove = spam
    golden = golden_create(
        actor=qa_lead,
        queue=intake_queue,
        text=TEXT,
        expected_is_violation=True,
        expected_policy=policy,
        expected_action=remove,
    )
    intake_queue.allowed_teams.add(reviewer.reviewer_profile.team)
    intake_queue.allowed_vendors.add(vendor_reviewer.reviewer_profile.team.vendor)
    for person, violation in ((reviewer, True), (vendor_reviewer, False)):
        copy = golden_copy(golden, now=timezone.now())
        GoldenInjection.objects.create(golden=golden, item=copy, injected_at=timezone.now())
        ReviewItem.objects.filter(pk=copy.pk).update(state=ItemState.QUEUED, queue=intake_queue)
        intake_queue.allowed_vendors.add(
            person.reviewer_profile.team.vendor or 0
        ) if person == vendor_reviewer else None
        if person == vendor_reviewer:
            intake_queue.allowed_teams.add(reviewer.reviewer_profile.team)
        claimed = item_claim_next(queue=intake_queue, actor=person)
        assert claimed is not None
        with django_capture_on_commit_callbacks(execute=True):
            decision_record(
                item=claimed,
                actor=person,
                is_violation=violation,
                policy=policy if violation else None,
                action=remove if violation else None,
            )

    assert golden_results_score() == 2
    results = {i.reviewer: (i.correct, i.vendor) for i in GoldenInjection.objects.all()}
    assert results == {reviewer: (True, None), vendor_reviewer: (False, vendor_reviewer.reviewer_profile.team.vendor)}
    assert golden_results_score() == 0
    assert not WebhookEvent.objects.exists()


def test_golden_items_need_an_answer_and_a_sane_rate(intake_queue: Queue, qa_lead: User, reviewer: User):
    with pytest.raises(ApplicationError, match="needs its policy"):
        golden_create(actor=qa_lead, queue=intake_queue, text="x", expected_is_violation=True)
    with pytest.raises(ApplicationError, match=r"between 0 and 0\.2"):
        golden_rate_set(actor=qa_lead, queue=intake_queue, rate=0.5)
    with pytest.raises(NotPermitted):
        golden_create(actor=reviewer, queue=intake_queue, text="x", expected_is_violation=False)
