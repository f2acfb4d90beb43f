"""Account actions: warn, restrict, suspend or a custom action, taken by a strike threshold, by a reviewer from
an item, or in bulk by a senior; suspensions a policy marks so wait for a second person. Each takes effect with
an ``account.action`` webhook (signed and retried by the kernel's webhook machinery) and can be reversed, which
sends another. Every step is audited and kept in the account's history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict, NotFound, NotPermitted
from ops_platform.core.models import ApiClient, Policy, User, WebhookEventType
from ops_platform.core.services import audit_record
from ops_platform.core.webhooks import webhook_emit
from queues.accounts.models import (
    Account,
    AccountAction,
    AccountStatus,
    ActionKind,
    ActionOrigin,
    ActionState,
    Strike,
    StrikeThreshold,
)
from queues.accounts.selectors import accounts_visible_to
from queues.accounts.services import event_record, require_account_staff
from queues.accounts.terms import policy_terms
from queues.models import Decision

BULK_MAX = 500
# What may be given a duration, and the longest one: a restriction or suspension for a time, lifted by the
# periodic ``account_actions_expire`` (a warning or a custom action has no state to lift).
TIMED_KINDS = (ActionKind.RESTRICT, ActionKind.SUSPEND)
MAX_DURATION = timedelta(days=3650)
EXPIRY_ACTOR = "system:action-expiry"
EXPIRY_REASON = "Its duration ended."
STATUS_BY_KIND: dict[str, str] = {
    ActionKind.SUSPEND: AccountStatus.SUSPENDED,
    ActionKind.RESTRICT: AccountStatus.RESTRICTED,
    ActionKind.WARN: AccountStatus.WARNED,
}
STATUS_ORDER: list[str] = [AccountStatus.SUSPENDED, AccountStatus.RESTRICTED, AccountStatus.WARNED]


def account_action_payload(action: AccountAction) -> dict[str, object]:
    """The ``account.action`` webhook payload (a public contract, docs/accounts.md): the account's reference, the
    action, its state, the reason and the decisions behind it. Ids and slugs, never content."""
    decisions = (
        Decision.objects.filter(pk__in=action.decision_ids).select_related("item", "policy").order_by("pk")
        if action.decision_ids
        else []
    )
    return {
        "action_id": action.pk,
        "source": action.account.source,
        "account_ref": action.account.ref,
        "action": action.name,
        "kind": action.kind,
        "state": action.state,
        "origin": action.origin,
        "policy": action.policy.slug if action.policy else None,
        "family": action.family or None,
        "reason": action.reason,
        "decisions": [
            {
                "decision_id": d.pk,
                "item_id": d.item_id,
                "external_id": d.item.external_id,
                "policy": d.policy.slug if d.policy else None,
            }
            for d in decisions
        ],
        "effective_at": action.effective_at.isoformat() if action.effective_at else None,
        "reversed_at": action.reversed_at.isoformat() if action.reversed_at else None,
        "reversal_reason": action.reversal_reason or None,
        "expires_at": action.expires_at.isoformat() if action.expires_at else None,
    }


def _webhook(action: AccountAction) -> None:
    client = ApiClient.objects.filter(source=action.account.source).first()
    if client is not None:
        webhook_emit(client=client, event_type=WebhookEventType.ACCOUNT_ACTION, payload=account_action_payload(action))


def account_status_refresh(account: Account) -> str:
    """The account's status: the strongest action in force."""
    kinds = set(account.actions.filter(state=ActionState.IN_FORCE).values_list("kind", flat=True))
    status = next((s for s in STATUS_ORDER if any(STATUS_BY_KIND.get(k) == s for k in kinds)), AccountStatus.ACTIVE)
    if status != account.status:
        Account.objects.filter(pk=account.pk).update(status=status)
        account.status = status
    return status


def _take_effect(action: AccountAction, *, actor: User | str | None, at: datetime) -> None:
    action.state = ActionState.IN_FORCE
    action.effective_at = at
    action.expires_at = at + action.duration if action.duration else None  # from taking effect, not from asking
    action.save(update_fields=["state", "effective_at", "expires_at", "approved_by"])
    status = account_status_refresh(action.account)
    data = {"action": action.pk, "kind": action.name, "status": status}
    if action.expires_at:
        data["expires_at"] = action.expires_at.isoformat()
    audit_record(actor=actor, action="account.action_in_force", target=action.account, after=data, reason=action.reason)
    event_record(action.account, event="action_in_force", actor=actor, at=at, data=data)
    _webhook(action)


def _create(
    *,
    account: Account,
    kind: str,
    custom_action: str,
    policy: Policy | None,
    family: str,
    threshold: StrikeThreshold | None,
    origin: str,
    reason: str,
    decision_ids: Sequence[int],
    needs_approval: bool,
    actor: User | str | None,
    at: datetime,
    batch_id: uuid.UUID | None = None,
    duration: timedelta | None = None,
) -> AccountAction:
    action = AccountAction.objects.create(
        account=account,
        kind=kind,
        custom_action=custom_action,
        policy=policy,
        family=family,
        threshold=threshold,
        origin=origin,
        reason=reason[:5000],
        decision_ids=sorted(set(decision_ids)),
        state=ActionState.PENDING if needs_approval else ActionState.IN_FORCE,
        requested_by=actor if isinstance(actor, User) else None,
        requested_at=at,
        batch_id=batch_id,
        duration=duration,
    )
    data = {"action": action.pk, "kind": action.name, "origin": origin, "state": action.state}
    if duration:
        data["duration_seconds"] = int(duration.total_seconds())
    audit_record(actor=actor, action="account.action_requested", target=account, after=data, reason=reason)
    event_record(account, event="action_requested", actor=actor, at=at, data=data)
    if not needs_approval:
        _take_effect(action, actor=actor, at=at)
    return action


def threshold_fire(
    *, account: Account, threshold: StrikeThreshold, policy: Policy, needs_approval: bool, at: datetime
) -> AccountAction:
    """The action a crossed threshold takes, with the decisions behind the family's active strikes. Called by
    ``strikes.strike_add`` with the account row locked."""
    strikes = Strike.objects.filter(
        account=account, family=threshold.family, removed_at__isnull=True, expires_at__gt=at
    )
    total = int(strikes.aggregate(n=Sum("weight"))["n"] or 0)
    name = threshold.custom_action if threshold.action == ActionKind.CUSTOM else threshold.action
    reason = (
        f"{total} active strikes under the '{threshold.family}' policies reached the threshold of "
        f"{threshold.strikes} ({name})."
    )
    return _create(
        account=account,
        kind=threshold.action,
        custom_action=threshold.custom_action if threshold.action == ActionKind.CUSTOM else "",
        policy=policy,
        family=threshold.family,
        threshold=threshold,
        origin=ActionOrigin.THRESHOLD,
        reason=reason,
        decision_ids=list(strikes.values_list("decision_id", flat=True)),
        needs_approval=needs_approval and threshold.action == ActionKind.SUSPEND,
        actor=f"threshold:{threshold.family}:{threshold.strikes}",
        at=at,
        # Only a restriction or suspension has a state to lift; the settings service refuses a duration on others.
        duration=threshold.duration if threshold.action in TIMED_KINDS else None,
    )


def _check_request(
    *, actor: User, kind: str, custom_action: str, policy: Policy | None, reason: str, duration: timedelta | None
) -> None:
    require_account_staff(actor)
    if kind not in ActionKind.values:
        raise ApplicationError(f"Unknown action '{kind}'.", field="kind")
    if duration is not None:
        if kind not in TIMED_KINDS:
            raise ApplicationError("Only a restriction or a suspension can be for a time.", field="duration")
        if not timedelta(0) < duration <= MAX_DURATION:
            raise ApplicationError(f"A duration is more than 0 and at most {MAX_DURATION.days} days.", field="duration")
    if kind == ActionKind.CUSTOM and not custom_action.strip():
        raise ApplicationError("A custom action needs its name.", field="custom_action")
    if policy is None:
        raise ApplicationError("Name the policy the account broke.", field="policy")
    if not policy.is_active:
        raise ApplicationError(f"Policy '{policy.slug}' is retired.", field="policy")
    if not reason.strip():
        raise ApplicationError("Say why: the service and the user will be told.", field="reason")


def _visible(actor: User, account: Account) -> Account:
    found = accounts_visible_to(actor).select_for_update(of=("self",)).filter(pk=account.pk).first()
    if found is None:
        raise NotFound("No account of yours has that id.", field="account")
    return found


@transaction.atomic
def account_action_request(
    *,
    account: Account,
    actor: User,
    kind: str,
    policy: Policy | None,
    reason: str,
    custom_action: str = "",
    decision_ids: Sequence[int] = (),
    origin: str = ActionOrigin.REVIEWER,
    batch_id: uuid.UUID | None = None,
    duration: timedelta | None = None,
    at: datetime | None = None,
) -> AccountAction:
    """A person acts on an account (from an item page, or one of a bulk action). A suspension under a policy that
    says so waits for a second person's approval; anything else takes effect now. ``duration`` (a restriction or
    suspension only): lifted that long after it takes effect, by ``account_actions_expire``."""
    now = at or timezone.now()
    _check_request(actor=actor, kind=kind, custom_action=custom_action, policy=policy, reason=reason, duration=duration)
    assert policy is not None
    account = _visible(actor, account)
    terms = policy_terms(policy)
    return _create(
        account=account,
        kind=kind,
        custom_action=custom_action.strip()[:100] if kind == ActionKind.CUSTOM else "",
        policy=policy,
        family=terms.family,
        threshold=None,
        origin=origin,
        reason=reason,
        decision_ids=decision_ids,
        needs_approval=kind == ActionKind.SUSPEND and terms.suspension_needs_approval,
        actor=actor,
        at=now,
        batch_id=batch_id,
        duration=duration,
    )


def _locked(action: AccountAction) -> AccountAction:
    return AccountAction.objects.select_for_update(of=("self",)).select_related("account", "policy").get(pk=action.pk)


def _held(action: AccountAction, *, actor: User, state: ActionState, refusal: str) -> AccountAction:
    """The action locked, on an account the actor may act on, and in ``state``: what approving, rejecting and
    reversing each start from."""
    require_account_staff(actor)
    action = _locked(action)
    _visible(actor, action.account)
    if action.state != state:
        raise Conflict(refusal, field="action")
    return action


def _end(action: AccountAction, *, state: ActionState, actor: User, at: datetime, reason: str) -> None:
    """A rejected or reversed action: by whom, when and why."""
    action.state = state
    action.reversed_by, action.reversed_at, action.reversal_reason = actor, at, reason[:5000]
    action.save(update_fields=["state", "reversed_by", "reversed_at", "reversal_reason"])


@transaction.atomic
def account_action_approve(*, action: AccountAction, actor: User, at: datetime | None = None) -> AccountAction:
    """The second person approves a suspension: it takes effect. Never the one who asked for it."""
    now = at or timezone.now()
    action = _held(
        action, actor=actor, state=ActionState.PENDING, refusal="Only an action waiting for approval can be approved."
    )
    if action.requested_by_id == actor.pk:
        raise NotPermitted("You asked for this suspension; a second person must approve it.")
    action.approved_by = actor
    _take_effect(action, actor=actor, at=now)
    return action


@transaction.atomic
def account_action_reject(*, action: AccountAction, actor: User, reason: str, at: datetime | None = None) -> None:
    now = at or timezone.now()
    action = _held(
        action, actor=actor, state=ActionState.PENDING, refusal="Only an action waiting for approval can be rejected."
    )
    if not reason.strip():
        raise ApplicationError("Say why it is rejected.", field="reason")
    _end(action, state=ActionState.REJECTED, actor=actor, at=now, reason=reason)
    audit_record(
        actor=actor,
        action="account.action_rejected",
        target=action.account,
        before={"action": action.pk},
        reason=reason,
    )
    event_record(action.account, event="action_rejected", actor=actor, at=now, data={"action": action.pk})


@transaction.atomic
def account_action_reverse(*, action: AccountAction, actor: User, reason: str, at: datetime | None = None) -> None:
    """Take an action back: the service hears it (``state: reversed``) and the account's status follows."""
    now = at or timezone.now()
    action = _held(action, actor=actor, state=ActionState.IN_FORCE, refusal="Only an action in force can be reversed.")
    if not reason.strip():
        raise ApplicationError("Say why it is reversed; the service will be told.", field="reason")
    _end(action, state=ActionState.REVERSED, actor=actor, at=now, reason=reason)
    status = account_status_refresh(action.account)
    data = {"action": action.pk, "kind": action.name, "status": status}
    audit_record(actor=actor, action="account.action_reversed", target=action.account, before=data, reason=reason)
    event_record(action.account, event="action_reversed", actor=actor, at=now, data=data)
    _webhook(action)


def account_actions_expire(*, at: datetime | None = None, limit: int = 1000) -> int:
    """Lift the actions in force whose time is up (``expires_at <= now``): each in its own transaction, the row
    locked and its state checked again (a person reversing it meanwhile wins; a concurrent run skips it), state
    ``expired``, the account's status recomputed, audited, in the account's history, and an ``account.action``
    webhook with ``state: "expired"``. Returns how many were lifted. Run by the periodic
    ``queues.tasks.account_actions_expire_task``."""
    now = at or timezone.now()
    due = AccountAction.objects.filter(state=ActionState.IN_FORCE, expires_at__lte=now).order_by("expires_at", "pk")
    lifted = 0
    for pk in list(due.values_list("pk", flat=True)[:limit]):
        with transaction.atomic():
            action = (
                AccountAction.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("account", "policy")
                .filter(pk=pk, state=ActionState.IN_FORCE, expires_at__lte=now)
                .first()
            )
            if action is None:
                continue
            Account.objects.select_for_update().filter(pk=action.account_id).first()  # as the other writers do
            action.state = ActionState.EXPIRED
            action.reversed_at, action.reversal_reason = now, EXPIRY_REASON
            action.save(update_fields=["state", "reversed_at", "reversal_reason"])
            status = account_status_refresh(action.account)
            data = {"action": action.pk, "kind": action.name, "status": status}
            data["expires_at"] = action.expires_at.isoformat() if action.expires_at else None
            audit_record(
                actor=EXPIRY_ACTOR,
                action="account.action_expired",
                target=action.account,
                before=data,
                reason=EXPIRY_REASON,
            )
            event_record(action.account, event="action_expired", actor=EXPIRY_ACTOR, at=now, data=data)
            _webhook(action)
            lifted += 1
    return lifted


@dataclass(frozen=True)
class BulkPreview:
    accounts: list[Account]
    missing: list[int]  # ids asked for that the actor may not see (or that do not exist)


def account_actions_preview(*, actor: User, account_ids: Sequence[int]) -> BulkPreview:
    """What a bulk account action would touch: the accounts the actor may see, and the ids they may not."""
    if not actor.has_perm("core.bulk_decide") or not actor.has_perm("core.act_on_accounts"):
        raise NotPermitted("Bulk account actions are for senior reviewers.")
    ids = sorted(set(account_ids))
    if not ids:
        raise ApplicationError("Choose at least one account.", field="accounts")
    if len(ids) > BULK_MAX:
        raise ApplicationError(f"At most {BULK_MAX} accounts at once.", field="accounts")
    found = list(accounts_visible_to(actor).filter(pk__in=ids).order_by("source", "ref"))
    return BulkPreview(found, sorted(set(ids) - {a.pk for a in found}))


@transaction.atomic
def account_actions_bulk(
    *,
    actor: User,
    account_ids: Sequence[int],
    kind: str,
    policy: Policy | None,
    reason: str,
    custom_action: str = "",
    duration: timedelta | None = None,
    at: datetime | None = None,
) -> uuid.UUID:
    """One action on many accounts, after a preview (the caller confirms the ids the preview showed). All or
    nothing; one batch id in the audit log."""
    preview = account_actions_preview(actor=actor, account_ids=account_ids)
    if preview.missing:
        raise NotFound(f"No account of yours has id {preview.missing[0]}.", field="accounts")
    batch = uuid.uuid4()
    now = at or timezone.now()
    for account in preview.accounts:
        account_action_request(
            account=account,
            actor=actor,
            kind=kind,
            policy=policy,
            reason=reason,
            custom_action=custom_action,
            origin=ActionOrigin.BULK,
            batch_id=batch,
            duration=duration,
            at=now,
        )
    audit_record(
        actor=actor,
        action="account.bulk_action",
        target=("queues.accountaction.batch", str(batch)),
        after={"accounts": [a.pk for a in preview.accounts], "kind": kind, "policy": policy.slug if policy else None},
        reason=reason,
    )
    return batch
