"""Golden items: copies enter through triage like any intake, reach the reviewer looking like any item (page and
lease API), are scored against the known answer once decided, and never reach a client."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import User, WebhookEvent
from qa.golden import GOLDEN_SOURCE, golden_copy, golden_create, golden_inject, golden_rate_set, golden_results_score
from qa.models import GoldenInjection
from queues.models import ItemEvent, ItemState, Queue, ReviewItem
from queues.services import decision_record, item_claim_next
from routing.models import ModelVersion
from routing.services import items_triage
from tests.conftest import PASSWORD, Api, item
from tests.qa.factories import policy_with_actions

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
    golden_create(actor=qa_lead, queue=intake_queue, text=TEXT, expected_is_violation=True, expected_policy=policy,
                  expected_action=remove, rationale="Credential phishing is spam/scam: remove.")  # fmt: skip
    setting = golden_rate_set(actor=qa_lead, queue=intake_queue, rate=0.1)
    setting.last_injected_at = timezone.now() - timedelta(minutes=5)
    setting.save()
    for n in range(30):  # 30 items entered the queue since the last run: 3 golden copies are due
        real = ReviewItem.objects.create(source="app", external_id=f"r{n}", text="hello", received_at=timezone.now(),
                                         state=ItemState.QUEUED, queue=intake_queue)  # fmt: skip
        ItemEvent.objects.create(item=real, at=timezone.now() - timedelta(minutes=1), actor_label="rules",
                                 event="queued", queue=intake_queue)  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        assert golden_inject() == 3

    copies = list(ReviewItem.objects.filter(is_golden=True))
    assert len(copies) == 3
    assert {c.state for c in copies} == {ItemState.QUEUED}  # scored and routed by triage, eagerly here
    assert {c.queue for c in copies} == {intake_queue}
    assert {c.text for c in copies} == {TEXT}
    assert GoldenInjection.objects.count() == 3


def test_a_golden_copy_looks_like_any_item_to_the_reviewer(
    api: Api, intake_queue: Queue, reviewer: User, qa_lead: User, spam, local_model: ModelVersion,
    django_capture_on_commit_callbacks: Any,
):  # fmt: skip
    policy, remove = spam
    golden = golden_create(actor=qa_lead, queue=intake_queue, text=TEXT, expected_is_violation=True,
                           expected_policy=policy, expected_action=remove)  # fmt: skip
    assert api.post("/api/v1/items", item("real-1", text=TEXT)).status_code == 201
    real = ReviewItem.objects.get(external_id="ext-real-1")
    copy = golden_copy(golden, now=timezone.now())
    GoldenInjection.objects.create(golden=golden, item=copy, injected_at=timezone.now())
    items_triage(item_ids=[real.pk, copy.pk])
    http = Client()
    http.login(username=reviewer.username, password=PASSWORD)

    pages = {}
    for _ in range(2):
        claimed = item_claim_next(queue=intake_queue, actor=reviewer)
        assert claimed is not None
        page = http.get(reverse("review-item", args=[claimed.pk])).content.decode()
        lease = http.post(reverse("review-lease", args=[claimed.pk])).json()
        pages[claimed.pk] = (page, sorted(lease))
        decision_record(item=claimed, actor=reviewer, is_violation=True, policy=policy, action=remove)

    def normalised(html: str) -> str:  # ids, times and the CSRF token differ between any two items
        html = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d[.\d]*)?(\+00:00)?", "<time>", html)
        html = re.sub(r"[A-Za-z0-9]{48,}", "<csrf>", html)
        return re.sub(r"\d+", "<n>", html)

    real_page, copy_page = pages[real.pk], pages[copy.pk]
    assert real_page[1] == copy_page[1]
    assert normalised(real_page[0]) == normalised(copy_page[0])
    assert "golden" not in copy_page[0].lower()


def test_a_decided_copy_is_scored_against_the_answer_and_no_client_is_told(
    intake_queue: Queue, reviewer: User, vendor_reviewer: User, qa_lead: User, spam,
    django_capture_on_commit_callbacks: Any,
):  # fmt: skip
    policy, remove = spam
    golden = golden_create(actor=qa_lead, queue=intake_queue, text=TEXT, expected_is_violation=True,
                           expected_policy=policy, expected_action=remove)  # fmt: skip
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
            decision_record(item=claimed, actor=person, is_violation=violation, policy=policy if violation else None,
                            action=remove if violation else None)  # fmt: skip

    assert golden_results_score() == 2
    results = {i.reviewer: (i.correct, i.vendor) for i in GoldenInjection.objects.all()}
    assert results == {reviewer: (True, None), vendor_reviewer: (False, vendor_reviewer.reviewer_profile.team.vendor)}
    assert golden_results_score() == 0
    assert not WebhookEvent.objects.exists()
    assert not ReviewItem.objects.filter(is_golden=True).exclude(source=GOLDEN_SOURCE).exists()


def test_golden_items_need_an_answer_and_a_sane_rate(intake_queue: Queue, qa_lead: User, reviewer: User):
    with pytest.raises(ApplicationError, match="needs its policy"):
        golden_create(actor=qa_lead, queue=intake_queue, text="x", expected_is_violation=True)
    with pytest.raises(ApplicationError, match=r"between 0 and 0\.2"):
        golden_rate_set(actor=qa_lead, queue=intake_queue, rate=0.5)
    with pytest.raises(NotPermitted):
        golden_create(actor=reviewer, queue=intake_queue, text="x", expected_is_violation=False)
