"""Strike settings (docs/accounts.md, "Strike settings"): policy staff set a policy's strike terms, a label's weight
and the thresholds of a family; every other role is refused by the services themselves; every change is audited
with before and after; a switched-off threshold fires no more; a threshold's duration makes its action lift."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import AuditLog, DecisionLabel, Policy, User
from queues.accounts.actions import account_actions_expire
from queues.accounts.models import AccountAction, ActionState, LabelStrikes, PolicyStrikes, Strike, StrikeThreshold
from queues.accounts.settings_services import (
    label_strikes_set,
    policy_strikes_set,
    threshold_create,
    threshold_deactivate,
    threshold_update,
)
from tests.queues.test_accounts import account, decide, hate  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db
URL = "accounts:strike-settings"


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


# --- the services ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["reviewer", "qa_lead", "ops_manager"])
def test_only_policy_staff_may_change_strike_settings_in_the_service(request, persona, hate) -> None:  # noqa: F811
    actor = request.getfixturevalue(persona)
    label = DecisionLabel.objects.create(policy=hate, slug="slur", name="Slur")
    threshold = StrikeThreshold.objects.create(family="abuse", strikes=2, action="warn")
    calls = [
        lambda: policy_strikes_set(
            actor=actor,
            policy=hate,
            family="abuse",
            weight=5,
            expires_after=timedelta(days=1),
            suspension_needs_approval=False,
        ),
        lambda: label_strikes_set(actor=actor, label=label, weight=3),
        lambda: threshold_create(actor=actor, family="abuse", strikes=4, action="suspend"),
        lambda: threshold_update(actor=actor, threshold=threshold, strikes=2, action="warn", is_active=False),
    ]
    for call in calls:
        with pytest.raises(NotPermitted):
            call()
    assert PolicyStrikes.objects.get(policy=hate).weight == 1
    assert not LabelStrikes.objects.exists()
    assert list(StrikeThreshold.objects.values_list("strikes", "is_active")) == [(2, True)]
    assert not AuditLog.objects.filter(action__startswith="strikes.").exists()


def test_policy_terms_are_audited_with_before_and_after(policy_staff, hate) -> None:  # noqa: F811
    policy_strikes_set(
        actor=policy_staff,
        policy=hate,
        family="harassment",
        weight=3,
        expires_after=timedelta(days=90),
        suspension_needs_approval=True,
        reason="align with the new guidelines",
    )
    row = PolicyStrikes.objects.get(policy=hate)
    assert (row.family, row.weight, row.expires_after, row.suspension_needs_approval) == (
        "harassment",
        3,
        timedelta(days=90),
        True,
    )
    audit = AuditLog.objects.get(action="strikes.policy_terms_set")
    assert (audit.actor, audit.target_type, audit.target_id, audit.reason) == (
        policy_staff,
        "core.policy",
        str(hate.pk),
        "align with the new guidelines",
    )
    assert audit.before == {
        "family": "abuse",
        "weight": 1,
        "expires_after_seconds": 30 * 86400,
        "suspension_needs_approval": False,
    }
    assert audit.after == {
        "family": "harassment",
        "weight": 3,
        "expires_after_seconds": 90 * 86400,
        "suspension_needs_approval": True,
    }


def test_a_policy_without_terms_gets_a_row_and_its_defaults_are_the_before(policy_staff) -> None:
    spam = Policy.objects.create(slug="spam", name="Spam", guidelines="No spam.")
    policy_strikes_set(
        actor=policy_staff,
        policy=spam,
        family="spam",
        weight=0,
        expires_after=timedelta(days=7),
        suspension_needs_approval=False,
    )
    assert PolicyStrikes.objects.get(policy=spam).weight == 0
    before = AuditLog.objects.get(action="strikes.policy_terms_set").before
    assert (before["family"], before["weight"]) == ("spam", 1)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"weight": 101}, "weight"),
        ({"expires_after": timedelta(0)}, "expires_after"),
        ({"family": "not a slug!"}, "family"),
    ],
)
def test_bad_policy_terms_are_refused_naming_the_field(policy_staff, hate, fields, field) -> None:  # noqa: F811
    args = {"family": "abuse", "weight": 2, "expires_after": timedelta(days=5), "suspension_needs_approval": False}
    with pytest.raises(ApplicationError) as refused:
        policy_strikes_set(actor=policy_staff, policy=hate, **{**args, **fields})
    assert refused.value.field == field
    assert PolicyStrikes.objects.get(policy=hate).weight == 1


def test_a_labels_weight_is_set_and_cleared_with_audit(intake_queue, reviewer, policy_staff, hate) -> None:  # noqa: F811
    slur = DecisionLabel.objects.create(policy=hate, slug="slur", name="Slur")
    label_strikes_set(actor=policy_staff, label=slur, weight=4)
    decide(intake_queue, reviewer, hate, labels=[slur])
    label_strikes_set(actor=policy_staff, label=slur, weight=None, reason="back to the policy's")
    decide(intake_queue, reviewer, hate, labels=[slur])
    assert sorted(Strike.objects.values_list("weight", flat=True)) == [1, 4]
    audits = AuditLog.objects.filter(action="strikes.label_weight_set").order_by("pk")
    assert [(a.before, a.after) for a in audits] == [
        ({"weight": None}, {"weight": 4}),
        ({"weight": 4}, {"weight": None}),
    ]


def test_thresholds_are_created_changed_and_audited(policy_staff) -> None:
    threshold = threshold_create(
        actor=policy_staff, family="abuse", strikes=3, action="restrict", duration=timedelta(days=7)
    )
    threshold_update(
        actor=policy_staff, threshold=threshold, strikes=4, action="custom", custom_action="mute", reason="softer"
    )
    threshold.refresh_from_db()
    assert (threshold.strikes, threshold.action, threshold.custom_action, threshold.duration) == (
        4,
        "custom",
        "mute",
        None,
    )
    created, changed = AuditLog.objects.filter(action__startswith="strikes.threshold").order_by("pk")
    assert (created.action, created.before, created.target_id) == ("strikes.threshold_created", None, str(threshold.pk))
    assert created.after == {
        "family": "abuse",
        "strikes": 3,
        "action": "restrict",
        "custom_action": "",
        "duration_seconds": 7 * 86400,
        "is_active": True,
    }
    assert changed.before == created.after
    assert changed.after == {**created.after, "strikes": 4, "action": "custom", "custom_action": "mute"} | {
        "duration_seconds": None
    }
    assert changed.reason == "softer"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": "warn", "duration": timedelta(days=1)}, "duration"),
        ({"action": "suspend", "duration": timedelta(days=3651)}, "duration"),
        ({"action": "custom"}, "custom_action"),
        ({"action": "ban"}, "action"),
        ({"strikes": 0}, "strikes"),
        ({"strikes": 2}, "strikes"),  # the family has one at 2 already
        ({"family": "no spaces"}, "family"),
    ],
)
def test_bad_thresholds_are_refused_naming_the_field(policy_staff, fields, field) -> None:
    StrikeThreshold.objects.create(family="abuse", strikes=2, action="warn")
    with pytest.raises(ApplicationError) as refused:
        threshold_create(actor=policy_staff, **{"family": "abuse", "strikes": 5, "action": "suspend", **fields})
    assert refused.value.field == field
    assert StrikeThreshold.objects.count() == 1


def test_a_deactivated_threshold_fires_no_more_and_keeps_its_actions(
    intake_queue,
    reviewer,
    policy_staff,
    hate,  # noqa: F811
) -> None:
    warn = threshold_create(actor=policy_staff, family="abuse", strikes=1, action="warn")
    decide(intake_queue, reviewer, hate)
    assert AccountAction.objects.filter(threshold=warn).count() == 1
    with pytest.raises(ApplicationError):
        threshold_deactivate(actor=policy_staff, threshold=warn, reason=" ")
    threshold_deactivate(actor=policy_staff, threshold=warn, reason="noisy")
    decide(intake_queue, reviewer, hate, author="u-2")
    assert AccountAction.objects.filter(threshold=warn).count() == 1
    audit = AuditLog.objects.get(action="strikes.threshold_changed")
    assert (audit.before["is_active"], audit.after["is_active"]) == (True, False)
    # Put back: it fires again for the next account that crosses it.
    threshold_update(actor=policy_staff, threshold=warn, strikes=1, action="warn", is_active=True)
    decide(intake_queue, reviewer, hate, author="u-3")
    assert AccountAction.objects.filter(threshold=warn).count() == 2


def test_a_threshold_with_a_duration_takes_an_action_that_lifts_itself(
    intake_queue,
    reviewer,
    policy_staff,
    hate,  # noqa: F811
) -> None:
    threshold_create(actor=policy_staff, family="abuse", strikes=2, action="suspend", duration=timedelta(days=3))
    threshold_create(actor=policy_staff, family="abuse", strikes=3, action="restrict")
    decide(intake_queue, reviewer, hate)
    decide(intake_queue, reviewer, hate)
    [suspension] = AccountAction.objects.all()
    assert (suspension.kind, suspension.state, suspension.duration) == (
        "suspend",
        ActionState.IN_FORCE,
        timedelta(days=3),
    )
    assert suspension.expires_at == suspension.effective_at + timedelta(days=3)
    assert account().status == "suspended"
    assert account_actions_expire(at=suspension.expires_at - timedelta(seconds=1)) == 0
    assert account_actions_expire(at=suspension.expires_at) == 1
    suspension.refresh_from_db()
    assert suspension.state == ActionState.EXPIRED
    assert account().status == "active"
    decide(intake_queue, reviewer, hate)  # the restriction has no duration: it stays until reversed
    restriction = AccountAction.objects.get(kind="restrict")
    assert (restriction.duration, restriction.expires_at) == (None, None)


# --- the page -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["reviewer", "qa_lead", "ops_manager", "vendor_reviewer"])
def test_other_roles_are_refused_the_page_and_its_forms(request, persona, hate) -> None:  # noqa: F811
    client = _client(request.getfixturevalue(persona))
    assert client.get(reverse(URL)).status_code == 403
    posted = client.post(
        reverse("accounts:strike-settings-threshold"), {"family": "abuse", "strikes": 2, "action": "warn"}
    )
    assert posted.status_code == 403
    assert not StrikeThreshold.objects.exists()


def test_the_page_lists_terms_labels_and_thresholds_with_their_actions_escaped(
    intake_queue,
    reviewer,
    policy_staff,
    hate,  # noqa: F811
) -> None:
    Policy.objects.filter(pk=hate.pk).update(name="<b>Hate</b>")
    DecisionLabel.objects.create(policy=hate, slug="slur", name="<script>x</script>")
    threshold_create(actor=policy_staff, family="abuse", strikes=1, action="restrict", duration=timedelta(days=2))
    decide(intake_queue, reviewer, hate)
    page = _client(policy_staff).get(reverse(URL))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>x</script>" not in html
    assert 'title="&lt;script&gt;x&lt;/script&gt;"' in html
    assert "&lt;b&gt;Hate&lt;/b&gt;" in html
    assert 'data-policy="hate"' in html
    [row] = page.context["settings"].thresholds["abuse"]
    assert (row.actions_taken, row.duration) == (1, timedelta(days=2))
    assert "2 days" in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert reverse(URL) in _client(policy_staff).get(reverse("home")).content.decode()  # the nav links it


def test_a_threshold_form_saves_and_redirects_with_a_message(policy_staff) -> None:
    client = _client(policy_staff)
    response = client.post(
        reverse("accounts:strike-settings-threshold"),
        {"family": "abuse", "strikes": 3, "action": "suspend", "duration_days": 14, "is_active": "on"},
        follow=True,
    )
    assert response.status_code == 200
    threshold = StrikeThreshold.objects.get()
    assert (threshold.action, threshold.duration, threshold.is_active) == ("suspend", timedelta(days=14), True)
    assert "saved" in response.content.decode()
    # The row's form without the box ticked switches it off.
    client.post(
        reverse("accounts:strike-settings-threshold"),
        {"threshold": threshold.pk, "strikes": 3, "action": "suspend", "duration_days": 14},
    )
    threshold.refresh_from_db()
    assert threshold.is_active is False


def test_policy_and_label_forms_save(policy_staff, hate) -> None:  # noqa: F811
    slur = DecisionLabel.objects.create(policy=hate, slug="slur", name="Slur")
    client = _client(policy_staff)
    saved = client.post(
        reverse("accounts:strike-settings-policy"),
        {"policy": "hate", "family": "abuse", "weight": 2, "expires_days": 60, "suspension_needs_approval": "on"},
    )
    assert saved.status_code == 302
    row = PolicyStrikes.objects.get(policy=hate)
    assert (row.weight, row.expires_after, row.suspension_needs_approval) == (2, timedelta(days=60), True)
    assert client.post(reverse("accounts:strike-settings-label"), {"label": slur.pk, "weight": 5}).status_code == 302
    assert LabelStrikes.objects.get(label=slur).weight == 5


@pytest.mark.parametrize(
    ("url", "data", "field", "message"),
    [
        ("accounts:strike-settings-threshold", {"strikes": 2, "action": "warn"}, "family", "Name the family"),
        (
            "accounts:strike-settings-threshold",
            {"family": "abuse", "strikes": 2, "action": "warn", "duration_days": 3},
            "duration",
            "Only a restriction or a suspension can be for a time.",
        ),
        ("accounts:strike-settings-threshold", {"family": "abuse", "strikes": 0, "action": "warn"}, "strikes", ""),
        (
            "accounts:strike-settings-policy",
            {"policy": "hate", "family": "abuse", "weight": 500, "expires_days": 30},
            "weight",
            "",
        ),
        ("accounts:strike-settings-label", {"label": 999999, "weight": 1}, "label", ""),
    ],
)
def test_a_refused_form_answers_400_naming_the_field(policy_staff, hate, url, data, field, message) -> None:  # noqa: F811
    response = _client(policy_staff).post(reverse(url), data)
    assert response.status_code == 400
    html = response.content.decode()
    assert f'data-field="{field}"' in html
    assert message in html
    assert not StrikeThreshold.objects.exists()
    assert PolicyStrikes.objects.get(policy=hate).weight == 1
