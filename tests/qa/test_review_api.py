"""Review and QA by API (qa/api.py), through HTTP with API keys and sessions: a vendor's tool claims, decides
and releases as its own reviewers; every refusal is a 4xx in the one error shape; writes replay by key."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from ops_platform.core.models import ApiScope, Team, User, Vendor
from ops_platform.core.services import api_client_create
from qa.models import SampleState
from queues.models import Decision, ItemState, Queue, ReviewItem
from tests.qa.factories import decided, policy_with_actions, qa_person, sample_of
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db


class Caller:
    """JSON over Django's test client, with an API key or a signed-in session."""

    def __init__(self, key: str | None = None, user: User | None = None) -> None:
        self.http = Client()
        self.key = key
        if user is not None:
            self.http.force_login(user)

    def post(self, path: str, body: Any, **headers: str) -> Any:
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        if self.key:
            extra["HTTP_AUTHORIZATION"] = f"Bearer {self.key}"
        return self.http.post(path, json.dumps(body), content_type="application/json", **extra)


def api_caller(*, scopes: list[str], vendor: Vendor | None, source: str = "vendor-tool") -> Caller:
    client, key = api_client_create(actor="test", name=source, source=source, scopes=scopes)
    client.vendor = vendor
    client.save(update_fields=["vendor"])
    return Caller(key=key)


@pytest.fixture
def hate():
    return policy_with_actions("hate", severity=3)


@pytest.fixture
def vendor_queue(vendor_a: Vendor, hate) -> Queue:
    queue = Queue.objects.create(slug="vendor-a-work", name="Vendor A work")
    queue.allowed_vendors.add(vendor_a)
    queue.policies.add(hate[0])
    return queue


@pytest.fixture
def tool(vendor_a: Vendor) -> Caller:
    return api_caller(scopes=[ApiScope.REVIEWS_WRITE], vendor=vendor_a)


def claim(caller: Caller, queue: Queue, reviewer: str | None = "vic", **headers: str) -> Any:
    body = {"reviewer": reviewer} if reviewer else {}
    return caller.post(f"/api/v1/queues/{queue.slug}/claim-next", body, **headers)


def decide(caller: Caller, item_id: int, reviewer: str | None = "vic", **fields: Any) -> Any:
    body = {"is_violation": True, "policy": "hate", "action": "remove", "rationale": "slur", **fields}
    if reviewer:
        body["reviewer"] = reviewer
    return caller.post(f"/api/v1/review-items/{item_id}/decision", body)


def assert_error(response: Any, status: int, code: str | None = None, field: str | None = None) -> None:
    body = response.json()
    assert response.status_code == status, body
    assert set(body) == {"error", "detail", "errors"}
    if code:
        assert body["error"] == code
    if field:
        assert body["errors"][0]["field"] == field


def test_a_vendor_tool_claims_and_decides_as_its_reviewer(tool, vendor_queue, vendor_reviewer):
    item = item_queued(vendor_queue)

    claimed = claim(tool, vendor_queue)
    assert claimed.status_code == 200, claimed.json()
    body = claimed.json()["item"]
    assert (body["id"], body["queue"], body["policies"]) == (item.pk, "vendor-a-work", ["hate"])
    assert body["lease_expires_at"] is not None

    decision = decide(tool, item.pk)
    assert decision.status_code == 201, decision.json()
    assert decision.json()["closed"] is True
    assert decision.json()["state"] == ItemState.DECIDED
    stored = Decision.objects.get()
    assert (stored.reviewer, stored.policy.slug, stored.action.slug) == (vendor_reviewer, "hate", "remove")


def test_nothing_waiting_answers_a_null_item(tool, vendor_queue, vendor_reviewer):
    response = claim(tool, vendor_queue)
    assert response.status_code == 200
    assert response.json() == {"item": None}


def test_a_decision_replays_by_idempotency_key_and_refuses_the_key_with_another_body(
    tool, vendor_queue, vendor_reviewer
):
    item = item_queued(vendor_queue)
    claim(tool, vendor_queue)
    path = f"/api/v1/review-items/{item.pk}/decision"
    body = {"reviewer": "vic", "is_violation": True, "policy": "hate", "action": "remove"}

    first = tool.post(path, body, **{"Idempotency-Key": "d-1"})
    again = tool.post(path, body, **{"Idempotency-Key": "d-1"})
    other = tool.post(path, {**body, "rationale": "changed"}, **{"Idempotency-Key": "d-1"})

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Decision.objects.count() == 1
    assert_error(other, 422, "idempotency_key_reused", "Idempotency-Key")


def test_the_same_key_on_another_endpoint_is_refused(tool, vendor_queue, vendor_reviewer):
    item = item_queued(vendor_queue)
    assert claim(tool, vendor_queue, **{"Idempotency-Key": "k"}).status_code == 200
    release = tool.post(f"/api/v1/review-items/{item.pk}/release", {"reviewer": "vic"}, **{"Idempotency-Key": "k"})
    assert_error(release, 400, field="reason")  # validation comes first
    release = tool.post(
        f"/api/v1/review-items/{item.pk}/release", {"reviewer": "vic", "reason": "x"}, **{"Idempotency-Key": "k"}
    )
    assert_error(release, 422, "idempotency_key_reused")


def test_a_key_without_the_scope_is_refused(vendor_a, vendor_queue, vendor_reviewer):
    intake_only = api_caller(scopes=[ApiScope.ITEMS_WRITE], vendor=vendor_a)
    assert_error(claim(intake_only, vendor_queue), 403, "permission_denied")


def test_a_tool_acts_only_for_its_own_vendors_reviewers(tool, vendor_queue, vendor_reviewer, reviewer, vendor_b):
    item_queued(vendor_queue)
    assert_error(claim(tool, vendor_queue, reviewer="alice"), 403, "forbidden", "reviewer")  # in-house
    assert_error(claim(tool, vendor_queue, reviewer="nobody"), 403, "forbidden", "reviewer")
    assert_error(claim(tool, vendor_queue, reviewer=None), 400, field="reviewer")
    other_vendor = api_caller(scopes=[ApiScope.REVIEWS_WRITE], vendor=vendor_b, source="b-tool")
    assert_error(claim(other_vendor, vendor_queue), 403, "forbidden", "reviewer")
    in_house = api_caller(scopes=[ApiScope.REVIEWS_WRITE], vendor=None, source="in-house-tool")
    assert_error(claim(in_house, vendor_queue), 403, "forbidden", "reviewer")
    assert ReviewItem.objects.get().state == ItemState.QUEUED


def test_another_vendors_queue_is_refused(tool, vendor_b, vendor_reviewer, hate):
    theirs = Queue.objects.create(slug="vendor-b-work", name="Vendor B work")
    theirs.allowed_vendors.add(vendor_b)
    item_queued(theirs)
    assert_error(claim(tool, theirs), 403, "forbidden")
    assert_error(tool.post("/api/v1/queues/no-such-queue/claim-next", {"reviewer": "vic"}), 404, "not_found")


def test_an_expired_lease_is_refused(tool, vendor_queue, vendor_reviewer):
    item = item_queued(vendor_queue)
    claim(tool, vendor_queue)
    ReviewItem.objects.filter(pk=item.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(decide(tool, item.pk), 409, "lease_expired", "item")
    assert not Decision.objects.exists()


def test_a_policy_the_queue_does_not_offer_is_refused(tool, vendor_queue, vendor_reviewer):
    policy_with_actions("spam")
    item = item_queued(vendor_queue)
    claim(tool, vendor_queue)
    assert_error(decide(tool, item.pk, policy="spam"), 400, "invalid", "policy")
    assert_error(decide(tool, item.pk, policy="no-such-policy"), 400, "invalid", "policy")
    assert_error(decide(tool, item.pk, labels=["nope"]), 400, "invalid", "labels")
    assert_error(decide(tool, 10**6), 404, "not_found")
    assert not Decision.objects.exists()


def test_only_the_holder_decides_or_releases(tool, vendor_a, vendor_queue, vendor_reviewer):
    other = qa_person("val", Team.objects.get(vendor=vendor_a))
    item = item_queued(vendor_queue)
    claim(tool, vendor_queue)
    assert_error(decide(tool, item.pk, reviewer=other.username), 400, "invalid", "item")
    release = tool.post(f"/api/v1/review-items/{item.pk}/release", {"reviewer": "val", "reason": "not mine"})
    assert_error(release, 409, "conflict", "item")


def test_release_gives_the_item_back_to_the_queue(tool, vendor_queue, vendor_reviewer):
    item = item_queued(vendor_queue)
    claim(tool, vendor_queue)
    response = tool.post(f"/api/v1/review-items/{item.pk}/release", {"reviewer": "vic", "reason": "language"})
    assert response.status_code == 200, response.json()
    assert response.json() == {"item": item.pk, "state": ItemState.QUEUED}
    assert claim(tool, vendor_queue).json() == {"item": None}  # skipped: not given back to vic at once


def test_a_signed_in_reviewer_acts_as_themself(vendor_queue, vendor_reviewer, reviewer):
    item = item_queued(vendor_queue)
    session = Caller(user=vendor_reviewer)
    assert_error(claim(session, vendor_queue, reviewer="alice"), 403, "forbidden", "reviewer")
    assert claim(session, vendor_queue, reviewer=None).json()["item"]["id"] == item.pk
    assert decide(session, item.pk, reviewer=None).status_code == 201
    # alice is in-house, the queue is vendor A's: the service's own queue-scope check refuses her.
    assert_error(claim(Caller(user=reviewer), vendor_queue, reviewer=None), 403, "forbidden")
    anonymous = Caller()
    assert claim(anonymous, vendor_queue, reviewer=None).status_code in (401, 403)


def test_qa_re_review_and_adjudication_by_api(intake_queue, reviewer, qa_lead, in_house_team, hate):
    policy, remove = hate
    intake_queue.policies.add(policy)
    rita = qa_person("rita", in_house_team)
    original = decided(intake_queue, reviewer)  # alice missed it
    sample = sample_of(original)
    qa_tool = api_caller(scopes=[ApiScope.QA_WRITE], vendor=None, source="qa-tool")

    assert_error(qa_tool.post("/api/v1/qa/samples/claim-next", {"reviewer": "alice"}), 403, "forbidden")
    claimed = qa_tool.post("/api/v1/qa/samples/claim-next", {"reviewer": "quinn"})
    assert claimed.status_code == 200, claimed.json()
    assert claimed.json()["sample"]["id"] == sample.pk
    assert "original" not in json.dumps(claimed.json())  # blind

    verdict = {"is_violation": True, "policy": policy.slug, "action": remove.slug, "rationale": "slur"}
    review = qa_tool.post(f"/api/v1/qa/samples/{sample.pk}/re-review", {"reviewer": "quinn", **verdict})
    assert review.status_code == 201, review.json()
    assert (review.json()["agrees"], review.json()["state"]) == (False, SampleState.ADJUDICATION)

    path = f"/api/v1/qa/samples/{sample.pk}/adjudication"
    assert_error(qa_tool.post(path, {"reviewer": "quinn", **verdict}), 403, "forbidden")  # a decider
    adjudicated = qa_tool.post(path, {"reviewer": "rita", **verdict}, **{"Idempotency-Key": "adj-1"})
    replay = qa_tool.post(path, {"reviewer": "rita", **verdict}, **{"Idempotency-Key": "adj-1"})
    assert adjudicated.status_code == 201, adjudicated.json()
    assert (adjudicated.json()["error_type"], adjudicated.json()["severity"]) == ("false_negative", 3.0)
    assert adjudicated.json()["correction"] is not None
    assert replay.json() == adjudicated.json()
    assert rita.pk == Decision.objects.get(pk=adjudicated.json()["correction"]).reviewer_id


def test_a_calibration_session_by_api_from_a_long_id_list_rated_closed_and_reported(
    intake_queue, reviewer, qa_lead, in_house_team, hate
):
    policy, _ = hate
    rita = qa_person("rita", in_house_team)
    items = ReviewItem.objects.bulk_create(
        ReviewItem(source="s", external_id=f"c-{n}", text=f"post {n}", received_at=timezone.now(), queue=intake_queue)
        for n in range(600)  # ids far past the page's 2,000-character cap
    )
    qa_tool = api_caller(scopes=[ApiScope.QA_WRITE, ApiScope.QA_READ], vendor=None, source="qa-tool")
    body = {"reviewer": "quinn", "name": "Hate March", "participants": ["quinn", "rita"]}

    created = qa_tool.post("/api/v1/qa/calibration-sessions", {**body, "item_ids": [i.pk for i in items]})
    assert created.status_code == 201, created.json()
    session = created.json()
    assert (session["items"], session["participants"]) == (600, ["quinn", "rita"])
    assert_error(qa_tool.post("/api/v1/qa/calibration-sessions", body), 400, "invalid")  # neither ids nor filter
    assert_error(
        qa_tool.post("/api/v1/qa/calibration-sessions", {**body, "reviewer": "alice", "item_ids": [items[0].pk]}),
        403,
        "forbidden",
    )  # alice is no QA
    from_filter = qa_tool.post(
        "/api/v1/qa/calibration-sessions", {**body, "filter": {"queue": "general", "limit": 10}}
    ).json()
    assert from_filter["items"] == 10

    rate = f"/api/v1/qa/calibration-sessions/{session['id']}/ratings"
    for n, item in enumerate(items[:3]):
        for who in ("quinn", "rita"):
            violation = who == "quinn" or n == 0
            rating = {"reviewer": who, "item": item.pk, "is_violation": violation, "policy": policy.slug}
            assert qa_tool.post(rate, rating).status_code == 201
    again = {"reviewer": "rita", "item": items[0].pk, "is_violation": False}
    assert_error(qa_tool.post(rate, again), 409, "conflict")  # ratings are final
    assert_error(qa_tool.post(rate, {**again, "reviewer": "alice"}), 404, "not_found")  # not hers to see
    report = f"/api/v1/qa/calibration-sessions/{session['id']}/report?reviewer=rita"
    assert_error(qa_tool.http.get(report, HTTP_AUTHORIZATION=f"Bearer {qa_tool.key}"), 409, "conflict")

    closed = qa_tool.post(f"/api/v1/qa/calibration-sessions/{session['id']}/close", {"reviewer": "quinn"})
    assert closed.status_code == 200
    assert closed.json()["closed_at"] is not None
    assert_error(qa_tool.post(rate, {**again, "item": items[5].pk}), 409, "conflict")

    page = qa_tool.http.get(report + "&page=1&page_size=2", HTTP_AUTHORIZATION=f"Bearer {qa_tool.key}")
    assert page.status_code == 200, page.json()
    out = page.json()
    assert (out["count"], out["page_size"], len(out["items"])) == (600, 2, 2)
    assert out["items"][0]["labels"] == {"quinn": "hate", "rita": "hate"}
    assert out["items"][1]["agreement"] == 0.0
    assert out["alpha"] is not None
    assert "all participants" in out["raters"]
    signed_in = Caller(user=rita).http.get(f"/api/v1/qa/calibration-sessions/{session['id']}/report?page=300")
    assert signed_in.status_code == 200
    assert len(signed_in.json()["items"]) == 0
