"""Writes on rule sets: drafts and their rules, submit, approval by a second person, activation,
rollback, shadow mode, and the readable diff between versions. Every change is audited.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict, NotPermitted
from ops_platform.core.models import DecisionLabel, EnforcementAction, Policy, User
from ops_platform.core.services import audit_record
from queues.models import DEFAULT_MAX_REQUIRED_REVIEWS, Queue
from queues.models import MAX_REQUIRED_REVIEWS as QUEUE_MAX_REQUIRED_REVIEWS
from routing.rules.coverage import coverage_acknowledge
from routing.rules.engine import ACTIONS_BY_KIND, vocabulary_for
from routing.rules.language import Problem, RuleLanguageError, parse
from routing.rules.models import Rule, RuleAction, RuleSet, RuleSetEditor, RuleSetKind, RuleSetStatus
from routing.rules.policies import auto_action_refusal
from routing.rules.preflight import ruleset_preflight
from routing.rules.selectors import ruleset_rollback_target, ruleset_writers

MAX_RULES = 500
MAX_REQUIRED_REVIEWS = QUEUE_MAX_REQUIRED_REVIEWS  # the form's bound; the rule's queue sets the ceiling
TITLE_MAX = 200  # RuleSet.title


@dataclass
class RuleData:
    """A rule as an editor submits it (ids, not objects)."""

    name: str
    condition: str
    action: str
    description: str = ""
    queue_id: int | None = None
    priority: int = 0
    policy_id: int | None = None
    label_id: int | None = None
    enforcement_action_id: int | None = None
    daily_cap: int | None = None
    required_reviews: int = 1
    tags: list[str] = field(default_factory=list)
    notify: bool = False

    @classmethod
    def from_rule(cls, rule: Rule) -> RuleData:
        return cls(
            name=rule.name,
            condition=rule.condition,
            action=rule.action,
            description=rule.description,
            queue_id=rule.queue_id,
            priority=rule.priority,
            policy_id=rule.policy_id,
            label_id=rule.label_id,
            enforcement_action_id=rule.enforcement_action_id,
            daily_cap=rule.daily_cap,
            required_reviews=rule.required_reviews,
            tags=list(rule.tags),
            notify=rule.notify,
        )


class RuleInvalid(ApplicationError):
    """A rule that does not validate: ``problems`` maps a field to its messages."""

    code = "rule_invalid"

    def __init__(self, problems: dict[str, list[str]], syntax: list[Problem] | None = None):
        first_field, messages = next(iter(problems.items()))
        super().__init__(messages[0], field=first_field, extra={"problems": problems})
        self.problems = problems
        self.syntax = syntax or []


def _require(actor: User, perm: str, what: str) -> None:
    if not actor.has_perm(perm):
        raise NotPermitted(f"Only policy staff may {what}.")


def rule_validate(kind: str, data: RuleData, *, rule_set: RuleSet | None = None, rule: Rule | None = None) -> None:
    """Check one rule completely; raise :class:`RuleInvalid` naming every field that is wrong."""
    problems: dict[str, list[str]] = {}
    syntax: list[Problem] = []

    def fail(name: str, message: str) -> None:
        problems.setdefault(name, []).append(message)

    name = data.name.strip()
    if not name or len(name) > 80 or not all(c.isalnum() or c in "-_" for c in name):
        fail("name", "Name the rule with letters, digits, '-' or '_' (at most 80 characters).")
    elif rule_set is not None:
        clash = rule_set.rules.filter(name=name)
        if rule is not None:
            clash = clash.exclude(pk=rule.pk)
        if clash.exists():
            fail("name", f"This rule set already has a rule named '{name}'.")
    try:
        parse(data.condition, vocabulary_for(kind))
    except RuleLanguageError as exc:
        syntax = exc.problems
        for problem in exc.problems:
            fail("condition", str(problem))
    if data.action not in ACTIONS_BY_KIND.get(kind, ()):
        allowed = ", ".join(ACTIONS_BY_KIND.get(kind, ()))
        fail("action", f"'{data.action}' is not an action of {kind} rules; use one of: {allowed}.")
    queue = Queue.objects.filter(pk=data.queue_id, is_active=True).first() if data.queue_id is not None else None
    if data.queue_id and queue is None:
        fail("queue", "No active queue has that id.")
    if data.action == RuleAction.ROUTE and queue is None:
        fail("queue", "A route rule needs the queue it routes to.")
    if data.action == RuleAction.RAISE_PRIORITY and data.priority <= 0:
        fail("priority", "Raise priority by a positive step.")
    if not -100 <= data.priority <= 100:
        fail("priority", "Priority is between -100 and 100.")
    ceiling = queue.max_required_reviews if queue is not None else DEFAULT_MAX_REQUIRED_REVIEWS
    if not 1 <= data.required_reviews <= ceiling:
        fail("required_reviews", f"Required reviews is between 1 and {ceiling}.")
    if any(not t or len(t) > 50 or not all(c.isalnum() or c in "-_:" for c in t) for t in data.tags):
        fail("tags", "Tags use letters, digits, '-', '_' or ':' (at most 50 characters each).")
    if data.action == RuleAction.TAG and not data.tags:
        fail("tags", "A tag rule needs at least one tag.")
    if data.action == RuleAction.AUTO_ACTION:
        _validate_auto_action(data, fail)
    if problems:
        raise RuleInvalid(problems, syntax)


def _validate_auto_action(data: RuleData, fail: Any) -> None:
    policy = Policy.objects.filter(pk=data.policy_id, is_active=True).first() if data.policy_id else None
    if policy is None:
        fail("policy", "An auto-action names the policy the items violate.")
        return
    refusal = auto_action_refusal(policy)
    if refusal:
        fail("policy", refusal)
    action = (
        EnforcementAction.objects.filter(pk=data.enforcement_action_id, is_active=True).first()
        if data.enforcement_action_id is not None
        else None
    )
    if action is None and data.enforcement_action_id is not None:
        fail("enforcement_action", "No active enforcement action has that id (retired actions are not used).")
    elif action is None:
        fail("enforcement_action", "An auto-action names its enforcement action.")
    elif not policy.enforcement_actions.filter(pk=action.pk).exists():
        fail("enforcement_action", f"'{action.slug}' is not an action of policy '{policy.slug}'.")
    if data.label_id and not DecisionLabel.objects.filter(pk=data.label_id, policy=policy, is_active=True).exists():
        fail("label", f"That label does not belong to policy '{policy.slug}' or is retired.")
    if not data.daily_cap or data.daily_cap < 1:
        fail("daily_cap", "An auto-action needs a daily cap of at least 1.")


# --- drafts ----------------------------------------------------------------------------------------


def _next_version(kind: str) -> int:
    return (RuleSet.objects.filter(kind=kind).aggregate(v=Max("version"))["v"] or 0) + 1


@transaction.atomic
def ruleset_draft_create(
    *, actor: User, kind: str, title: str = "", based_on: RuleSet | None = None, default_queue: Queue | None = None
) -> RuleSet:
    """A new draft version of ``kind``: a copy of ``based_on`` (default: the active version), or empty."""
    _require(actor, "core.edit_rules", "draft rule sets")
    if kind not in RuleSetKind.values:
        raise ApplicationError(f"Unknown rule set kind '{kind[:40]}'.", field="kind")
    if len(title) > TITLE_MAX:
        raise ApplicationError(f"A title is at most {TITLE_MAX} characters.", field="title")
    if based_on is None:
        based_on = RuleSet.objects.filter(kind=kind, status=RuleSetStatus.ACTIVE).first()
    if based_on is not None and based_on.kind != kind:
        raise ApplicationError("A draft copies a version of its own kind.", field="based_on")
    # Lock the kind's versions so two drafts created at once get different numbers.
    list(RuleSet.objects.select_for_update().filter(kind=kind).values_list("pk", flat=True))
    draft = RuleSet.objects.create(
        kind=kind,
        version=_next_version(kind),
        title=title or (f"Changes to v{based_on.version}" if based_on else f"First {kind} rules"),
        default_queue=default_queue or (based_on.default_queue if based_on else None),
        based_on=based_on,
        created_by=actor,
    )
    ruleset_editor_record(draft, actor, "ruleset.draft")
    if based_on is not None:
        Rule.objects.bulk_create(
            Rule(
                rule_set=draft,
                position=r.position,
                name=r.name,
                description=r.description,
                condition=r.condition,
                action=r.action,
                queue_id=r.queue_id,
                priority=r.priority,
                policy_id=r.policy_id,
                label_id=r.label_id,
                enforcement_action_id=r.enforcement_action_id,
                daily_cap=r.daily_cap,
                required_reviews=r.required_reviews,
                tags=r.tags,
                notify=r.notify,
            )
            for r in based_on.rules.all()
        )
    audit_record(
        actor=actor,
        action="ruleset.draft",
        target=draft,
        after={"kind": kind, "version": draft.version, "based_on": based_on.version if based_on else None},
    )
    return draft


def _editable(rule_set: RuleSet, actor: User) -> RuleSet:
    _require(actor, "core.edit_rules", "edit rules")
    locked = RuleSet.objects.select_for_update().get(pk=rule_set.pk)
    if not locked.is_editable:
        raise Conflict(f"{locked} is {locked.get_status_display().lower()}; only drafts change. Start a new draft.")
    return locked


def ruleset_editor_record(rule_set: RuleSet, actor: User, act: str) -> None:
    """Note ``actor`` as one of the version's writers (called with the version's row locked)."""
    now = timezone.now()
    editor, created = RuleSetEditor.objects.get_or_create(
        rule_set=rule_set, user=actor, defaults={"acts": [act], "first_at": now, "last_at": now}
    )
    if not created:
        editor.acts = editor.acts if act in editor.acts else [*editor.acts, act]
        editor.last_at = now
        editor.save(update_fields=["acts", "last_at"])


def _rule_fields(data: RuleData) -> dict[str, Any]:
    return {
        "name": data.name.strip(),
        "description": data.description.strip(),
        "condition": data.condition,
        "action": data.action,
        "queue_id": data.queue_id,
        "priority": data.priority,
        "policy_id": data.policy_id if data.action == RuleAction.AUTO_ACTION else None,
        "label_id": data.label_id if data.action == RuleAction.AUTO_ACTION else None,
        "enforcement_action_id": data.enforcement_action_id if data.action == RuleAction.AUTO_ACTION else None,
        "daily_cap": data.daily_cap if data.action == RuleAction.AUTO_ACTION else None,
        "required_reviews": data.required_reviews,
        "tags": sorted(set(data.tags)),
        "notify": data.notify,
    }


@transaction.atomic
def rule_save(*, actor: User, rule_set: RuleSet, data: RuleData, rule: Rule | None = None) -> Rule:
    """Add a rule at the end of a draft, or change one; nothing is saved unless it all validates."""
    rule_set = _editable(rule_set, actor)
    rule_validate(rule_set.kind, data, rule_set=rule_set, rule=rule)
    before = None
    if rule is None:
        if rule_set.rules.count() >= MAX_RULES:
            raise ApplicationError(f"A rule set holds at most {MAX_RULES} rules.")
        position = (rule_set.rules.aggregate(p=Max("position"))["p"] or 0) + 1
        rule = Rule.objects.create(rule_set=rule_set, position=position, **_rule_fields(data))
    else:
        if rule.rule_set_id != rule_set.pk:
            raise ApplicationError("That rule belongs to another rule set.", field="rule")
        before = _rule_snapshot(rule)
        for name, value in _rule_fields(data).items():
            setattr(rule, name, value)
        rule.save()
    ruleset_editor_record(rule_set, actor, "rule.save")
    audit_record(actor=actor, action="rule.save", target=rule, before=before, after=_rule_snapshot(rule))
    return rule


@transaction.atomic
def rule_delete(*, actor: User, rule: Rule) -> None:
    rule_set = _editable(rule.rule_set, actor)
    snapshot = _rule_snapshot(rule)
    rule.delete()
    _renumber(rule_set, list(rule_set.rules.order_by("position")))
    ruleset_editor_record(rule_set, actor, "rule.delete")
    audit_record(actor=actor, action="rule.delete", target=("routing.rule", snapshot["name"]), before=snapshot)


@transaction.atomic
def rule_move(*, actor: User, rule: Rule, offset: int) -> None:
    """Move a rule up (negative) or down (positive) in its draft's order."""
    rule_set = _editable(rule.rule_set, actor)
    rules = list(rule_set.rules.order_by("position"))
    index = next(i for i, r in enumerate(rules) if r.pk == rule.pk)
    target = max(0, min(len(rules) - 1, index + offset))
    if target == index:
        return
    rules.insert(target, rules.pop(index))
    _renumber(rule_set, rules)
    ruleset_editor_record(rule_set, actor, "rule.move")
    audit_record(actor=actor, action="rule.move", target=rule, after={"position": target + 1})


def _renumber(rule_set: RuleSet, rules: list[Rule]) -> None:
    # Two passes keep the (rule_set, position) constraint satisfied at every step.
    top = len(rules) + 1000
    for i, r in enumerate(rules):
        Rule.objects.filter(pk=r.pk).update(position=top + i)
    for i, r in enumerate(rules):
        Rule.objects.filter(pk=r.pk).update(position=i + 1)


@transaction.atomic
def ruleset_update(
    *, actor: User, rule_set: RuleSet, title: str, change_note: str, default_queue: Queue | None
) -> RuleSet:
    rule_set = _editable(rule_set, actor)
    if default_queue is not None and not default_queue.is_active:
        raise ApplicationError(f"Queue '{default_queue.slug}' is retired.", field="default_queue")
    rule_set.title = title.strip()[:TITLE_MAX] or rule_set.title
    rule_set.change_note = change_note
    rule_set.default_queue = default_queue
    rule_set.save(update_fields=["title", "change_note", "default_queue"])
    ruleset_editor_record(rule_set, actor, "ruleset.update")
    audit_record(actor=actor, action="ruleset.update", target=rule_set, after={"title": rule_set.title})
    return rule_set


def _rule_snapshot(rule: Rule) -> dict[str, Any]:
    return {"position": rule.position, **_rule_fields(RuleData.from_rule(rule))}


# --- the approval path -----------------------------------------------------------------------------


def _transition(rule_set: RuleSet, allowed: tuple[str, ...], verb: str) -> RuleSet:
    locked = RuleSet.objects.select_for_update().get(pk=rule_set.pk)
    if locked.status not in allowed:
        raise Conflict(f"{locked} is {locked.get_status_display().lower()}; it cannot be {verb}.")
    return locked


@transaction.atomic
def ruleset_submit(*, actor: User, rule_set: RuleSet, change_note: str = "") -> RuleSet:
    """Freeze a draft for approval; every rule is validated again against today's taxonomy and queues."""
    _require(actor, "core.edit_rules", "submit rule sets")
    rule_set = _transition(rule_set, (RuleSetStatus.DRAFT,), "submitted")
    rules = list(rule_set.rules.order_by("position"))
    if rule_set.kind != RuleSetKind.ESCALATION and rule_set.default_queue is None:
        raise ApplicationError("Choose the default queue for items no rule routes.", field="default_queue")
    if not rules:
        raise ApplicationError("A rule set needs at least one rule.", field="rules")
    for rule in rules:
        try:
            rule_validate(rule_set.kind, RuleData.from_rule(rule), rule_set=rule_set, rule=rule)
        except RuleInvalid as exc:
            raise ApplicationError(f"Rule '{rule.name}': {exc.message}", field="rules") from exc
    rule_set.status = RuleSetStatus.SUBMITTED
    rule_set.submitted_by, rule_set.submitted_at = actor, timezone.now()
    if change_note:
        rule_set.change_note = change_note
    rule_set.save()
    ruleset_editor_record(rule_set, actor, "ruleset.submit")
    audit_record(actor=actor, action="ruleset.submit", target=rule_set, after={"rules": len(rules)})
    return rule_set


@transaction.atomic
def ruleset_approve(*, actor: User, rule_set: RuleSet, acknowledge: Collection[str] = ()) -> RuleSet:
    """The second person's approval: never anyone who drafted, edited or submitted any of the version. A version
    reading scores no active backend produces needs each of them in ``acknowledge`` (audited)."""
    _require(actor, "core.approve_rules", "approve rule sets")
    rule_set = _transition(rule_set, (RuleSetStatus.SUBMITTED,), "approved")
    if actor.pk in ruleset_writers(rule_set):
        raise NotPermitted(
            f"A rule set is approved by a different policy-staff member than its author: you wrote part of {rule_set}."
        )
    coverage_acknowledge(actor=actor, rule_set=rule_set, step="approve", acknowledged=acknowledge)
    rule_set.status = RuleSetStatus.APPROVED
    rule_set.approved_by, rule_set.approved_at = actor, timezone.now()
    rule_set.save()
    audit_record(actor=actor, action="ruleset.approve", target=rule_set)
    return rule_set


@transaction.atomic
def ruleset_reject(*, actor: User, rule_set: RuleSet, reason: str) -> RuleSet:
    _require(actor, "core.approve_rules", "reject rule sets")
    rule_set = _transition(rule_set, (RuleSetStatus.SUBMITTED, RuleSetStatus.APPROVED), "rejected")
    if not reason.strip():
        raise ApplicationError("Say why the version is rejected.", field="reason")
    rule_set.status, rule_set.shadow = RuleSetStatus.REJECTED, False
    rule_set.save()
    audit_record(actor=actor, action="ruleset.reject", target=rule_set, reason=reason)
    return rule_set


@transaction.atomic
def ruleset_activate(*, actor: User, rule_set: RuleSet, reason: str = "", acknowledge: Collection[str] = ()) -> RuleSet:
    """Make an approved version live, or re-activate a retired one (rollback); the live one retires. A version
    reading scores no active backend produces needs each of them in ``acknowledge`` (audited), as at approval:
    coverage may have changed since."""
    _require(actor, "core.approve_rules", "activate rule sets")
    rule_set = _transition(rule_set, (RuleSetStatus.APPROVED, RuleSetStatus.RETIRED), "activated")
    if rule_set.approved_by_id is None:
        raise Conflict(f"{rule_set} was never approved; it cannot go live.")
    ruleset_preflight(rule_set)  # every rule built and run on sample rows: triage must never meet a failing rule
    coverage_acknowledge(actor=actor, rule_set=rule_set, step="activate", acknowledged=acknowledge)
    previous = RuleSet.objects.select_for_update().filter(kind=rule_set.kind, status=RuleSetStatus.ACTIVE).first()
    if previous is not None:
        previous.status = RuleSetStatus.RETIRED
        previous.save(update_fields=["status"])
    rolled_back = rule_set.status == RuleSetStatus.RETIRED
    rule_set.status, rule_set.shadow = RuleSetStatus.ACTIVE, False
    rule_set.activated_by, rule_set.activated_at = actor, timezone.now()
    rule_set.save()
    audit_record(
        actor=actor,
        action="ruleset.rollback" if rolled_back else "ruleset.activate",
        target=rule_set,
        before={"active_version": previous.version if previous else None},
        after={"active_version": rule_set.version},
        reason=reason,
    )
    return rule_set


@transaction.atomic
def ruleset_rollback(
    *, actor: User, kind: str, to_version: int, reason: str = "", acknowledge: Collection[str] = ()
) -> RuleSet:
    """Re-activate the version that was live before the current one. ``to_version`` is the version the person
    was shown and confirmed: if the version a rollback restores is another one now, nothing happens."""
    _require(actor, "core.approve_rules", "roll back rule sets")
    # The kind's versions locked, so what is checked here is what goes live.
    list(RuleSet.objects.select_for_update().filter(kind=kind).values_list("pk", flat=True))
    previous = ruleset_rollback_target(kind)
    if previous is None:
        raise Conflict(f"No earlier {kind} version was live before the active one; there is nothing to roll back to.")
    if previous.version != to_version:
        raise Conflict(
            f"A rollback of {kind} rules now restores v{previous.version}, not v{to_version}: look again.",
            field="to_version",
        )
    return ruleset_activate(
        actor=actor, rule_set=previous, reason=reason.strip() or f"rollback to v{to_version}", acknowledge=acknowledge
    )


@transaction.atomic
def ruleset_shadow(*, actor: User, rule_set: RuleSet, on: bool) -> RuleSet:
    """Run a submitted or approved version beside the live one, recording what it would do."""
    _require(actor, "core.edit_rules", "start shadow runs")
    rule_set = _transition(rule_set, (RuleSetStatus.SUBMITTED, RuleSetStatus.APPROVED), "run in shadow")
    rule_set.shadow = on
    rule_set.shadow_started_at = timezone.now() if on else rule_set.shadow_started_at
    rule_set.save(update_fields=["shadow", "shadow_started_at"])
    audit_record(actor=actor, action="ruleset.shadow_start" if on else "ruleset.shadow_stop", target=rule_set)
    return rule_set


# --- reading versions ------------------------------------------------------------------------------


def ruleset_text(rule_set: RuleSet) -> list[str]:
    """A rule set as lines of text, one block per rule, for diffs people read."""
    lines = [f"default queue: {rule_set.default_queue.slug if rule_set.default_queue else '-'}"]
    for rule in rule_set.rules.select_related("queue", "policy", "enforcement_action", "label").order_by("position"):
        lines.append(f"rule {rule.position}: {rule.name}")
        lines += [f"  when {line}" for line in rule.condition.strip().splitlines()]
        lines.append(f"  then {_describe_action(rule)}")
    return lines


def _describe_action(rule: Rule) -> str:
    parts = [rule.get_action_display().split(" (")[0].lower()]
    if rule.queue:
        parts.append(f"queue={rule.queue.slug}")
    if rule.action in (RuleAction.ROUTE, RuleAction.ESCALATE, RuleAction.RAISE_PRIORITY) and rule.priority:
        parts.append(f"priority={rule.priority}")
    if rule.policy:
        parts.append(f"policy={rule.policy.slug}")
    if rule.label:
        parts.append(f"label={rule.label.slug}")
    if rule.enforcement_action:
        parts.append(f"enforcement={rule.enforcement_action.slug}")
    if rule.daily_cap:
        parts.append(f"daily_cap={rule.daily_cap}")
    if rule.required_reviews > 1:
        parts.append(f"reviews={rule.required_reviews}")
    if rule.tags:
        parts.append(f"tags={','.join(rule.tags)}")
    if rule.notify:
        parts.append("notify")
    return " ".join(parts)


def ruleset_diff(old: RuleSet, new: RuleSet) -> list[tuple[str, str]]:
    """(kind, line) pairs of a unified diff from ``old`` to ``new``: kind is '+', '-', ' ' or '@'."""
    out: list[tuple[str, str]] = []
    for line in difflib.unified_diff(
        ruleset_text(old), ruleset_text(new), f"v{old.version}", f"v{new.version}", n=2, lineterm=""
    ):
        if line.startswith(("---", "+++")):
            continue
        out.append((line[0] if line[0] in "+-@" else " ", line[1:] if line[0] in "+- " else line))
    return out
