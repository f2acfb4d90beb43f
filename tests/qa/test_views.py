"""The QA pages through Django's test client: who may open what, blindness of the re-review, the comparison,
adjudication, plans, golden items, calibration, scorecards, coaching and the ground-truth export."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.test import Client

from ops_platform.core.models import Policy, Role, Team, User
from ops_platform.core.services import user_create
from qa.models import (
    CalibrationSession,
    ErrorType,
    GoldenItem,
    GoldenRate,
    QaSample,
    SampleState,
    SamplingPlan,
)
from qa.services import adjudicate, qa_review_submit, sample_claim_next
from queues.models import Decision, GroundTruth, Queue
from tests.conftest import PASSWORD
from tests.qa.factories import decided, policy_with_action, sample_of
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db

QA_PAGES = [
    "/qa/",
    "/qa/adjudication/",
    "/qa/plans/",
    "/qa/plans/new",
    "/qa/golden/",
    "/qa/scorecards/",
    "/qa/ground-truth.csv",
]


def signed_in(user: User) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def hate(intake_queue: Queue) -> Policy:
    policy = policy_with_action("hate", "Hate speech", severity=3)
    intake_queue.policies.add(policy)
    return policy


@pytest.fixture
def spam(intake_queue: Queue) -> Policy:
    policy = policy_with_action("spam", "Spam", severity=1)
    intake_queue.policies.add(policy)
    return policy


@pytest.fixture
def sam(in_house_team: Team) -> User:
    """A second QA person, who can adjudicate what quinn re-reviewed."""
    return user_create(
        actor="test", username="sam", password=PASSWORD, roles=[Role.SENIOR_REVIEWER], team=in_house_team
    )


@pytest.fixture
def bob(in_house_team: Team) -> User:
    return user_create(actor="test", username="bob", password=PASSWORD, roles=[Role.REVIEWER], team=in_house_team)


@pytest.fixture
def hate_sample(intake_queue: Queue, reviewer: User, hate: Policy, spam: Policy) -> QaSample:
    decision = decided(
        intake_queue,
        reviewer,
        text="you people are vermin",
        policy=hate,
        action=hate.enforcement_actions.first(),
        rationale="dehumanising comparison aimed at a group",
        metadata={"moderator": "alice", "verdict": "hate"},
    )
    return sample_of(decision)


def _claim(client: Client) -> str:
    response = client.post("/qa/review/next")
    assert response.status_code == 302
    return str(response["Location"])


def _without_tokens(html: str) -> str:
    return re.sub(r'value="[^"]{32,}"|"X-CSRFToken": "[^"]+"', "", html)


# --- who may open what ----------------------------------------------------------------------------------


def test_it_refuses_qa_pages_to_a_reviewer_and_opens_them_to_qa(client: Client, reviewer, qa_lead, intake_queue):
    alice, quinn = signed_in(reviewer), signed_in(qa_lead)
    for url in QA_PAGES:
        assert alice.get(url).status_code == 403, url
        assert quinn.get(url).status_code == 200, url
        assert client.get(url).status_code == 302, url  # anonymous: to the sign-in page
    assert alice.post("/qa/review/next").status_code == 403
    assert signed_in(reviewer).get("/qa/me/").status_code == 200


def test_the_nav_shows_qa_to_qa_and_my_qa_to_reviewers(reviewer, qa_lead):
    alice_home = signed_in(reviewer).get("/").content.decode()
    assert 'href="/qa/me/"' in alice_home
    assert 'href="/qa/"' not in alice_home
    quinn_home = signed_in(qa_lead).get("/").content.decode()
    assert 'href="/qa/"' in quinn_home


# --- blind re-review ------------------------------------------------------------------------------------


def test_the_blind_page_shows_the_item_but_not_the_original_decision(qa_lead, hate_sample, hate, intake_queue):
    quinn = signed_in(qa_lead)
    url = _claim(quinn)
    assert url == f"/qa/samples/{hate_sample.pk}/review"
    # The queue no longer lists the policy the original decision cited: its name can only come from a leak.
    intake_queue.policies.remove(hate)
    html = quinn.get(url).content.decode()
    assert "you people are vermin" in html
    assert "The rules on Spam." in html  # the queue's guidelines
    for secret in ("alice", "Hate speech", "hate", "dehumanising", "moderator", "decided"):
        assert secret not in html, secret


def test_the_blind_page_is_the_same_whatever_the_original_decision_was(qa_lead, hate_sample, bob, spam):
    quinn = signed_in(qa_lead)
    url = _claim(quinn)
    before = quinn.get(url).content.decode()
    QaSample.objects.filter(pk=hate_sample.pk).update(
        original_is_violation=False, original_policy=None, original_action=None, original_reviewer=bob
    )
    after = quinn.get(url).content.decode()
    assert _without_tokens(before) == _without_tokens(after)


def test_only_the_holder_may_open_the_blind_page_and_nobody_sees_the_comparison_before(qa_lead, sam, hate_sample):
    url = _claim(signed_in(qa_lead))
    assert signed_in(sam).get(url).status_code == 404
    assert signed_in(sam).get(f"/qa/samples/{hate_sample.pk}/compare").status_code == 404
    assert signed_in(qa_lead).get(f"/qa/samples/{hate_sample.pk}/compare").status_code == 404


def test_a_disagreeing_re_review_reveals_the_original_and_goes_to_adjudication(qa_lead, hate_sample, spam):
    quinn = signed_in(qa_lead)
    url = _claim(quinn)
    response = quinn.post(url, {"violation": "yes", "policy": spam.pk, "action": "", "rationale": "it is an ad"})
    assert response.status_code == 302
    assert response["Location"] == f"/qa/samples/{hate_sample.pk}/compare"
    html = quinn.get(response["Location"]).content.decode()
    assert "went to adjudication" in html
    for shown in ("alice", "Hate speech", "dehumanising comparison", "Spam", "it is an ad"):
        assert shown in html, shown
    hate_sample.refresh_from_db()
    assert hate_sample.state == SampleState.ADJUDICATION


def test_an_agreeing_re_review_closes_the_sample(qa_lead, hate_sample, hate):
    quinn = signed_in(qa_lead)
    url = _claim(quinn)
    action = hate.enforcement_actions.get()
    response = quinn.post(url, {"violation": "yes", "policy": hate.pk, "action": action.pk}, follow=True)
    assert "You agree with the original decision" in response.content.decode()
    hate_sample.refresh_from_db()
    assert hate_sample.state == SampleState.CLOSED
    assert hate_sample.agreed
    closed = quinn.get(f"/qa/samples/{hate_sample.pk}/adjudicate").content.decode()
    assert 'data-testid="agreed"' in closed
    assert 'data-testid="adjudicate-form"' not in closed


def test_a_violation_without_a_policy_is_refused_on_the_form(qa_lead, hate_sample):
    quinn = signed_in(qa_lead)
    url = _claim(quinn)
    response = quinn.post(url, {"violation": "yes", "policy": ""})
    assert response.status_code == 400
    assert "A violation needs the policy it violates." in response.content.decode()
    assert not QaSample.objects.filter(review__isnull=False).exists()


def test_nothing_to_re_review_says_so(qa_lead, db):
    response = signed_in(qa_lead).post("/qa/review/next", follow=True)
    assert "No sample is waiting for re-review." in response.content.decode()


# --- adjudication ---------------------------------------------------------------------------------------


@pytest.fixture
def disputed(qa_lead, hate_sample, spam) -> QaSample:
    sample = sample_claim_next(actor=qa_lead)
    assert sample is not None
    qa_review_submit(
        sample=sample, actor=qa_lead, is_violation=False, policy=None, action=None, rationale="banter between friends"
    )
    return sample


def test_the_re_reviewer_cannot_adjudicate_their_own_dispute(qa_lead, disputed):
    quinn = signed_in(qa_lead)
    assert "you made one of the decisions" in quinn.get("/qa/adjudication/").content.decode()
    page = quinn.get(f"/qa/samples/{disputed.pk}/adjudicate").content.decode()
    assert 'data-testid="party"' in page
    response = quinn.post(
        f"/qa/samples/{disputed.pk}/adjudicate", {"violation": "no", "rationale": "mine"}, follow=True
    )
    assert "neither of the two decisions" in response.content.decode()
    disputed.refresh_from_db()
    assert disputed.state == SampleState.ADJUDICATION


def test_adjudication_records_the_error_corrects_the_item_and_can_make_a_golden_item(sam, disputed, hate):
    client = signed_in(sam)
    page = client.get(f"/qa/samples/{disputed.pk}/adjudicate").content.decode()
    for shown in ("alice", "Hate speech", "banter between friends", "quinn", "you people are vermin"):
        assert shown in page, shown
    assert '"none": 3.0' in page  # a false positive on hate weighs hate's severity
    response = client.post(
        f"/qa/samples/{disputed.pk}/adjudicate",
        {"violation": "no", "rationale": "reclaimed in-group usage, not an attack", "severity": ""},
        follow=True,
    )
    html = response.content.decode()
    assert "False positive" in html
    assert "Make golden item" in html
    disputed.refresh_from_db()
    assert (disputed.state, disputed.error_type, disputed.severity) == (
        SampleState.CLOSED,
        ErrorType.FALSE_POSITIVE,
        3.0,
    )
    assert GroundTruth.objects.get(item=disputed.item).is_violation is False
    correction = Decision.objects.get(supersedes=disputed.decision)
    assert correction.is_violation is False

    response = client.post(f"/qa/samples/{disputed.pk}/golden", follow=True)
    golden = GoldenItem.objects.get()
    assert (golden.text, golden.expected_is_violation) == ("you people are vermin", False)
    assert "reclaimed in-group usage" in golden.rationale
    assert f"Golden item {golden.pk} created" in response.content.decode()


def test_an_adjudication_without_a_rationale_is_refused(sam, disputed):
    response = signed_in(sam).post(f"/qa/samples/{disputed.pk}/adjudicate", {"violation": "no", "rationale": " "})
    assert response.status_code == 400
    disputed.refresh_from_db()
    assert disputed.state == SampleState.ADJUDICATION


# --- coaching --------------------------------------------------------------------------------------------


def test_coaching_shows_a_reviewer_only_their_own_outcomes(reviewer, bob, sam, qa_lead, disputed, intake_queue, spam):
    adjudicate(
        sample=disputed,
        actor=sam,
        is_violation=False,
        policy=None,
        action=None,
        rationale="reclaimed in-group usage, not an attack",
    )
    bobs = sample_of(decided(intake_queue, bob, text="bob's item text", policy=spam))
    claimed = sample_claim_next(actor=qa_lead)
    assert claimed == bobs
    qa_review_submit(sample=bobs, actor=qa_lead, is_violation=False, policy=None, action=None)
    adjudicate(sample=bobs, actor=sam, is_violation=False, policy=None, action=None, rationale="bob's lesson")

    alice_page = signed_in(reviewer).get("/qa/me/").content.decode()
    assert "reclaimed in-group usage, not an attack" in alice_page
    assert "False positive" in alice_page
    assert "you people are vermin" in alice_page
    assert "bob&#x27;s lesson" not in alice_page
    assert "bob&#x27;s item text" not in alice_page
    bob_page = signed_in(bob).get("/qa/me/").content.decode()
    assert "bob&#x27;s lesson" in bob_page
    assert "reclaimed in-group usage" not in bob_page


# --- ground truth export ------------------------------------------------------------------------------------


def test_the_ground_truth_export_has_the_latest_label_per_item_and_no_content(sam, disputed, hate):
    adjudicate(sample=disputed, actor=sam, is_violation=False, policy=None, action=None, rationale="not an attack")
    item = disputed.item
    item.external_id = "=HYPERLINK(1)"
    item.save(update_fields=["external_id"])
    response = signed_in(sam).get("/qa/ground-truth.csv")
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["item_id", "source", "external_id", "is_violation", "policy", "origin", "recorded_at"]
    assert len(rows) == 2
    assert rows[1][:6] == [str(item.pk), "claims", "'=HYPERLINK(1)", "0", "", "adjudicated"]
    assert "vermin" not in body


# --- plans, golden items, calibration, scorecards ----------------------------------------------------------------


def test_a_plan_is_created_and_a_bad_rate_is_refused(qa_lead, intake_queue):
    quinn = signed_in(qa_lead)
    base = {
        "name": "general",
        "queue": intake_queue.pk,
        "rate": "0.05",
        "low_confidence_band": "0.2",
        "new_reviewer_decisions": "50",
        "new_reviewer_rate": "0.5",
        "is_active": "on",
    }
    refused = quinn.post("/qa/plans/new", {**base, "rate": "1.5"})
    assert refused.status_code == 400
    assert 'id="id_rate_error"' in refused.content.decode(), "the refusal names the field"
    assert not SamplingPlan.objects.exists()
    response = quinn.post("/qa/plans/new", {**base, "rate_violation": "0.2"}, follow=True)
    plan = SamplingPlan.objects.get()
    assert (plan.rate, plan.rate_violation, plan.new_reviewer_rate, plan.created_by) == (0.05, 0.2, 0.5, qa_lead)
    assert "General" in response.content.decode()
    quinn.post(f"/qa/plans/{plan.pk}/", {**base, "rate": "0.1", "reason": "more coverage"})
    plan.refresh_from_db()
    assert plan.rate == 0.1


def test_the_sample_size_helper_gives_n_and_a_rate(qa_lead, db):
    html = (
        signed_in(qa_lead)
        .get(
            "/qa/plans/",
            {"expected_error_rate": "0.05", "margin": "0.02", "confidence": "0.95", "decisions_per_month": "10000"},
        )
        .content.decode()
    )
    assert "<strong>457</strong>" in html
    assert "<strong>0.0457</strong>" in html


def test_golden_items_are_created_listed_and_rated_per_queue(qa_lead, intake_queue, hate):
    quinn = signed_in(qa_lead)
    quinn.post(
        "/qa/golden/",
        {
            "form": "golden",
            "queue": intake_queue.pk,
            "text": "<b>golden</b> text",
            "expected_is_violation": "yes",
            "expected_policy": hate.pk,
            "rationale": "a slur",
        },
    )
    golden = GoldenItem.objects.get()
    assert (golden.expected_policy, golden.expected_is_violation) == (hate, True)
    quinn.post("/qa/golden/", {"form": "rate", "queue": intake_queue.pk, "rate": "0.02"})
    assert GoldenRate.objects.get(queue=intake_queue).rate == 0.02
    html = quinn.get("/qa/golden/").content.decode()
    assert "&lt;b&gt;golden&lt;/b&gt; text" in html
    assert "<b>golden</b>" not in html
    assert quinn.post("/qa/golden/", {"form": "rate", "queue": intake_queue.pk, "rate": "0.9"}).status_code == 400
    assert GoldenRate.objects.get(queue=intake_queue).rate == 0.02


def test_calibration_ratings_stay_private_until_the_session_closes(qa_lead, reviewer, bob, intake_queue, spam):
    items = [item_queued(intake_queue, text=f"calibration item {n}") for n in range(3)]
    quinn = signed_in(qa_lead)
    quinn.post(
        "/qa/calibration/",
        {"name": "March", "item_ids": " ".join(str(i.pk) for i in items), "participants": [reviewer.pk, bob.pk]},
    )
    session = CalibrationSession.objects.get()
    first, *rest = session.session_items.all()
    alice, bobc = signed_in(reviewer), signed_in(bob)
    url = f"/qa/calibration/{session.pk}/"
    alice.post(
        f"{url}items/{first.pk}/rate",
        {
            f"i{first.pk}-violation": "yes",
            f"i{first.pk}-policy": spam.pk,
            f"i{first.pk}-rationale": "alice thinks spam",
        },
    )
    assert "alice thinks spam" in alice.get(f"{url}rate?position=1").content.decode()
    assert "alice thinks spam" not in bobc.get(f"{url}rate?position=1").content.decode()
    assert "alice thinks spam" not in quinn.get(url).content.decode()
    for si in [first, *rest]:
        bobc.post(f"{url}items/{si.pk}/rate", {f"i{si.pk}-violation": "no"})
    alice.post(f"{url}items/{rest[0].pk}/rate", {f"i{rest[0].pk}-violation": "no"})
    assert alice.post(f"{url}close").status_code == 403
    quinn.post(f"{url}close")
    report = bobc.get(url).content.decode()
    assert 'data-testid="report"' in report
    assert "Krippendorff" in report
    assert signed_in(qa_lead).get("/qa/calibration/").status_code == 200


def test_scorecards_list_people_by_name_and_say_too_few_under_thirty_samples(
    sam, qa_lead, bob, reviewer, intake_queue, hate, spam
):
    for person in (reviewer, bob, reviewer, bob):
        sample_of(decided(intake_queue, person, policy=spam))
    while (sample := sample_claim_next(actor=qa_lead)) is not None:
        qa_review_submit(sample=sample, actor=qa_lead, is_violation=True, policy=spam, action=None)
    html = signed_in(qa_lead).get("/qa/scorecards/", {"queue": intake_queue.pk}).content.decode()
    assert html.index("alice") < html.index("bob")
    assert "too few to judge (2 items)" in html  # two samples: no 100% to read
