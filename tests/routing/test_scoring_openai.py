"""The OpenAI backends through the real ``openai`` client against a local server that speaks the API.

Every fault ends in a score, a fallback or an unscored mark (human review), never a lost item or a crash.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import pytest

from ops_platform.core.models import Policy
from queues.models import ItemState, ReviewItem
from routing.intake.services import items_triage
from routing.models import CallOutcome, ClassifierCall, ClassifierScore, IncidentKind, ScoringIncident
from routing.scoring.guards import CircuitBreaker
from routing.scoring.openai_backends import prompt_version
from routing.scoring.pipeline import items_score
from tests.support.fake_openai import FakeOpenAI

from .conftest import items_make

pytestmark = pytest.mark.django_db

MODERATION = ["openai_moderation", "local"]
POLICY = ["openai_policy", "local"]


@pytest.fixture
def moderation_chain(settings: Any, fake_openai: FakeOpenAI) -> FakeOpenAI:
    settings.SCORING_DEFAULT_CHAIN = MODERATION
    return fake_openai


@pytest.fixture
def policy_chain(settings: Any, fake_openai: FakeOpenAI, hate_policy: Policy, spam_policy: Policy) -> FakeOpenAI:
    settings.SCORING_DEFAULT_CHAIN = POLICY
    return fake_openai


def scores_of(item: ReviewItem) -> dict[str, ClassifierScore]:
    return {s.backend: s for s in ClassifierScore.objects.filter(item=item)}


def test_moderation_scores_a_batch_in_one_request_and_maps_categories(moderation_chain: FakeOpenAI) -> None:
    items = items_make("I will kill you", "What a lovely morning", "I want to cut myself")
    report = items_score(item_ids=[i.pk for i in items])

    assert moderation_chain.count("/moderations") == 1
    assert moderation_chain.requests[0].body["input"] == [i.text for i in items]
    assert report.scored == {"openai_moderation": 3}
    assert report.unscored == 0
    violent, benign, harm = (scores_of(i)["openai_moderation"] for i in items)
    assert violent.scores["violence"] > 0.5 > benign.scores["violence"]
    assert harm.scores["self-harm"] > 0.5
    # Categories we have no policy for are kept, namespaced.
    assert "openai:illicit" in benign.scores
    assert violent.model == "omni-moderation-latest"
    assert violent.model_version == "omni-moderation-2024-09-26"
    call = ClassifierCall.objects.get()
    assert (call.outcome, call.items, call.model_version) == (CallOutcome.OK, 3, "omni-moderation-2024-09-26")
    assert violent.call == call


def test_pii_is_redacted_before_the_text_leaves(moderation_chain: FakeOpenAI) -> None:
    [item] = items_make("Mail me at jane.doe+x@example.com or call +44 20 7946 0958, card 4111 1111 1111 1111")
    items_score(item_ids=[item.pk])

    sent = json.dumps(moderation_chain.requests[0].body)
    assert "jane.doe" not in sent
    assert "7946" not in sent
    assert "4111" not in sent
    assert "[EMAIL]" in sent
    assert "[PHONE]" in sent
    assert "[CARD]" in sent
    assert ClassifierCall.objects.get().redactions == {"email": 1, "phone": 1, "card": 1}
    # The stored item keeps what the client sent: redaction is for what leaves, not for the record.
    item.refresh_from_db()
    assert "jane.doe+x@example.com" in item.text


def test_429_with_retry_after_is_retried_by_the_client(moderation_chain: FakeOpenAI) -> None:
    [item] = items_make("you are an idiot")
    moderation_chain.fail_next("429")
    items_score(item_ids=[item.pk])

    assert [r.fault for r in moderation_chain.requests] == ["429", None]
    assert "openai_moderation" in scores_of(item)


@pytest.mark.parametrize(
    ("faults", "outcome"),
    [
        (("500", "500"), CallOutcome.SERVER_ERROR),
        (("429", "429"), CallOutcome.RATE_LIMITED),
        (("slow", "slow"), CallOutcome.TIMEOUT),
        (("malformed",), CallOutcome.MALFORMED),
    ],
)
def test_a_failed_call_falls_back_to_the_local_model(
    moderation_chain: FakeOpenAI, local_model: Any, faults: tuple[str, ...], outcome: CallOutcome
) -> None:
    [item] = items_make("I am going to shoot everyone at the mall")
    moderation_chain.fail_next(*faults)
    report = items_score(item_ids=[item.pk])

    assert report.scored == {"local": 1}
    assert set(scores_of(item)) == {"local"}
    assert scores_of(item)["local"].model_version == local_model.label
    failed = ClassifierCall.objects.get(backend="openai_moderation")
    assert failed.outcome == outcome
    assert failed.items == 1
    assert CircuitBreaker("openai_moderation").state() == "closed"  # one failure does not open it


def test_with_every_backend_down_the_item_goes_to_people_marked_unscored(
    moderation_chain: FakeOpenAI, intake_queue: Any
) -> None:
    [item] = items_make("anything at all")
    moderation_chain.fail_next("500", "500")
    moved = items_triage(item_ids=[item.pk])

    assert moved == [item.pk]
    item.refresh_from_db()
    assert item.state == ItemState.QUEUED
    assert item.queue == intake_queue
    unscored = scores_of(item)["unscored"]
    assert unscored.scores == {}
    assert unscored.detail["reasons"] == {
        "openai_moderation": "Server error (5xx)",
        "local": "Backend not configured or no active model",
    }


def test_running_a_batch_twice_calls_and_stores_once(moderation_chain: FakeOpenAI) -> None:
    items = items_make("first", "second")
    items_score(item_ids=[i.pk for i in items])
    items_score(item_ids=[i.pk for i in items])

    assert moderation_chain.count("/moderations") == 1
    assert ClassifierScore.objects.count() == 2


def test_the_circuit_opens_after_repeated_failures_and_a_trial_closes_it(
    settings: Any, moderation_chain: FakeOpenAI, local_model: Any
) -> None:
    settings.SCORING_BREAKER_FAILURES = 2
    settings.SCORING_BREAKER_COOLDOWN = __import__("datetime").timedelta(seconds=0.3)
    items = items_make("a", "b", "c", "d")
    moderation_chain.fail_next("500", "500", "500", "500")
    items_score(item_ids=[items[0].pk])
    items_score(item_ids=[items[1].pk])
    assert CircuitBreaker("openai_moderation").state() == "open"
    assert ScoringIncident.objects.get(kind=IncidentKind.CIRCUIT_OPEN).backend == "openai_moderation"

    items_score(item_ids=[items[2].pk])  # skipped without a request while open
    assert moderation_chain.count("/moderations") == 4
    assert ClassifierCall.objects.filter(outcome=CallOutcome.CIRCUIT_OPEN).count() == 1
    assert set(scores_of(items[2])) == {"local"}

    __import__("time").sleep(0.35)  # cool-down over: one trial call, which succeeds and closes the circuit
    items_score(item_ids=[items[3].pk])
    assert CircuitBreaker("openai_moderation").state() == "closed"
    assert "openai_moderation" in scores_of(items[3])


def test_policy_classifier_prompt_schema_tokens_and_cost(policy_chain: FakeOpenAI, hate_policy: Policy) -> None:
    [item] = items_make("Those vermin should all be driven out, I hate them")
    items_score(item_ids=[item.pk])

    [request] = policy_chain.requests
    body = request.body
    assert body["temperature"] == 0
    assert body["model"] == "gpt-4o-mini"
    schema = body["response_format"]["json_schema"]
    assert schema["strict"] is True
    assert schema["schema"]["properties"]["results"]["items"]["properties"]["policy"]["enum"] == [
        "hate-speech",
        "spam-scam",
    ]
    system = body["messages"][0]["content"]
    assert hate_policy.guidelines in system
    assert "guidelines version 1" in system
    assert body["messages"][1] == {"role": "user", "content": item.text}

    score = scores_of(item)["openai_policy"]
    assert score.scores["policy:hate-speech"] > 0.5 > score.scores["policy:spam-scam"]
    assert score.scores["hate"] == score.scores["hate/threatening"] == score.scores["policy:hate-speech"]
    assert score.model_version == "gpt-4o-mini-2024-07-18"
    assert score.prompt_version == prompt_version([hate_policy, Policy.objects.get(slug="spam-scam")])
    assert set(score.detail["rationale"]) == {"hate-speech", "spam-scam"}
    call = ClassifierCall.objects.get()
    assert call.input_tokens > 0
    assert call.output_tokens > 0
    expected = (Decimal("0.15") * call.input_tokens + Decimal("0.60") * call.output_tokens) / 1_000_000
    assert call.cost_usd == expected.quantize(Decimal("0.000001"))


def test_prompt_version_follows_the_guidelines_version(hate_policy: Policy, spam_policy: Policy) -> None:
    before = prompt_version([hate_policy, spam_policy])
    hate_policy.guidelines_version += 1
    assert prompt_version([hate_policy, spam_policy]) != before
    assert prompt_version([spam_policy, hate_policy]) != before  # order does not matter, the version does
    hate_policy.guidelines_version -= 1
    assert prompt_version([spam_policy, hate_policy]) == before


@pytest.mark.parametrize(
    ("fault", "outcome"), [("refusal", CallOutcome.REFUSED), ("bad_schema", CallOutcome.MALFORMED)]
)
def test_a_refused_or_malformed_answer_falls_back_for_that_item_only(
    policy_chain: FakeOpenAI, local_model: Any, fault: str, outcome: CallOutcome
) -> None:
    first, second = items_make("send me your bank details to claim the prize", "nice weather")
    policy_chain.fail_next(fault)
    # One in flight at a time, so the fault lands on the first item.
    from routing.scoring.pipeline import BACKENDS

    BACKENDS["openai_policy"].concurrency = 1  # type: ignore[attr-defined]
    try:
        report = items_score(item_ids=[first.pk, second.pk])
    finally:
        BACKENDS["openai_policy"].concurrency = 4  # type: ignore[attr-defined]

    assert set(scores_of(first)) == {"local"}
    assert set(scores_of(second)) == {"openai_policy"}
    assert report.scored == {"openai_policy": 1, "local": 1}
    assert ClassifierCall.objects.get(backend="openai_policy").outcome == CallOutcome.OK


def test_when_the_daily_budget_is_spent_the_backend_is_skipped_and_ops_alerted(
    settings: Any, policy_chain: FakeOpenAI, local_model: Any
) -> None:
    settings.SCORING_DAILY_BUDGET_USD = {"openai_policy": 0.0000001}
    first, second = items_make("first item", "second item")
    items_score(item_ids=[first.pk])
    assert "openai_policy" in scores_of(first)

    items_score(item_ids=[second.pk])
    assert policy_chain.count("/chat/completions") == 1
    assert set(scores_of(second)) == {"local"}
    incident = ScoringIncident.objects.get(kind=IncidentKind.BUDGET_SPENT)
    assert incident.backend == "openai_policy"
    assert "budget" in incident.message


def test_no_item_text_reaches_the_logs(
    caplog: pytest.LogCaptureFixture, settings: Any, moderation_chain: FakeOpenAI, intake_queue: Any
) -> None:
    secret = "zebra-canary-4471 my email is canary@example.org"
    caplog.set_level(logging.DEBUG)
    settings.SCORING_BREAKER_FAILURES = 1
    items = items_make(secret, secret + " again", secret + " thrice")
    items_triage(item_ids=[items[0].pk])  # scored
    moderation_chain.fail_next("malformed")
    items_triage(item_ids=[items[1].pk])  # failed, unscored, circuit opened
    items_triage(item_ids=[items[2].pk])  # skipped by the open circuit

    assert caplog.records, "scoring logged nothing at all: the check would be empty"
    assert "zebra-canary" not in caplog.text
    assert "canary@example.org" not in caplog.text
