"""Rule set versions: drafted, submitted, approved by a second person, activated, rolled back, audited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from ops_platform.core.errors import ApplicationError, Conflict, NotPermitted
from ops_platform.core.models import AuditLog, DecisionLabel, EnforcementAction, Policy, Severity, User
from queues.models import Queue
from routing.models import Rule, RuleAction, RuleSet, RuleSetEditor, RuleSetKind, RuleSetStatus
from routing.rules.language import Problem
from routing.rules.lifecycle import (
    RuleData,
    RuleInvalid,
    rule_delete,
    rule_move,
    rule_save,
    rule_validate,
    ruleset_activate,
    ruleset_approve,
    ruleset_diff,
    ruleset_draft_create,
    ruleset_reject,
    ruleset_rollback,
    ruleset_shadow,
    ruleset_submit,
    ruleset_update,
)
from tests.routing.rules_setup import moderation_configured, policy_staff_member, ruleset_drafted, ruleset_live

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _moderation_configured(settings: Any) -> None:
    moderation_configured(settings)


@pytest.fixture
def priya(db: None) -> User:
    """A second policy-staff member, to approve what pat writes."""
    return policy_staff_member("priya")


@pytest.fixture
def hate_queue(db: None) -> Queue:
    return Queue.objects.create(slug="hate", name="Hate speech")


@pytest.fixture
def remove(db: None) -> EnforcementAction:
    return EnforcementAction.objects.create(slug="remove", name="Remove", strength=2)


def route(name: str, condition: str, queue: Queue) -> RuleData:
    return RuleData(name=name, condition=condition, action=RuleAction.ROUTE, queue_id=queue.pk)


def auto(name: str, condition: str, policy: Policy, action: EnforcementAction, daily_cap: int | None) -> RuleData:
    return RuleData(
        name=name,
        condition=condition,
        action=RuleAction.AUTO_ACTION,
        policy_id=policy.pk,
        enforcement_action_id=action.pk,
        daily_cap=daily_cap,
    )


@pytest.fixture
def draft(policy_staff: User, intake_queue: Queue, hate_queue: Queue) -> RuleSet:
    """pat's intake draft: high hate scores to the hate queue."""
    return ruleset_drafted(
        RuleSetKind.INTAKE,
        [route("hate", "score.hate >= 0.8", hate_queue)],
        author=policy_staff,
        default_queue=intake_queue,
    )


@pytest.fixture
def publish(policy_staff: User, priya: User, intake_queue: Queue, hate_queue: Queue) -> Callable[..., RuleSet]:
    """Take a one-rule version live: written and submitted by pat, approved and activated by priya."""

    def make(threshold: float = 0.8, kind: str = RuleSetKind.INTAKE) -> RuleSet:
        rules = [route("hate", f"score.hate >= {threshold}", hate_queue)]
        return ruleset_live(kind, rules, author=policy_staff, approver=priya, default_queue=intake_queue)

    return make


def audit_actions(target: RuleSet | Rule) -> list[str]:
    return list(
        AuditLog.objects.filter(target_type=target._meta.label_lower, target_id=str(target.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


# --- the approval path -------------------------------------------------------------------------------


def test_a_version_goes_live_once_a_second_policy_staff_member_approves(
    policy_staff: User, priya: User, intake_queue: Queue, hate_queue: Queue
):
    draft = ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.INTAKE, default_queue=intake_queue)
    rule = rule_save(actor=policy_staff, rule_set=draft, data=route("hate", "score.hate >= 0.8", hate_queue))

    submitted = ruleset_submit(actor=policy_staff, rule_set=draft, change_note="hate to its own queue")
    assert submitted.status == RuleSetStatus.SUBMITTED
    approved = ruleset_approve(actor=priya, rule_set=submitted)
    assert approved.status == RuleSetStatus.APPROVED
    active = ruleset_activate(actor=priya, rule_set=approved)

    active.refresh_from_db()
    assert active.status == RuleSetStatus.ACTIVE
    assert (active.created_by, active.submitted_by, active.approved_by, active.activated_by) == (
        policy_staff,
        policy_staff,
        priya,
        priya,
    )
    assert active.change_note == "hate to its own queue"
    assert audit_actions(active) == ["ruleset.draft", "ruleset.submit", "ruleset.approve", "ruleset.activate"]
    assert audit_actions(rule) == ["rule.save"]
    actors = AuditLog.objects.filter(target_type="routing.ruleset", target_id=str(active.pk)).order_by("id")
    assert [entry.actor for entry in actors] == [policy_staff, policy_staff, priya, priya]


def test_the_author_cannot_approve_their_own_version(policy_staff: User, draft: RuleSet):
    ruleset_submit(actor=policy_staff, rule_set=draft)

    with pytest.raises(NotPermitted, match="different policy-staff member than its author"):
        ruleset_approve(actor=policy_staff, rule_set=draft)

    draft.refresh_from_db()
    assert draft.status == RuleSetStatus.SUBMITTED
    assert draft.approved_by is None
    assert "ruleset.approve" not in audit_actions(draft)


def test_whoever_submitted_cannot_approve_either(policy_staff: User, priya: User, admin_user: User, draft: RuleSet):
    ruleset_submit(actor=priya, rule_set=draft)

    with pytest.raises(NotPermitted):
        ruleset_approve(actor=priya, rule_set=draft)
    with pytest.raises(NotPermitted):
        ruleset_approve(actor=policy_staff, rule_set=draft)

    assert ruleset_approve(actor=admin_user, rule_set=draft).approved_by == admin_user


@pytest.mark.parametrize("act", ["rule.save", "rule.edit", "rule.delete", "rule.move", "ruleset.update"])
def test_whoever_wrote_any_part_of_the_version_cannot_approve_it(
    act: str, policy_staff: User, priya: User, admin_user: User, draft: RuleSet, hate_queue: Queue
):
    """pat drafts; priya adds, edits, deletes or moves one rule or changes the version's note; pat submits:
    priya may not approve what she helped write, someone who wrote none of it may."""
    second = rule_save(actor=policy_staff, rule_set=draft, data=route("violence", "score.violence >= 0.9", hate_queue))
    if act == "rule.save":
        rule_save(actor=priya, rule_set=draft, data=route("harass", "score.harassment >= 0.9", hate_queue))
    elif act == "rule.edit":
        rule_save(actor=priya, rule_set=draft, rule=second, data=route("violence", "score.violence >= 0.1", hate_queue))
    elif act == "rule.delete":
        rule_delete(actor=priya, rule=second)
    elif act == "rule.move":
        rule_move(actor=priya, rule=second, offset=-1)
    else:
        ruleset_update(actor=priya, rule_set=draft, title="Tighter", change_note="", default_queue=draft.default_queue)
    ruleset_submit(actor=policy_staff, rule_set=draft)

    with pytest.raises(NotPermitted, match="different policy-staff member than its author"):
        ruleset_approve(actor=priya, rule_set=draft)

    draft.refresh_from_db()
    assert draft.status == RuleSetStatus.SUBMITTED
    assert "ruleset.approve" not in audit_actions(draft)
    assert ruleset_approve(actor=admin_user, rule_set=draft).approved_by == admin_user


def test_every_writer_of_a_version_is_recorded_with_what_they_did(
    policy_staff: User, priya: User, admin_user: User, publish: Callable[..., RuleSet], hate_queue: Queue
):
    live = publish()
    copy = ruleset_draft_create(actor=priya, kind=RuleSetKind.INTAKE, based_on=live)
    rule_save(actor=policy_staff, rule_set=copy, data=route("spam", "score.hate >= 0.99", hate_queue))
    rule_move(actor=policy_staff, rule=copy.rules.get(name="spam"), offset=-1)
    ruleset_submit(actor=admin_user, rule_set=copy)

    editors = {e.user.username: e.acts for e in RuleSetEditor.objects.filter(rule_set=copy)}
    assert editors == {"priya": ["ruleset.draft"], "pat": ["rule.save", "rule.move"], "ada": ["ruleset.submit"]}
    for writer in (priya, policy_staff, admin_user):
        with pytest.raises(NotPermitted):
            ruleset_approve(actor=writer, rule_set=copy)


@pytest.mark.parametrize("step", ["draft", "submitted", "rejected"])
def test_a_version_never_approved_cannot_be_activated(step: str, policy_staff: User, priya: User, draft: RuleSet):
    if step != "draft":
        ruleset_submit(actor=policy_staff, rule_set=draft)
    if step == "rejected":
        ruleset_reject(actor=priya, rule_set=draft, reason="too broad")

    with pytest.raises(Conflict, match="cannot be activated"):
        ruleset_activate(actor=priya, rule_set=draft)

    assert not RuleSet.objects.filter(status=RuleSetStatus.ACTIVE).exists()


def test_a_rejection_says_why(policy_staff: User, priya: User, draft: RuleSet):
    ruleset_submit(actor=policy_staff, rule_set=draft)

    with pytest.raises(ApplicationError, match="Say why"):
        ruleset_reject(actor=priya, rule_set=draft, reason="  ")
    ruleset_reject(actor=priya, rule_set=draft, reason="too broad")

    entry = AuditLog.objects.get(action="ruleset.reject", target_id=str(draft.pk))
    assert entry.reason == "too broad"


@pytest.mark.parametrize("persona", ["reviewer", "outsider", "ops_manager"])
def test_people_who_are_not_policy_staff_cannot_draft(persona: str, request: pytest.FixtureRequest):
    actor: User = request.getfixturevalue(persona)

    with pytest.raises(NotPermitted, match="Only policy staff may draft rule sets"):
        ruleset_draft_create(actor=actor, kind=RuleSetKind.INTAKE)

    assert not RuleSet.objects.exists()
    assert not AuditLog.objects.filter(action="ruleset.draft").exists()


def test_a_reviewer_cannot_approve(policy_staff: User, reviewer: User, draft: RuleSet):
    ruleset_submit(actor=policy_staff, rule_set=draft)

    with pytest.raises(NotPermitted):
        ruleset_approve(actor=reviewer, rule_set=draft)


# --- drafts and what may change ---------------------------------------------------------------------


def test_a_rule_with_a_syntax_error_is_not_saved(policy_staff: User, hate_queue: Queue):
    draft = ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.INTAKE)

    with pytest.raises(RuleInvalid) as caught:
        rule_save(actor=policy_staff, rule_set=draft, data=route("hate", "surface == 'dm'", hate_queue))

    assert caught.value.field == "condition"
    assert caught.value.problems == {
        "condition": ['line 1, column 12: unexpected character "\'" (strings use double quotes)']
    }
    assert caught.value.syntax == [Problem(1, 12, 'unexpected character "\'" (strings use double quotes)')]
    assert not Rule.objects.exists()
    assert not AuditLog.objects.filter(action="rule.save").exists()


def test_every_wrong_field_of_a_rule_is_named(policy_staff: User):
    draft = ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.INTAKE)
    data = RuleData(name="has space", condition="score.haet > 0.5", action=RuleAction.ROUTE, required_reviews=9)

    with pytest.raises(RuleInvalid) as caught:
        rule_save(actor=policy_staff, rule_set=draft, data=data)

    assert set(caught.value.problems) == {"name", "condition", "queue", "required_reviews"}
    assert caught.value.problems["condition"] == ["line 1, column 1: unknown score 'haet'; did you mean hate?"]
    assert not Rule.objects.exists()


def test_policy_scores_are_part_of_the_vocabulary(spam_policy: Policy, hate_queue: Queue):
    rule_validate(RuleSetKind.INTAKE, route("spam", 'score["policy:spam-scam"] > 0.9', hate_queue))

    with pytest.raises(RuleInvalid, match="unknown score 'policy:unknown'"):
        rule_validate(RuleSetKind.INTAKE, route("spam", 'score["policy:unknown"] > 0.9', hate_queue))


@pytest.mark.parametrize("step", ["submitted", "approved", "active"])
def test_a_version_past_draft_cannot_be_edited(
    step: str, policy_staff: User, priya: User, intake_queue: Queue, hate_queue: Queue
):
    version = ruleset_drafted(
        RuleSetKind.INTAKE,
        [route("hate", "score.hate >= 0.8", hate_queue), route("violence", "score.violence >= 0.8", hate_queue)],
        author=policy_staff,
        default_queue=intake_queue,
    )
    ruleset_submit(actor=policy_staff, rule_set=version)
    if step in ("approved", "active"):
        ruleset_approve(actor=priya, rule_set=version)
    if step == "active":
        ruleset_activate(actor=priya, rule_set=version)
    hate = version.rules.get(name="hate")

    with pytest.raises(Conflict, match="only drafts change"):
        rule_save(actor=policy_staff, rule_set=version, rule=hate, data=route("hate", "score.hate >= 0.1", hate_queue))
    with pytest.raises(Conflict):
        rule_save(actor=policy_staff, rule_set=version, data=route("new", "score.hate >= 0.1", hate_queue))
    with pytest.raises(Conflict):
        rule_delete(actor=policy_staff, rule=hate)
    with pytest.raises(Conflict):
        rule_move(actor=policy_staff, rule=hate, offset=1)

    assert list(version.rules.order_by("position").values_list("name", "condition")) == [
        ("hate", "score.hate >= 0.8"),
        ("violence", "score.violence >= 0.8"),
    ]


def test_a_draft_cannot_run_in_shadow(policy_staff: User):
    draft = ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.INTAKE)

    with pytest.raises(Conflict, match="cannot be run in shadow"):
        ruleset_shadow(actor=policy_staff, rule_set=draft, on=True)


def test_an_empty_draft_or_one_without_a_default_queue_is_not_submitted(
    policy_staff: User, intake_queue: Queue, hate_queue: Queue
):
    empty = ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.INTAKE, default_queue=intake_queue)
    with pytest.raises(ApplicationError, match="at least one rule"):
        ruleset_submit(actor=policy_staff, rule_set=empty)

    no_default = ruleset_drafted(
        RuleSetKind.INTAKE, [route("hate", "score.hate >= 0.8", hate_queue)], author=policy_staff
    )
    with pytest.raises(ApplicationError, match="default queue"):
        ruleset_submit(actor=policy_staff, rule_set=no_default)


# --- activation, rollback --------------------------------------------------------------------------


def test_activating_a_new_version_retires_the_old_one(publish: Callable[..., RuleSet]):
    first = publish()
    second = publish(0.6)

    first.refresh_from_db()
    assert (first.status, second.status) == (RuleSetStatus.RETIRED, RuleSetStatus.ACTIVE)
    assert RuleSet.objects.filter(kind=RuleSetKind.INTAKE, status=RuleSetStatus.ACTIVE).count() == 1
    entry = AuditLog.objects.get(action="ruleset.activate", target_id=str(second.pk))
    assert (entry.before, entry.after) == ({"active_version": first.version}, {"active_version": second.version})


def test_rollback_reactivates_the_previous_version_in_one_step(priya: User, publish: Callable[..., RuleSet]):
    first = publish()
    second = publish(0.6)

    restored = ruleset_rollback(
        actor=priya, kind=RuleSetKind.INTAKE, to_version=first.version, reason="too many false positives"
    )

    first.refresh_from_db()
    second.refresh_from_db()
    assert restored.pk == first.pk
    assert (first.status, second.status) == (RuleSetStatus.ACTIVE, RuleSetStatus.RETIRED)
    assert RuleSet.objects.filter(kind=RuleSetKind.INTAKE, status=RuleSetStatus.ACTIVE).count() == 1
    entry = AuditLog.objects.get(action="ruleset.rollback")
    assert entry.target_id == str(first.pk)
    assert entry.reason == "too many false positives"
    assert (entry.before, entry.after) == ({"active_version": second.version}, {"active_version": first.version})


def test_rollback_with_no_earlier_version_is_refused(priya: User, publish: Callable[..., RuleSet]):
    only = publish()

    with pytest.raises(Conflict, match="nothing to roll back to"):
        ruleset_rollback(actor=priya, kind=RuleSetKind.INTAKE, to_version=only.version)

    only.refresh_from_db()
    assert only.status == RuleSetStatus.ACTIVE


def test_rollback_restores_only_the_version_it_was_told_to(
    priya: User, reviewer: User, publish: Callable[..., RuleSet]
):
    first, second, third = publish(0.9), publish(0.8), publish(0.7)

    for named in (first.version, third.version, 99):
        with pytest.raises(Conflict, match=f"restores v{second.version}, not v{named}") as refused:
            ruleset_rollback(actor=priya, kind=RuleSetKind.INTAKE, to_version=named)
        assert refused.value.field == "to_version"
    with pytest.raises(NotPermitted):
        ruleset_rollback(actor=reviewer, kind=RuleSetKind.INTAKE, to_version=second.version)
    third.refresh_from_db()
    assert third.status == RuleSetStatus.ACTIVE
    assert not AuditLog.objects.filter(action="ruleset.rollback").exists()

    restored = ruleset_rollback(actor=priya, kind=RuleSetKind.INTAKE, to_version=second.version)

    assert restored.pk == second.pk
    assert AuditLog.objects.get(action="ruleset.rollback").reason == f"rollback to v{second.version}"


def test_kinds_are_activated_independently(publish: Callable[..., RuleSet]):
    intake = publish()
    appeals = publish(kind=RuleSetKind.APPEALS)

    intake.refresh_from_db()
    assert (intake.status, appeals.status) == (RuleSetStatus.ACTIVE, RuleSetStatus.ACTIVE)
    assert (intake.version, appeals.version) == (1, 1)


def test_the_database_refuses_a_second_active_version_of_a_kind(policy_staff: User, publish: Callable[..., RuleSet]):
    publish()
    other = ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.INTAKE)

    with pytest.raises(IntegrityError), transaction.atomic():
        RuleSet.objects.filter(pk=other.pk).update(status=RuleSetStatus.ACTIVE)


# --- auto-action guards ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy_fields", "message"),
    [
        ({"human_review_only": True}, "Policy 'csam' is human-review only: its items always go to people."),
        (
            {"classifier_categories": ["sexual/minors"]},
            "Policy 'csam' covers sexual content involving minors: it is never auto-actioned.",
        ),
        ({"severity": Severity.CRITICAL}, "Policy 'csam' is of critical severity: it is never auto-actioned."),
    ],
)
def test_child_safety_policies_are_never_auto_actioned(
    policy_fields: dict[str, object], message: str, policy_staff: User, remove: EnforcementAction
):
    policy = Policy.objects.create(slug="csam", name="Child safety", guidelines="-", **policy_fields)
    policy.enforcement_actions.add(remove)
    draft = ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.INTAKE)
    data = auto("csam-auto", 'score["sexual/minors"] >= 0.99', policy, remove, daily_cap=10)

    with pytest.raises(RuleInvalid) as caught:
        rule_validate(RuleSetKind.INTAKE, data)
    assert caught.value.problems == {"policy": [message]}
    with pytest.raises(RuleInvalid):
        rule_save(actor=policy_staff, rule_set=draft, data=data)
    assert not Rule.objects.exists()


@pytest.mark.parametrize("daily_cap", [None, 0])
def test_an_auto_action_needs_a_daily_cap(daily_cap: int | None, spam_policy: Policy, remove: EnforcementAction):
    spam_policy.enforcement_actions.add(remove)

    with pytest.raises(RuleInvalid) as caught:
        rule_validate(RuleSetKind.INTAKE, auto("spam-auto", "score.hate >= 0.99", spam_policy, remove, daily_cap))

    assert caught.value.problems == {"daily_cap": ["An auto-action needs a daily cap of at least 1."]}


def test_an_auto_action_with_a_cap_and_an_action_of_its_policy_is_valid(spam_policy: Policy, remove: EnforcementAction):
    spam_policy.enforcement_actions.add(remove)

    rule_validate(RuleSetKind.INTAKE, auto("spam-auto", "score.hate >= 0.99", spam_policy, remove, daily_cap=50))


def test_an_auto_action_must_use_an_action_of_its_policy(spam_policy: Policy, remove: EnforcementAction):
    with pytest.raises(RuleInvalid) as caught:
        rule_validate(RuleSetKind.INTAKE, auto("spam-auto", "score.hate >= 0.99", spam_policy, remove, 50))

    assert caught.value.problems == {"enforcement_action": ["'remove' is not an action of policy 'spam-scam'."]}


def test_appeals_rules_cannot_auto_action(spam_policy: Policy, remove: EnforcementAction):
    spam_policy.enforcement_actions.add(remove)

    with pytest.raises(RuleInvalid) as caught:
        rule_validate(RuleSetKind.APPEALS, auto("spam-auto", "score.hate >= 0.99", spam_policy, remove, 50))

    assert list(caught.value.problems) == ["action"]


# --- reading versions --------------------------------------------------------------------------------


def test_the_diff_shows_a_changed_condition_as_removed_and_added_lines(
    policy_staff: User, priya: User, intake_queue: Queue, hate_queue: Queue
):
    first = ruleset_live(
        RuleSetKind.INTAKE,
        [route("hate", "score.hate >= 0.8", hate_queue), route("dm", 'surface == "dm"', hate_queue)],
        author=policy_staff,
        approver=priya,
        default_queue=intake_queue,
    )
    second = ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.INTAKE)
    assert second.based_on == first
    hate = second.rules.get(name="hate")
    rule_save(actor=policy_staff, rule_set=second, rule=hate, data=route("hate", "score.hate >= 0.7", hate_queue))

    diff = ruleset_diff(first, second)

    assert [(kind, line) for kind, line in diff if kind in "+-"] == [
        ("-", "  when score.hate >= 0.8"),
        ("+", "  when score.hate >= 0.7"),
    ]
    assert (" ", "rule 1: hate") in diff
    assert (" ", "  then route to a queue queue=hate") in diff
    audit = AuditLog.objects.get(action="rule.save", target_id=str(hate.pk))
    assert (audit.before or {})["condition"] == "score.hate >= 0.8"
    assert (audit.after or {})["condition"] == "score.hate >= 0.7"


def test_the_diff_of_identical_versions_is_empty(policy_staff: User, publish: Callable[..., RuleSet]):
    first = publish()
    copy = ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.INTAKE)

    assert ruleset_diff(first, copy) == []


def test_a_draft_refuses_a_retired_default_queue_and_an_overlong_title(draft: RuleSet, policy_staff: User):
    retired = Queue.objects.create(slug="old", name="Old", is_active=False)

    with pytest.raises(ApplicationError) as refused:
        ruleset_update(actor=policy_staff, rule_set=draft, title="t", change_note="", default_queue=retired)
    assert refused.value.field == "default_queue"
    with pytest.raises(ApplicationError) as refused:
        ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.APPEALS, title="x" * 201)
    assert refused.value.field == "title"

    draft.refresh_from_db()
    assert draft.default_queue != retired
    assert not RuleSet.objects.filter(kind=RuleSetKind.APPEALS).exists()


def test_the_rule_editor_offers_no_retired_label_or_action(
    client: Any, draft: RuleSet, policy_staff: User, spam_policy: Policy, remove: EnforcementAction
):
    """The lifecycle refuses a retired label or action; the editor must not offer what saving would refuse."""
    retired_action = EnforcementAction.objects.create(slug="shadowban", name="Shadowban (old)", is_active=False)
    live_label = DecisionLabel.objects.create(policy=spam_policy, slug="phishing", name="Phishing")
    retired_label = DecisionLabel.objects.create(
        policy=spam_policy, slug="chain-letter", name="Chain letter", is_active=False
    )
    client.force_login(policy_staff)

    page = client.get(reverse("rules-detail", args=[draft.pk])).content.decode()

    assert f'<option value="{remove.pk}">' in page
    assert f'<option value="{live_label.pk}">' in page
    assert f'<option value="{retired_action.pk}">' not in page
    assert f'<option value="{retired_label.pk}">' not in page
