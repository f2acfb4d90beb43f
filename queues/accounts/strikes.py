"""Strikes: a final violation adds strikes to its author's account, a decision no longer in force (corrected,
overturned on appeal, a bulk decision reverted) takes them back, and crossing a threshold of the policy's family
takes the threshold's action exactly once.

Exactly once: strikes are added with the account row locked (``SELECT … FOR UPDATE``), and a threshold fires
when the family's active total goes from below it to at or above it in that locked step. Two decisions
crossing the line at the same time serialize on the row; the second sees the first's strike.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import User
from ops_platform.core.services import audit_record
from queues.accounts.actions import threshold_fire
from queues.accounts.models import Account, LabelStrikes, Strike, StrikeThreshold
from queues.accounts.services import account_for, event_record, require_account_staff
from queues.accounts.terms import StrikeTerms, policy_terms
from queues.models import Decision, ItemKind, ReviewItem


def decision_weight(decision: Decision, terms: StrikeTerms) -> int:
    """The policy's weight, unless a label of the decision has its own (the highest label weight wins)."""
    label_weights = list(LabelStrikes.objects.filter(label__decisions=decision).values_list("weight", flat=True))
    return max(label_weights) if label_weights else terms.weight


def active_strikes(*, at: datetime | None = None) -> Q:
    """The strikes that count at ``at``: not removed, not expired."""
    return Q(removed_at__isnull=True, expires_at__gt=at or timezone.now())


def family_total(account_id: int, family: str, *, at: datetime) -> int:
    total = Strike.objects.filter(active_strikes(at=at), account_id=account_id, family=family).aggregate(
        n=Sum("weight")
    )["n"]
    return int(total or 0)


def strikes_sync_item(
    *, item: ReviewItem, actor: User | str | None, at: datetime | None = None, reason: str = ""
) -> list[Strike]:
    """Make the item's strikes follow its decision in force: remove those of decisions no longer in force, add
    the current final violation's. Called in the transaction of every way of making or replacing a final
    decision. Returns the strikes added."""
    now = at or timezone.now()
    if not item.author_ref or item.is_golden or item.kind == ItemKind.APPEAL:
        return []
    current = (
        Decision.objects.filter(item_id=item.pk, is_final=True, superseded_by__isnull=True, is_reversal=False)
        .select_related("policy")
        .order_by("-decided_at", "-pk")
        .first()
    )
    stale = Strike.objects.filter(decision__item_id=item.pk, removed_at__isnull=True)
    if current is not None:
        stale = stale.exclude(decision_id=current.pk)
    for strike in stale.select_for_update(of=("self",)):
        strike_take_back(strike=strike, actor=actor, at=now, reason=reason or "Its decision is no longer in force.")
    if current is None or not current.is_violation or current.policy is None:
        return []
    added = strike_add(decision=current, source=item.source, ref=item.author_ref, actor=actor, at=now)
    return [added] if added else []


def strike_add(*, decision: Decision, source: str, ref: str, actor: User | str | None, at: datetime) -> Strike | None:
    """Add the decision's strikes to (source, ref)'s account and fire the thresholds it crosses. None when the
    decision already has a strike (even a removed one: a person took it back) or weighs nothing."""
    assert decision.policy is not None
    terms = policy_terms(decision.policy)
    weight = decision_weight(decision, terms)
    if weight <= 0:
        return None
    account = account_for(source=source, ref=ref, at=at)
    # The lock every strike of this account is added under: thresholds cross once.
    account = Account.objects.select_for_update().get(pk=account.pk)
    if Strike.objects.filter(decision=decision).exists():
        return None
    before = family_total(account.pk, terms.family, at=at)
    strike = Strike.objects.create(
        account=account,
        decision=decision,
        policy=decision.policy,
        family=terms.family,
        weight=weight,
        issued_at=at,
        expires_at=at + terms.expires_after,
    )
    after = before + weight
    data = {"decision": decision.pk, "policy": decision.policy.slug, "family": terms.family, "weight": weight}
    audit_record(actor=actor, action="account.strike_added", target=account, after={**data, "total": after})
    event_record(account, event="strike_added", actor=actor, at=at, data={**data, "total": after})
    crossed = StrikeThreshold.objects.filter(
        family=terms.family, is_active=True, strikes__gt=before, strikes__lte=after
    ).order_by("strikes")
    for threshold in crossed:
        threshold_fire(
            account=account,
            threshold=threshold,
            policy=decision.policy,
            needs_approval=terms.suspension_needs_approval,
            at=at,
        )
    return strike


def strike_take_back(*, strike: Strike, actor: User | str | None, at: datetime, reason: str) -> None:
    """Remove a strike (kept, marked removed): audited. Actions it helped trigger stay until a person reverses
    them (the account page shows which decisions were behind each)."""
    strike.removed_at = at
    strike.removed_reason = reason[:200]
    strike.save(update_fields=["removed_at", "removed_reason"])
    data = {"strike": strike.pk, "decision": strike.decision_id, "weight": strike.weight, "family": strike.family}
    audit_record(
        actor=actor,
        action="account.strike_removed",
        target=("queues.account", strike.account_id),
        before=data,
        reason=reason,
    )
    event_record(strike.account_id, event="strike_removed", actor=actor, at=at, data={**data, "reason": reason[:200]})


@transaction.atomic
def strike_remove(*, strike: Strike, actor: User, reason: str, at: datetime | None = None) -> None:
    """A person takes a strike back (a mistake the decision does not show)."""
    require_account_staff(actor)
    if not reason.strip():
        raise ApplicationError("Say why the strike is removed.", field="reason")
    strike = Strike.objects.select_for_update().get(pk=strike.pk)
    if strike.removed_at is not None:
        raise ApplicationError("This strike was removed already.", field="strike")
    strike_take_back(strike=strike, actor=actor, at=at or timezone.now(), reason=reason)
