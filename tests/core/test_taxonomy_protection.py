"""Decisions never change under them: a label, action or policy a decision carries is retired, never deleted
(in code or in the admin), retired ones are refused for new decisions, and admin audit rows hold the real
before and after, inline rows and many-to-many included."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import ProtectedError
from django.test import Client
from django.urls import reverse

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import AuditLog, DecisionLabel, EnforcementAction, Policy, User
from queues.models import Decision, Queue
from queues.services import decision_record, item_claim
from tests.conftest import PASSWORD
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db


@pytest.fixture
def hate(intake_queue: Queue) -> tuple[Policy, DecisionLabel, EnforcementAction]:
    policy = Policy.objects.create(slug="hate", name="Hate", guidelines="No slurs.")
    label = DecisionLabel.objects.create(policy=policy, slug="slur", name="Slur")
    remove = EnforcementAction.objects.create(slug="remove", name="Remove", strength=2)
    policy.enforcement_actions.add(remove)
    intake_queue.policies.add(policy)
    return policy, label, remove


def decided(queue: Queue, reviewer: User, policy: Policy, label: DecisionLabel, action: EnforcementAction) -> Decision:
    item = item_queued(queue)
    item_claim(item=item, actor=reviewer)
    return decision_record(
        item=item, actor=reviewer, is_violation=True, policy=policy, labels=[label], action=action
    ).decision


def admin_http(admin_user: User) -> Client:
    http = Client()
    http.force_login(admin_user, backend="django.contrib.auth.backends.ModelBackend")
    return http


def policy_form(policy: Policy, labels: list[dict[str, Any]], actions: list[EnforcementAction]) -> dict[str, Any]:
    """The admin's change form for ``policy`` as a browser posts it, its labels inline."""
    data: dict[str, Any] = {
        "slug": policy.slug,
        "name": policy.name,
        "severity": policy.severity,
        "guidelines": policy.guidelines,
        "classifier_categories": "[]",
        "classifier_chain": "[]",
        "enforcement_actions": [a.pk for a in actions],
        "is_active": "on",
        "labels-TOTAL_FORMS": len(labels),
        "labels-INITIAL_FORMS": sum(1 for row in labels if row.get("id")),
        "labels-MIN_NUM_FORMS": 0,
        "labels-MAX_NUM_FORMS": 1000,
    }
    for n, row in enumerate(labels):
        data |= {f"labels-{n}-{key}": value for key, value in {"policy": policy.pk, "is_active": "on", **row}.items()}
    return data


def test_a_label_action_or_policy_a_decision_carries_cannot_be_deleted(
    intake_queue: Queue, reviewer: User, hate: tuple[Policy, DecisionLabel, EnforcementAction]
):
    policy, label, remove = hate
    decision = decided(intake_queue, reviewer, policy, label, remove)

    for used in (label, remove, policy):
        with pytest.raises(ProtectedError):
            used.delete()

    assert list(Decision.objects.get(pk=decision.pk).labels.values_list("slug", flat=True)) == ["slur"]
    unused = DecisionLabel.objects.create(policy=policy, slug="unused", name="Unused")
    unused.delete()  # nothing carries it: it may go


def test_retired_labels_and_actions_are_refused_and_not_offered(
    intake_queue: Queue, reviewer: User, hate: tuple[Policy, DecisionLabel, EnforcementAction]
):
    policy, label, remove = hate
    warn = EnforcementAction.objects.create(slug="warn", name="Warn user", strength=1)
    policy.enforcement_actions.add(warn)
    other = DecisionLabel.objects.create(policy=policy, slug="dog-whistle", name="Dog whistle")
    DecisionLabel.objects.filter(pk=label.pk).update(is_active=False)
    EnforcementAction.objects.filter(pk=remove.pk).update(is_active=False)
    label.refresh_from_db()
    remove.refresh_from_db()
    item = item_queued(intake_queue)
    item_claim(item=item, actor=reviewer)

    with pytest.raises(ApplicationError, match="Label 'slur' is retired") as refused:
        decision_record(item=item, actor=reviewer, is_violation=True, policy=policy, labels=[label], action=warn)
    assert refused.value.field == "labels"
    with pytest.raises(ApplicationError, match="Action 'remove' is retired") as refused:
        decision_record(item=item, actor=reviewer, is_violation=True, policy=policy, labels=[other], action=remove)
    assert refused.value.field == "action"

    http = Client()
    http.login(username=reviewer.username, password=PASSWORD)
    page = http.get(reverse("review-item", args=[item.pk])).content.decode()
    assert "Dog whistle" in page
    assert "Warn user" in page
    assert "Slur" not in page
    assert "hate: Remove" not in page
    response = http.post(
        reverse("review-decide", args=[item.pk]),
        {"violation": "yes", "policy": policy.pk, "labels": [label.pk], "action": warn.pk},
        follow=True,
    )
    assert "Label &#x27;slur&#x27; is retired" in response.content.decode()
    assert not Decision.objects.filter(item=item).exists()


def test_the_admin_will_not_delete_a_label_decisions_carry_and_offers_retiring_it(
    admin_user: User,
    intake_queue: Queue,
    reviewer: User,
    hate: tuple[Policy, DecisionLabel, EnforcementAction],
):
    policy, label, remove = hate
    decision = decided(intake_queue, reviewer, policy, label, remove)
    http = admin_http(admin_user)
    url = reverse("admin:core_policy_change", args=[policy.pk])
    row = {"id": label.pk, "slug": "slur", "name": "Slur", "is_violation": "on"}

    response = http.post(url, policy_form(policy, [{**row, "DELETE": "on"}], [remove]))

    assert response.status_code == 200  # the form again, with the refusal
    assert "would require deleting the following protected related objects" in response.content.decode()
    assert DecisionLabel.objects.filter(pk=label.pk).exists()
    assert list(Decision.objects.get(pk=decision.pk).labels.all()) == [label]
    assert not AuditLog.objects.filter(action__startswith="admin.").exists()

    retired = http.post(url, policy_form(policy, [{**row, "is_active": ""}], [remove]))
    assert retired.status_code == 302
    assert DecisionLabel.objects.get(pk=label.pk).is_active is False
    assert list(Decision.objects.get(pk=decision.pk).labels.all()) == [label]


def test_the_admin_offers_no_delete_for_an_action_or_policy_in_use(
    admin_user: User,
    intake_queue: Queue,
    reviewer: User,
    hate: tuple[Policy, DecisionLabel, EnforcementAction],
):
    policy, label, remove = hate
    decided(intake_queue, reviewer, policy, label, remove)
    unused = EnforcementAction.objects.create(slug="nothing", name="Nothing", strength=0)
    http = admin_http(admin_user)

    assert (
        http.post(reverse("admin:core_enforcementaction_delete", args=[remove.pk]), {"post": "yes"}).status_code == 403
    )
    assert http.post(reverse("admin:core_policy_delete", args=[policy.pk]), {"post": "yes"}).status_code == 403
    bulk = http.post(
        reverse("admin:core_enforcementaction_changelist"),
        {"action": "delete_selected", "_selected_action": [remove.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert EnforcementAction.objects.filter(pk=remove.pk).exists()
    assert Policy.objects.filter(pk=policy.pk).exists()

    assert (
        http.post(reverse("admin:core_enforcementaction_delete", args=[unused.pk]), {"post": "yes"}).status_code == 302
    )
    entry = AuditLog.objects.get(action="admin.delete")
    assert (entry.target_type, entry.target_id, entry.before["slug"]) == (
        "core.enforcementaction",
        str(unused.pk),
        "nothing",
    )


def test_admin_audit_rows_hold_the_real_before_and_after(
    admin_user: User, hate: tuple[Policy, DecisionLabel, EnforcementAction]
):
    policy, label, remove = hate
    warn = EnforcementAction.objects.create(slug="warn", name="Warn user", strength=1)
    http = admin_http(admin_user)
    form = policy_form(policy, [{"id": label.pk, "slug": "slur", "name": "Slur (any language)"}], [warn])
    form["name"] = "Hate speech"

    response = http.post(reverse("admin:core_policy_change", args=[policy.pk]), form)

    assert response.status_code == 302
    entry = AuditLog.objects.get(action="admin.change", target_type="core.policy")
    assert entry.actor == admin_user
    assert (entry.before["name"], entry.after["name"]) == ("Hate", "Hate speech")
    assert (entry.before["enforcement_actions"], entry.after["enforcement_actions"]) == ([remove.pk], [warn.pk])
    assert [row["name"] for row in entry.before["labels"]] == ["Slur"]
    assert [row["name"] for row in entry.after["labels"]] == ["Slur (any language)"]
    assert entry.before != entry.after
