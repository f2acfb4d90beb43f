"""Coverage is a contract (issue 18): every backend says which scores it produces, the rule editor shows it, a rule
reading a score nothing produces is warned about and goes live only with an audited acknowledgement, the reviewer
sees "not scored", and a child-safety guard without its score is a standing incident until coverage returns."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from django.test import Client

from ops_platform.core.models import AuditLog, Policy, User
from queues.models import Queue
from queues.services import item_claim
from routing.models import (
    Backend,
    ClassifierScore,
    IncidentKind,
    RuleAction,
    RuleSetKind,
    RuleSetStatus,
    ScoringIncident,
)
from routing.rules.coverage import ScoresNotProduced, condition_warnings, vocabulary_rows
from routing.rules.lifecycle import RuleData, ruleset_activate, ruleset_approve, ruleset_submit
from routing.scoring.coverage import coverage_incidents_open, coverage_read
from routing.scoring.local_model import LocalClassifier
from routing.scoring.models import ModelVersion
from routing.scoring.openai_backends import OpenAIModeration, OpenAIPolicyClassifier
from routing.scoring.registry import LocalModel, model_promote, model_register
from tests.conftest import PASSWORD
from tests.queues.factories import item_queued
from tests.routing.rules_setup import policy_staff_member, ruleset_drafted

pytestmark = pytest.mark.django_db

GAPS = ("sexual/minors", "self-harm")


def signed_in(user: User) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


def promoted(model: LocalClassifier, *, after: ModelVersion | None = None) -> ModelVersion:
    """Register and promote ``model``; a later version carries the held-out comparison promotion asks for."""
    version = model_register(
        model=model,
        training_data={"baseline": {"version": after.label, "auprc": {"hate": 0.5}}} if after else {},
        metrics={"hate": {"auprc": 0.6}},
        thresholds={},
        known_limits="test model",
        trained_by="test",
    )
    return model_promote(candidate=version, actor="test")


@pytest.fixture
def partial_model(db: None, trained_classifier: LocalClassifier) -> ModelVersion:
    """A real artifact that learned every category of the fixture model but sexual/minors and self-harm."""
    assert set(GAPS) <= set(trained_classifier.categories)
    model = trained_classifier
    keep = [i for i, c in enumerate(model.categories) if c not in GAPS]
    # The stackers read every learned category's base score, then the lexicon scores: drop the gaps' inputs too.
    inputs = keep + list(range(len(model.categories), model.stack_weights.shape[0]))
    partial = dataclasses.replace(
        model,
        categories=[model.categories[i] for i in keep],
        weights=model.weights[:, keep],
        intercepts=model.intercepts[keep],
        stack_weights=model.stack_weights[np.ix_(inputs, keep)],
        stack_intercepts=model.stack_intercepts[keep],
    )
    return promoted(partial)


def test_each_backend_declares_what_it_produces_and_only_when_configured(
    settings: Any, partial_model: ModelVersion, hate_policy: Policy
) -> None:
    local, moderation, llm = LocalModel(), OpenAIModeration(), OpenAIPolicyClassifier()
    assert local.configured() == ""
    assert local.produces([]) == frozenset(partial_model.training_data["categories_learned"])
    assert "hate" in local.produces([])
    assert not set(GAPS) & local.produces([])

    settings.OPENAI_API_KEY = ""
    assert "not configured" in moderation.configured()
    assert moderation.produces([hate_policy]) == frozenset()
    assert "not configured" in llm.configured()
    assert llm.produces([hate_policy]) == frozenset()

    settings.OPENAI_API_KEY = "sk-test"
    assert {"sexual/minors", "self-harm", "hate", "openai:illicit"} <= moderation.produces([])
    assert llm.produces([hate_policy]) == {"policy:hate-speech", "hate", "hate/threatening"}

    ModelVersion.objects.update(status="retired")
    assert "no active local model" in local.configured()
    assert local.produces([]) == frozenset()


def test_the_first_configured_backend_of_a_chain_is_the_one_whose_scores_count(
    settings: Any, partial_model: ModelVersion
) -> None:
    settings.SCORING_DEFAULT_CHAIN = ["openai_moderation", "local"]
    settings.OPENAI_API_KEY = ""
    coverage = coverage_read()
    assert coverage.producers["hate"] == ("local",)
    assert not coverage.produced("sexual/minors")
    [chain] = coverage.chains
    assert [(b.name, b.answers, bool(b.problem)) for b in chain.backends] == [
        ("openai_moderation", False, True),
        ("local", True, False),
    ]

    settings.OPENAI_API_KEY = "sk-test"
    coverage = coverage_read()
    # Moderation answers now; the local model only stands in when it fails.
    assert coverage.producers["hate"] == ("openai_moderation",)
    assert coverage.produced("sexual/minors")


def test_the_editor_marks_each_score_and_the_checker_warns_without_refusing(
    partial_model: ModelVersion, policy_staff: User, intake_queue: Queue
) -> None:
    rows = {name: text for name, _, text in vocabulary_rows(RuleSetKind.INTAKE)}
    assert rows["score.hate"].endswith("produced by local")
    assert rows["score.sexual_minors"].endswith("NOT PRODUCED by any active backend")
    assert condition_warnings(RuleSetKind.INTAKE, "score.self_harm >= 0.5 or score.hate > 0.9") == [
        "score.self_harm: no active backend produces it; the condition reads it as missing (false) for every item"
    ]
    assert condition_warnings(RuleSetKind.INTAKE, "score.hate > 0.9") == []

    client = signed_in(policy_staff)
    body = client.post("/rules/check", {"kind": "intake", "new-condition": "score.self_harm >= 0.5"}).content.decode()
    assert "Valid condition." in body
    assert "Warning: score.self_harm: no active backend produces it" in body
    draft = ruleset_drafted(RuleSetKind.INTAKE, [], author=policy_staff, default_queue=intake_queue)
    saved = client.post(
        f"/rules/{draft.pk}/rules/",
        {
            "new-name": "sh",
            "new-condition": "score.self_harm >= 0.5",
            "new-action": "route",
            "new-queue": str(intake_queue.pk),
            "new-priority": "0",
            "new-required_reviews": "1",
        },
        follow=True,
    )
    assert "Rule &#x27;sh&#x27;: score.self_harm: no active backend produces it" in saved.content.decode()
    page = client.get(f"/rules/{draft.pk}/").content.decode()
    assert "NOT PRODUCED by any active backend" in page
    assert 'data-testid="unproduced"' in page


@pytest.fixture
def submitted(partial_model: ModelVersion, policy_staff: User, intake_queue: Queue) -> Any:
    rules = [
        RuleData("risk", "score.self_harm >= 0.5 or score.hate >= 0.9", RuleAction.ROUTE, queue_id=intake_queue.pk),
        RuleData("csam", "score.sexual_minors >= 0.2", RuleAction.ROUTE, queue_id=intake_queue.pk),
    ]
    draft = ruleset_drafted(RuleSetKind.INTAKE, rules, author=policy_staff, default_queue=intake_queue)
    return ruleset_submit(actor=policy_staff, rule_set=draft)


def test_approving_and_activating_need_every_unproduced_score_acknowledged_and_audited(submitted: Any) -> None:
    priya = policy_staff_member("priya")
    wanted = ["score.self_harm", "score.sexual_minors"]
    with pytest.raises(ScoresNotProduced) as refused:
        ruleset_approve(actor=priya, rule_set=submitted)
    assert "score.self_harm, score.sexual_minors" in refused.value.message
    assert refused.value.extra == {"scores": wanted}
    with pytest.raises(ScoresNotProduced) as refused:
        ruleset_approve(actor=priya, rule_set=submitted, acknowledge=["score.self_harm", "score.hate"])
    assert refused.value.extra == {"scores": ["score.sexual_minors"]}
    submitted.refresh_from_db()
    assert submitted.status == RuleSetStatus.SUBMITTED
    assert not AuditLog.objects.filter(action="ruleset.coverage_acknowledge").exists()

    approved = ruleset_approve(actor=priya, rule_set=submitted, acknowledge=wanted)
    with pytest.raises(ScoresNotProduced):
        ruleset_activate(actor=priya, rule_set=approved)
    assert ruleset_activate(actor=priya, rule_set=approved, acknowledge=wanted).status == RuleSetStatus.ACTIVE

    entries = AuditLog.objects.filter(action="ruleset.coverage_acknowledge").order_by("at")
    assert [(e.actor, e.after["step"], e.after["scores"]) for e in entries] == [
        (priya, "approve", wanted),
        (priya, "activate", wanted),
    ]
    assert all(e.at is not None and e.target_id == str(approved.pk) for e in entries)


def test_a_version_reading_only_produced_scores_needs_no_acknowledgement(
    partial_model: ModelVersion, policy_staff: User, intake_queue: Queue
) -> None:
    rules = [RuleData("hate", "score.hate >= 0.9", RuleAction.ROUTE, queue_id=intake_queue.pk)]
    draft = ruleset_drafted(RuleSetKind.INTAKE, rules, author=policy_staff, default_queue=intake_queue)
    priya = policy_staff_member("priya")
    approved = ruleset_approve(actor=priya, rule_set=ruleset_submit(actor=policy_staff, rule_set=draft))
    assert ruleset_activate(actor=priya, rule_set=approved).status == RuleSetStatus.ACTIVE
    assert not AuditLog.objects.filter(action="ruleset.coverage_acknowledge").exists()


def test_over_http_an_unacknowledged_score_is_a_4xx_naming_it(submitted: Any) -> None:
    priya = policy_staff_member("priya")
    client = signed_in(priya)
    page = client.get(f"/rules/{submitted.pk}/").content.decode()
    assert 'name="acknowledge" value="score.self_harm"' in page

    response = client.post(f"/rules/{submitted.pk}/approve", {"acknowledge": ["score.self_harm"]})
    assert response.status_code == 400
    assert "score.sexual_minors" in response.content.decode()
    submitted.refresh_from_db()
    assert submitted.status == RuleSetStatus.SUBMITTED

    response = client.post(
        f"/rules/{submitted.pk}/approve", {"acknowledge": ["score.self_harm", "score.sexual_minors"]}
    )
    assert response.status_code == 302
    submitted.refresh_from_db()
    assert submitted.status == RuleSetStatus.APPROVED
    assert client.post(f"/rules/{submitted.pk}/activate").status_code == 400
    submitted.refresh_from_db()
    assert submitted.status == RuleSetStatus.APPROVED


def test_the_reviewer_sees_not_scored_for_a_score_the_backend_did_not_give(reviewer: User, intake_queue: Queue) -> None:
    item = item_queued(intake_queue, text="a post")
    ClassifierScore.objects.create(item=item, backend=Backend.LOCAL, model_version="local-v1", scores={"hate": 0.91})
    item_claim(item=item, actor=reviewer)
    html = signed_in(reviewer).get(f"/review/items/{item.pk}/").content.decode()
    assert '<td>hate</td><td class="num high">0.910</td>' in html
    assert '<td>sexual/minors</td><td class="num muted" data-testid="not-scored">not scored</td>' in html
    assert '<td>self-harm</td><td class="num muted" data-testid="not-scored">not scored</td>' in html


def test_a_blind_child_safety_guard_is_a_standing_incident_until_coverage_returns(
    partial_model: ModelVersion, trained_classifier: LocalClassifier, ops_manager: User, reviewer: User
) -> None:
    [incident] = coverage_incidents_open()  # promoting the partial model opened it
    assert incident.kind == IncidentKind.COVERAGE_GAP
    assert "No active backend produces sexual/minors" in incident.message
    ops = signed_in(ops_manager)
    assert 'data-testid="coverage-incident"' in ops.get("/scoring/").content.decode()
    home = ops.get("/").content.decode()
    assert "Standing incident: child-safety guard has no score" in home
    assert "Standing incident" not in signed_in(reviewer).get("/").content.decode()

    promoted(trained_classifier, after=partial_model)  # covers sexual/minors again
    assert coverage_incidents_open() == []
    assert ScoringIncident.objects.get(pk=incident.pk).resolved_at is not None
    assert 'data-testid="coverage-incident"' not in ops.get("/scoring/").content.decode()
    assert "Standing incident" not in ops.get("/").content.decode()


def test_backends_without_a_key_show_not_configured_not_a_closed_circuit(
    settings: Any, partial_model: ModelVersion, ops_manager: User
) -> None:
    settings.OPENAI_API_KEY = ""
    page = signed_in(ops_manager).get("/scoring/")
    states = {b["backend"]: (b["problem"], b["breaker"]) for b in page.context["backends"]}
    assert "OPENAI_API_KEY is not set" in states["openai_moderation"][0]
    assert states["local"] == ("", "closed")
    html = page.content.decode()
    assert html.count("state-unconfigured") == 2
    assert html.count('class="state state-closed"') == 1

    settings.OPENAI_API_KEY = "sk-test"
    html = signed_in(ops_manager).get("/scoring/").content.decode()
    assert "state-unconfigured" not in html
    assert html.count('class="state state-closed"') == 3
