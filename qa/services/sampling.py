"""Drawing decisions for QA: sampling plans applied to every final decision and every rule auto-action.

The draw hashes what was decided (the item's source and external id, and the decision's time) and compares
the result with the rate, instead of calling a random generator: the same decision always gets the same
answer, so re-running the sampler (a retried task, two beat runs) draws nothing twice, and an auditor can
recompute who was sampled. The rate that applies to a decision is a fixed function of its attributes,
which makes it the decision's exact inclusion probability.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import EnforcementAction, Policy, User
from ops_platform.core.services import audit_record
from qa.models import QaSample, SampleReason, SamplingCursor, SamplingPlan
from qa.statistics import sample_size
from queues.models import Decision, ItemEvent, ItemState
from routing.scoring.selectors import items_scores

# Decisions younger than this are left for the next run: a transaction that took an id earlier may not
# have committed yet, and a cursor past it would skip it for good.
SETTLE = timedelta(seconds=30)
BATCH = 5_000


def draw(stream: str, key: str) -> float:
    """A uniform number in [0, 1) fixed by its inputs."""
    digest = hashlib.blake2b(f"{stream}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Candidate:
    """What the sampler knows about one decision (or auto-action) when it decides whether to draw it."""

    stream: str
    key: str  # what identifies the decision to the draw: the item's source/external id and the decision time
    item_id: int
    decision: Decision | None
    is_violation: bool
    policy_id: int | None
    action_id: int | None
    queue_id: int | None
    reviewer_id: int | None
    vendor_id: int | None
    decided_at: datetime
    top_score: float | None
    reviewer_decisions_before: int


def plan_for(plans: Sequence[SamplingPlan], c: Candidate) -> SamplingPlan | None:
    """The most specific active plan whose scope holds the candidate."""
    matching = [
        p
        for p in plans
        if (p.queue_id is None or p.queue_id == c.queue_id)
        and (p.policy_id is None or p.policy_id == c.policy_id)
        and (p.vendor_id is None or p.vendor_id == c.vendor_id)
        and (p.reviewer_id is None or p.reviewer_id == c.reviewer_id)
    ]
    return max(matching, key=lambda p: (p.specificity, -p.pk), default=None)


def inclusion(plan: SamplingPlan, c: Candidate) -> tuple[float, SampleReason]:
    """The candidate's probability of being drawn under ``plan``, and the reason that set it."""
    if c.decision is None:  # a rule auto-action: only the auto-action rate applies
        return (plan.auto_action_rate or 0.0), SampleReason.AUTO_ACTION
    rates: list[tuple[float, SampleReason]] = [(plan.rate, SampleReason.RANDOM)]
    stratum = plan.rate_violation if c.is_violation else plan.rate_no_violation
    if stratum is not None:
        rates = [(stratum, SampleReason.OUTCOME)]  # the stratum's rate replaces the plain share
    uncertain = c.top_score is not None and abs(c.top_score - 0.5) <= plan.low_confidence_band
    if plan.low_confidence_rate is not None and uncertain:
        rates.append((plan.low_confidence_rate, SampleReason.LOW_CONFIDENCE))
    if plan.new_reviewer_rate is not None and c.reviewer_decisions_before < plan.new_reviewer_decisions:
        rates.append((plan.new_reviewer_rate, SampleReason.NEW_REVIEWER))
    rate, reason = max(rates, key=lambda r: r[0])
    return min(max(rate, 0.0), 1.0), reason


def _candidates_from_decisions(decisions: list[Decision]) -> list[Candidate]:
    scores, _ = items_scores([d.item_id for d in decisions])
    reviewers = {d.reviewer_id for d in decisions}
    # Decisions each reviewer made before this batch; within the batch they are counted up in id order.
    before = dict(
        Decision.objects.filter(reviewer_id__in=reviewers, pk__lt=min((d.pk for d in decisions), default=0))
        .values_list("reviewer")
        .annotate(n=Count("pk"))
        .values_list("reviewer", "n")
    )
    out = []
    for d in sorted(decisions, key=lambda d: d.pk):
        n = before.get(d.reviewer_id, 0)
        before[d.reviewer_id] = n + 1
        item_scores = scores.get(d.item_id)
        out.append(
            Candidate(
                stream="decision",
                key=f"{d.item.source}/{d.item.external_id}@{d.decided_at.isoformat()}",
                item_id=d.item_id,
                decision=d,
                is_violation=d.is_violation,
                policy_id=d.policy_id,
                action_id=d.action_id,
                queue_id=d.queue_id,
                reviewer_id=d.reviewer_id,
                vendor_id=d.vendor_id,
                decided_at=d.decided_at,
                top_score=max(item_scores.values()) if item_scores else None,
                reviewer_decisions_before=n,
            )
        )
    return out


def _candidates_from_auto_actions(events: list[ItemEvent]) -> list[Candidate]:
    policies = dict(Policy.objects.values_list("slug", "pk"))
    actions = dict(EnforcementAction.objects.values_list("slug", "pk"))
    return [
        Candidate(
            stream="auto_action",
            key=f"{e.item.source}/{e.item.external_id}",
            item_id=e.item_id,
            decision=None,
            is_violation=True,
            policy_id=policies.get(str(e.data.get("policy"))),
            action_id=actions.get(str(e.data.get("action"))),
            queue_id=None,
            reviewer_id=None,
            vendor_id=None,
            decided_at=e.at,
            top_score=None,
            reviewer_decisions_before=0,
        )
        for e in events
    ]


def samples_draw(candidates: Iterable[Candidate], plans: Sequence[SamplingPlan], *, now: datetime) -> list[QaSample]:
    """Apply the plans to candidates and store the drawn ones (idempotent: a drawn decision is drawn once)."""
    drawn = []
    for c in candidates:
        plan = plan_for(plans, c)
        if plan is None:
            continue
        p, reason = inclusion(plan, c)
        if p <= 0 or draw(c.stream, c.key) >= p:
            continue
        drawn.append(
            QaSample(
                item_id=c.item_id,
                decision=c.decision,
                plan=plan,
                reason=reason,
                inclusion_probability=p,
                sampled_at=now,
                original_is_violation=c.is_violation,
                original_policy_id=c.policy_id,
                original_action_id=c.action_id,
                original_reviewer_id=c.reviewer_id,
                original_vendor_id=c.vendor_id,
                original_queue_id=c.queue_id,
                original_decided_at=c.decided_at,
            )
        )
    return QaSample.objects.bulk_create(drawn, ignore_conflicts=True)


def decisions_sample(*, now: datetime | None = None, limit: int = BATCH) -> int:
    """Consider the final decisions and auto-actions made since the last run; returns how many were drawn."""
    now = now or timezone.now()
    plans = list(SamplingPlan.objects.filter(is_active=True))
    drawn = 0
    with transaction.atomic():
        cursor, _ = SamplingCursor.objects.select_for_update().get_or_create(stream="decision")
        decisions = list(
            Decision.objects.filter(pk__gt=cursor.last_id, decided_at__lt=now - SETTLE)
            .select_related("item", "reviewer__reviewer_profile__team")
            .order_by("pk")[:limit]
        )
        if decisions:
            eligible = [d for d in decisions if d.is_final and d.supersedes_id is None and not d.appeal_outcome]
            eligible = [d for d in eligible if not d.item.is_golden]
            if plans:
                drawn += len(samples_draw(_candidates_from_decisions(eligible), plans, now=now))
            cursor.last_id = decisions[-1].pk
            cursor.save(update_fields=["last_id", "updated_at"])
    with transaction.atomic():
        cursor, _ = SamplingCursor.objects.select_for_update().get_or_create(stream="auto_action")
        events = list(
            ItemEvent.objects.filter(
                pk__gt=cursor.last_id, event="auto_actioned", to_state=ItemState.AUTO_ACTIONED, at__lt=now - SETTLE
            )
            .select_related("item")
            .order_by("pk")[:limit]
        )
        if events:
            if plans:
                actioned = [e for e in events if not e.item.is_golden]
                drawn += len(samples_draw(_candidates_from_auto_actions(actioned), plans, now=now))
            cursor.last_id = events[-1].pk
            cursor.save(update_fields=["last_id", "updated_at"])
    return drawn


# --- plans ------------------------------------------------------------------------------------------

RATE_FIELDS = (
    "rate",
    "rate_violation",
    "rate_no_violation",
    "low_confidence_rate",
    "auto_action_rate",
    "new_reviewer_rate",
)


@transaction.atomic
def plan_save(*, actor: User, plan: SamplingPlan, reason: str = "") -> SamplingPlan:
    """Create or change a plan (QA leads); every rate must be a probability. Audited."""
    for name in RATE_FIELDS:
        value = getattr(plan, name)
        if value is not None and not (0 <= value <= 1 and math.isfinite(value)):
            raise ApplicationError(f"{name.replace('_', ' ')} must be between 0 and 1.", field=name)
    if not 0 <= plan.low_confidence_band <= 0.5:
        raise ApplicationError("The low-confidence band is between 0 and 0.5.", field="low_confidence_band")
    if not plan.name.strip():
        raise ApplicationError("Name the plan.", field="name")
    before = None
    if plan.pk:
        old = SamplingPlan.objects.get(pk=plan.pk)
        before = {f: getattr(old, f) for f in (*RATE_FIELDS, "is_active")}
    else:
        plan.created_by = actor
    plan.save()
    audit_record(
        actor=actor,
        action="qa.plan_save",
        target=plan,
        before=before,
        after={f: getattr(plan, f) for f in (*RATE_FIELDS, "is_active")},
        reason=reason,
    )
    return plan


def plan_sample_size(
    *, expected_error_rate: float, margin: float, confidence: float = 0.95, population: int | None = None
) -> int:
    """How many re-reviews estimate an error rate within ``margin`` (n = z²p(1-p)/e²)."""
    return sample_size(p=expected_error_rate, margin=margin, confidence=confidence, population=population)


def plan_rate_for(*, sample: int, decisions_per_period: int) -> float:
    """The random share that yields ``sample`` re-reviews out of a period's decisions."""
    if decisions_per_period <= 0:
        return 0.0
    return min(1.0, sample / decisions_per_period)
