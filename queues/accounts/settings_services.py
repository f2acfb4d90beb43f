"""Strike settings policy staff edit: a policy's strike terms, a label's weight, and the thresholds of a family.

Every change is audited with the values before and after, so it can be seen and put back. A threshold is never
deleted (the actions it took point at it): it is deactivated, and a deactivated one fires no more.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Model

from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import DecisionLabel, Policy, User
from ops_platform.core.services import audit_record
from queues.accounts.actions import MAX_DURATION, TIMED_KINDS
from queues.accounts.models import ActionKind, LabelStrikes, PolicyStrikes, StrikeThreshold
from queues.accounts.terms import policy_terms

SETTINGS_PERM = "core.edit_policies"
MAX_WEIGHT = 100
MAX_STRIKE_EXPIRY = timedelta(days=3650)


def require_policy_staff(actor: User) -> None:
    if not actor.has_perm(SETTINGS_PERM):
        raise NotPermitted("Only policy staff may change strike settings.")


def _seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def _policy_values(terms: Any) -> dict[str, Any]:
    return {
        "family": terms.family,
        "weight": terms.weight,
        "expires_after_seconds": _seconds(terms.expires_after),
        "suspension_needs_approval": terms.suspension_needs_approval,
    }


def _threshold_values(threshold: StrikeThreshold) -> dict[str, Any]:
    return {
        "family": threshold.family,
        "strikes": threshold.strikes,
        "action": threshold.action,
        "custom_action": threshold.custom_action,
        "duration_seconds": _seconds(threshold.duration),
        "is_active": threshold.is_active,
    }


def _validated(row: Model) -> None:
    """``full_clean`` as the domain's error: the first field and its first message."""
    try:
        row.full_clean()
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise ApplicationError(messages[0], field=None if field == "__all__" else field) from exc


def _check_weight(weight: int, field: str = "weight") -> None:
    if not 0 <= weight <= MAX_WEIGHT:
        raise ApplicationError(f"A weight is a whole number from 0 to {MAX_WEIGHT}.", field=field)


@transaction.atomic
def policy_strikes_set(
    *,
    actor: User,
    policy: Policy,
    family: str,
    weight: int,
    expires_after: timedelta,
    suspension_needs_approval: bool,
    reason: str = "",
) -> PolicyStrikes:
    """Set what a violation of ``policy`` costs: its family, weight, how long a strike counts, and whether its
    suspensions wait for a second person. A policy with no row has the default terms (its own family, 1)."""
    require_policy_staff(actor)
    _check_weight(weight)
    if not timedelta(0) < expires_after <= MAX_STRIKE_EXPIRY:
        raise ApplicationError(
            f"Strikes expire after more than 0 and at most {MAX_STRIKE_EXPIRY.days} days.", field="expires_after"
        )
    before = _policy_values(policy_terms(policy))
    row = PolicyStrikes.objects.select_for_update().filter(policy=policy).first() or PolicyStrikes(policy=policy)
    row.family, row.weight, row.expires_after = family.strip(), weight, expires_after
    row.suspension_needs_approval = suspension_needs_approval
    _validated(row)
    row.save()
    after = _policy_values(policy_terms(policy))
    audit_record(
        actor=actor, action="strikes.policy_terms_set", target=policy, before=before, after=after, reason=reason
    )
    return row


@transaction.atomic
def label_strikes_set(*, actor: User, label: DecisionLabel, weight: int | None, reason: str = "") -> None:
    """Set a label's own weight (it overrides its policy's), or with ``None`` let it weigh what its policy does."""
    require_policy_staff(actor)
    if weight is not None:
        _check_weight(weight)
    row = LabelStrikes.objects.select_for_update().filter(label=label).first()
    before = {"weight": row.weight if row else None}
    if weight is None:
        if row is not None:
            row.delete()
    else:
        row = row or LabelStrikes(label=label)
        row.weight = weight
        _validated(row)
        row.save()
    audit_record(
        actor=actor,
        action="strikes.label_weight_set",
        target=label,
        before=before,
        after={"weight": weight},
        reason=reason,
    )


def _threshold_check(threshold: StrikeThreshold) -> None:
    if threshold.action not in ActionKind.values:
        raise ApplicationError(f"Unknown action '{threshold.action}'.", field="action")
    if threshold.action == ActionKind.CUSTOM:
        if not threshold.custom_action.strip():
            raise ApplicationError("A custom action needs its name.", field="custom_action")
    else:
        threshold.custom_action = ""
    if threshold.duration is not None:
        if threshold.action not in TIMED_KINDS:
            raise ApplicationError("Only a restriction or a suspension can be for a time.", field="duration")
        if not timedelta(0) < threshold.duration <= MAX_DURATION:
            raise ApplicationError(f"A duration is more than 0 and at most {MAX_DURATION.days} days.", field="duration")
    if threshold.strikes < 1:
        raise ApplicationError("A threshold is at least 1 strike.", field="strikes")
    clash = StrikeThreshold.objects.filter(family=threshold.family, strikes=threshold.strikes)
    if threshold.pk:
        clash = clash.exclude(pk=threshold.pk)
    if clash.exists():
        raise ApplicationError(
            f"The '{threshold.family}' family already has a threshold at {threshold.strikes} strikes.", field="strikes"
        )
    _validated(threshold)


def _save(threshold: StrikeThreshold) -> None:
    try:
        with transaction.atomic():
            threshold.save()
    except IntegrityError as exc:  # a concurrent save of the same (family, strikes)
        raise ApplicationError(
            f"The '{threshold.family}' family already has a threshold at {threshold.strikes} strikes.", field="strikes"
        ) from exc


@transaction.atomic
def threshold_create(
    *,
    actor: User,
    family: str,
    strikes: int,
    action: str,
    custom_action: str = "",
    duration: timedelta | None = None,
    reason: str = "",
) -> StrikeThreshold:
    """A new active threshold: reaching ``strikes`` active strikes in ``family`` takes ``action`` (for
    ``duration`` when a restriction or suspension is for a time)."""
    require_policy_staff(actor)
    threshold = StrikeThreshold(
        family=family.strip(), strikes=strikes, action=action, custom_action=custom_action.strip(), duration=duration
    )
    _threshold_check(threshold)
    _save(threshold)
    audit_record(
        actor=actor,
        action="strikes.threshold_created",
        target=threshold,
        before=None,
        after=_threshold_values(threshold),
        reason=reason,
    )
    return threshold


@transaction.atomic
def threshold_update(
    *,
    actor: User,
    threshold: StrikeThreshold,
    strikes: int,
    action: str,
    custom_action: str = "",
    duration: timedelta | None = None,
    is_active: bool = True,
    reason: str = "",
) -> StrikeThreshold:
    """Change a threshold's count, action, duration, or switch it off (``is_active=False``: it fires no more; the
    actions it took stay, each recording what it did). Its family stays: a threshold of another family is
    another threshold. Actions taken before keep their own kind and duration."""
    require_policy_staff(actor)
    threshold = StrikeThreshold.objects.select_for_update().get(pk=threshold.pk)
    before = _threshold_values(threshold)
    threshold.strikes, threshold.action, threshold.custom_action = strikes, action, custom_action.strip()
    threshold.duration, threshold.is_active = duration, is_active
    _threshold_check(threshold)
    after = _threshold_values(threshold)
    if after == before:
        return threshold
    _save(threshold)
    audit_record(
        actor=actor, action="strikes.threshold_changed", target=threshold, before=before, after=after, reason=reason
    )
    return threshold


def threshold_deactivate(*, actor: User, threshold: StrikeThreshold, reason: str) -> StrikeThreshold:
    """Switch a threshold off, everything else kept (how a threshold is removed: its actions point at it)."""
    if not reason.strip():
        raise ApplicationError("Say why the threshold is switched off.", field="reason")
    return threshold_update(
        actor=actor,
        threshold=threshold,
        strikes=threshold.strikes,
        action=threshold.action,
        custom_action=threshold.custom_action,
        duration=threshold.duration,
        is_active=False,
        reason=reason,
    )
