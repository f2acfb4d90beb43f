"""The rule editor over HTTP: who may read, who may change, and bad input answered with a 4xx that names it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from ops_platform.core.models import AuditLog
from routing.models import Rule, RuleAction, RuleSet, RuleSetKind, RuleSetStatus
from routing.rules.lifecycle import RuleData, ruleset_draft_create
from tests.conftest import PASSWORD
from tests.routing.rules_setup import moderation_configured, policy_staff_member, ruleset_live

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _moderation_configured(settings: Any) -> None:
    moderation_configured(settings)


def signed_in(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def draft(policy_staff, intake_queue) -> RuleSet:
    return ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.INTAKE, default_queue=intake_queue)


def new_rule(condition: str, queue_pk: int, name: str = "hate") -> dict[str, str]:
    return {
        "new-name": name,
        "new-condition": condition,
        "new-action": "route",
        "new-queue": str(queue_pk),
        "new-priority": "0",
        "new-required_reviews": "1",
    }


@pytest.mark.parametrize("persona", ["reviewer", "ops_manager", "qa_lead"])
def test_people_with_a_role_read_rules_but_cannot_change_them(request, persona, draft, intake_queue):
    client = signed_in(request.getfixturevalue(persona))
    assert client.get("/rules/").status_code == 200
    assert client.get(f"/rules/{draft.pk}/").status_code == 200
    assert client.get(f"/rules/{draft.pk}/diff/").status_code == 200
    assert client.post("/rules/new", {"kind": "intake"}).status_code == 403
    assert client.post(f"/rules/{draft.pk}/rules/", new_rule("score.hate > 0.5", intake_queue.pk)).status_code == 403
    assert client.post(f"/rules/{draft.pk}/submit").status_code == 403
    assert not Rule.objects.exists()


def test_someone_without_a_role_cannot_even_read(outsider, draft):
    client = signed_in(outsider)
    assert client.get("/rules/").status_code == 403
    assert client.get(f"/rules/{draft.pk}/").status_code == 403


def test_anonymous_visitors_are_sent_to_sign_in(client, draft):
    response = client.get(f"/rules/{draft.pk}/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_a_rule_with_an_error_is_refused_with_its_position_and_nothing_is_saved(policy_staff, draft, intake_queue):
    client = signed_in(policy_staff)
    response = client.post(f"/rules/{draft.pk}/rules/", new_rule('score.hate > 0.5 and\n  kind = "x"', intake_queue.pk))
    assert response.status_code == 400
    assert "line 2, column 8: unexpected character &#x27;=&#x27;" in response.content.decode()
    assert not Rule.objects.exists()

    response = client.post(f"/rules/{draft.pk}/rules/", new_rule("score.hate > 0.5", intake_queue.pk))
    assert response.status_code == 302
    assert Rule.objects.get().condition == "score.hate > 0.5"


def test_live_validation_names_the_problem_and_escapes_the_input(policy_staff):
    client = signed_in(policy_staff)
    response = client.post("/rules/check", {"kind": "intake", "new-condition": 'kind == "<b>x</b>" and score.hat > 1'})
    body = response.content.decode()
    assert response.status_code == 200
    assert "unknown score &#x27;hat&#x27;; did you mean hate?" in body
    assert "<b>" not in body
    ok = client.post("/rules/check", {"kind": "escalation", "r1-condition": "overdue_minutes > 30"})
    assert "Valid condition." in ok.content.decode()


def test_the_author_cannot_approve_over_http(policy_staff, draft, intake_queue):
    client = signed_in(policy_staff)
    client.post(f"/rules/{draft.pk}/rules/", new_rule("score.hate > 0.5", intake_queue.pk))
    client.post(f"/rules/{draft.pk}/submit")
    response = client.post(f"/rules/{draft.pk}/approve", follow=True)
    assert "different policy-staff member" in response.content.decode()
    draft.refresh_from_db()
    assert draft.status == RuleSetStatus.SUBMITTED


def test_a_colleague_who_added_a_rule_cannot_approve_over_http(policy_staff, admin_user, draft, intake_queue):
    priya = policy_staff_member("priya")
    signed_in(policy_staff).post(f"/rules/{draft.pk}/rules/", new_rule("score.hate > 0.5", intake_queue.pk))
    colleague = signed_in(priya)
    added = colleague.post(f"/rules/{draft.pk}/rules/", new_rule("score.violence > 0.5", intake_queue.pk, "violence"))
    assert added.status_code == 302
    assert signed_in(policy_staff).post(f"/rules/{draft.pk}/submit").status_code == 302

    page = colleague.get(f"/rules/{draft.pk}/").content.decode()
    assert 'data-testid="approve"' not in page
    assert "pat, priya" in page
    response = colleague.post(f"/rules/{draft.pk}/approve", follow=True)
    assert "different policy-staff member than its author" in response.content.decode()
    draft.refresh_from_db()
    assert draft.status == RuleSetStatus.SUBMITTED
    signed_in(admin_user).post(f"/rules/{draft.pk}/approve")
    draft.refresh_from_db()
    assert draft.status == RuleSetStatus.APPROVED


def test_rollback_names_the_version_it_restores_and_acts_only_on_that_confirmed_name(policy_staff, intake_queue):
    priya = policy_staff_member("priya")
    first, second = (
        ruleset_live(
            RuleSetKind.INTAKE,
            [RuleData(f"r{n}", "score.hate > 0.5", RuleAction.ROUTE, queue_id=intake_queue.pk)],
            author=policy_staff,
            approver=priya,
            default_queue=intake_queue,
        )
        for n in range(2)
    )
    client = signed_in(priya)
    index = client.get("/rules/").content.decode()
    assert f"Roll back to v{first.version}…" in index
    assert 'action="/rules/rollback/intake"' in index
    assert 'method="get" action="/rules/rollback/intake"' in index  # the list only leads to the confirmation

    page = client.get("/rules/rollback/intake")
    body = page.content.decode()
    assert page.status_code == 200
    assert f"makes <strong>v{first.version}</strong> live again and retires <strong>v{second.version}</strong>" in body
    assert f'name="to_version" value="{first.version}"' in body
    unnamed = client.post("/rules/rollback/intake", {"reason": "noisy"})
    assert unnamed.status_code == 400
    assert 'data-field="to_version"' in unnamed.content.decode()
    stale = client.post("/rules/rollback/intake", {"to_version": str(second.version), "reason": "noisy"})
    assert stale.status_code == 409
    assert signed_in(policy_staff_member("rex")).get("/rules/rollback/nonsense").status_code == 404
    second.refresh_from_db()
    assert second.status == RuleSetStatus.ACTIVE

    done = client.post("/rules/rollback/intake", {"to_version": str(first.version), "reason": "noisy"})

    assert done.status_code == 302
    first.refresh_from_db()
    assert first.status == RuleSetStatus.ACTIVE
    assert AuditLog.objects.get(action="ruleset.rollback").reason == "noisy"


def test_an_unknown_step_is_refused(policy_staff, draft):
    assert signed_in(policy_staff).post(f"/rules/{draft.pk}/explode").status_code == 403
