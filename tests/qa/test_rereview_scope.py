"""The re-review queue scoped by plan, vendor, queue and policy, and skipping a sample (someone else next, the skip
recorded): in the service, by API and on the QA pages."""

from __future__ import annotations

import pytest
from django.test import Client

from ops_platform.core.errors import Conflict
from ops_platform.core.models import ApiScope, AuditLog, Policy, User
from qa.models import QaSample, SampleSkip, SampleState, SamplingPlan
from qa.selectors import SampleScope
from qa.services import plan_save, sample_claim_next, sample_skip
from queues.models import Queue
from tests.conftest import PASSWORD
from tests.qa.factories import decided, policy_with_action, qa_person, sample_of
from tests.qa.test_review_api import api_caller, assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(intake_queue: Queue, reviewer: User, vendor_reviewer: User, vendor_a, qa_lead: User) -> dict[str, object]:
    """Four samples: in-house hate, in-house spam (drawn by a plan), vendor A hate, vendor A spam; oldest first."""
    hate = policy_with_action("hate", "Hate")
    spam = policy_with_action("spam", "Spam")
    vendor_queue = Queue.objects.create(slug="vendor-a-work", name="Vendor A work")
    vendor_queue.allowed_vendors.add(vendor_a)
    plan = plan_save(actor=qa_lead, plan=SamplingPlan(name="spam watch", rate=0.5, policy=spam))
    samples = {
        "house-hate": sample_of(decided(intake_queue, reviewer, policy=hate)),
        "house-spam": sample_of(decided(intake_queue, reviewer, policy=spam)),
        "vendor-hate": sample_of(decided(vendor_queue, vendor_reviewer, policy=hate)),
        "vendor-spam": sample_of(decided(vendor_queue, vendor_reviewer, policy=spam)),
    }
    QaSample.objects.filter(pk=samples["house-spam"].pk).update(plan=plan)
    return {"samples": samples, "hate": hate, "spam": spam, "vendor_queue": vendor_queue, "plan": plan}


def _claimed(actor: User, scope: SampleScope) -> QaSample | None:
    sample = sample_claim_next(actor=actor, scope=scope)
    if sample is not None:
        QaSample.objects.filter(pk=sample.pk).update(state=SampleState.PENDING, assignee=None, lease_expires_at=None)
    return sample


def test_the_queue_is_scoped_by_plan_vendor_queue_and_policy(world, qa_lead, vendor_a, intake_queue):
    samples, spam = world["samples"], world["spam"]
    assert isinstance(spam, Policy)
    assert _claimed(qa_lead, SampleScope(vendor_id=vendor_a.pk)) == samples["vendor-hate"]
    assert _claimed(qa_lead, SampleScope(policy_id=spam.pk)) == samples["house-spam"]
    assert _claimed(qa_lead, SampleScope(vendor_id=vendor_a.pk, policy_id=spam.pk)) == samples["vendor-spam"]
    assert _claimed(qa_lead, SampleScope(queue_id=world["vendor_queue"].pk)) == samples["vendor-hate"]
    assert _claimed(qa_lead, SampleScope(plan_id=world["plan"].pk)) == samples["house-spam"]
    assert _claimed(qa_lead, SampleScope(queue_id=intake_queue.pk)) == samples["house-hate"]
    assert _claimed(qa_lead, SampleScope()) == samples["house-hate"]
    other_queue = Queue.objects.create(slug="empty", name="Empty")
    assert sample_claim_next(actor=qa_lead, scope=SampleScope(queue_id=other_queue.pk)) is None


def test_a_skipped_sample_goes_to_someone_else_and_the_skip_is_recorded(world, qa_lead, in_house_team):
    samples = world["samples"]
    first = sample_claim_next(actor=qa_lead)
    assert first == samples["house-hate"]

    skip = sample_skip(sample=first, actor=qa_lead, reason="I know the author")

    assert (skip.reviewer, skip.reason) == (qa_lead, "I know the author")
    assert QaSample.objects.get(pk=first.pk).state == SampleState.PENDING
    assert AuditLog.objects.filter(action="qa.sample_skip").count() == 1
    assert sample_claim_next(actor=qa_lead) == samples["house-spam"]  # not the skipped one
    rita = qa_person("rita", in_house_team)
    assert sample_claim_next(actor=rita) == samples["house-hate"]  # someone else gets it, oldest first
    with pytest.raises(Conflict):
        sample_skip(sample=samples["vendor-spam"], actor=qa_lead, reason="not mine")  # only the holder skips


def test_a_skipped_sample_comes_back_to_its_skipper_only_after_every_other(world, qa_lead, vendor_a):
    samples = world["samples"]
    scope = SampleScope(vendor_id=vendor_a.pk)
    held = sample_claim_next(actor=qa_lead, scope=scope)
    assert held == samples["vendor-hate"]
    sample_skip(sample=held, actor=qa_lead, reason="needs a German speaker")
    nxt = sample_claim_next(actor=qa_lead, scope=scope)
    assert nxt == samples["vendor-spam"]
    sample_skip(sample=nxt, actor=qa_lead, reason="later")
    assert sample_claim_next(actor=qa_lead, scope=scope) == samples["vendor-hate"]
    assert SampleSkip.objects.count() == 2


def test_scope_and_skip_by_api(world, qa_lead):
    tool = api_caller(scopes=[ApiScope.QA_WRITE], vendor=None, source="qa-tool")
    url = "/api/v1/qa/samples/claim-next"
    claimed = tool.post(url, {"reviewer": "quinn", "vendor": "vendor-a", "policy": "spam"})
    assert claimed.status_code == 200, claimed.json()
    sample_id = claimed.json()["sample"]["id"]
    assert sample_id == world["samples"]["vendor-spam"].pk
    assert_error(tool.post(url, {"reviewer": "quinn", "vendor": "no-such-vendor"}), 400, field="vendor")
    assert_error(tool.post(url, {"reviewer": "quinn", "plan": 999999}), 400, field="plan")

    skip_url = f"/api/v1/qa/samples/{sample_id}/skip"
    skipped = tool.post(skip_url, {"reviewer": "quinn", "reason": "conflict of interest"}, **{"Idempotency-Key": "s1"})
    assert skipped.status_code == 200, skipped.json()
    assert skipped.json()["state"] == SampleState.PENDING
    replay = tool.post(skip_url, {"reviewer": "quinn", "reason": "conflict of interest"}, **{"Idempotency-Key": "s1"})
    assert replay.json() == skipped.json()
    assert SampleSkip.objects.count() == 1
    assert_error(tool.post(skip_url, {"reviewer": "quinn", "reason": "again"}), 409, "conflict")
    assert_error(tool.post(skip_url, {"reviewer": "quinn"}), 400, field="reason")
    scoped = tool.post(url, {"reviewer": "quinn", "queue": "vendor-a-work"}).json()["sample"]
    assert scoped["id"] == world["samples"]["vendor-hate"].pk


def test_the_qa_home_scopes_the_queue_and_the_review_page_skips(world, qa_lead, vendor_a):
    client = Client()
    assert client.login(username=qa_lead.username, password=PASSWORD)
    home = client.get("/qa/", {"vendor": vendor_a.pk})
    assert home.status_code == 200
    assert "2 waiting in this scope" in home.content.decode()

    claimed = client.post("/qa/review/next", {"vendor": vendor_a.pk, "policy": world["spam"].pk})
    vendor_spam = world["samples"]["vendor-spam"]
    assert claimed["Location"] == f"/qa/samples/{vendor_spam.pk}/review"
    assert 'data-testid="skip-form"' in client.get(claimed["Location"]).content.decode()

    # Skipping goes back home in the same scope; the next claim there offers the other samples first.
    skipped = client.post(f"/qa/samples/{vendor_spam.pk}/skip", {"reason": "unsure of the slang"})
    assert skipped["Location"].startswith("/qa/?")
    assert f"vendor={vendor_a.pk}" in skipped["Location"]
    assert SampleSkip.objects.get().reason == "unsure of the slang"
    follow = client.post("/qa/review/next", {"vendor": vendor_a.pk})
    assert follow["Location"] == f"/qa/samples/{world['samples']['vendor-hate'].pk}/review"
    assert client.post("/qa/review/next", {"vendor": 999999}).status_code == 302
    assert client.get("/qa/", {"queue": "not-a-number"}).status_code == 400
