"""What a policy's violations cost an account: its strike family, weight, expiry and approval rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings

from ops_platform.core.models import Policy
from queues.accounts.models import PolicyStrikes


@dataclass(frozen=True)
class StrikeTerms:
    family: str
    weight: int
    expires_after: timedelta
    suspension_needs_approval: bool


def policy_terms(policy: Policy) -> StrikeTerms:
    return terms_from(policy, PolicyStrikes.objects.filter(policy=policy).first())


def terms_from(policy: Policy, row: PolicyStrikes | None) -> StrikeTerms:
    """The terms of ``policy`` given its settings row (None: the defaults, its own family and a weight of 1)."""
    if row is None:
        return StrikeTerms(policy.slug, 1, timedelta(days=settings.ACCOUNT_STRIKE_EXPIRY_DAYS), False)
    return StrikeTerms(row.family, row.weight, row.expires_after, row.suspension_needs_approval)
