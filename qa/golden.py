"""Golden items: content with a known answer, injected into live queues and scored automatically.

A copy enters like any intake item (received, then scored and routed by triage), so the reviewer sees
what they see for every item: classifier scores, the routing rule, history. Only ``is_golden`` on the
item marks it, which no page or API shows; its decision is sent to no client. Each queue receives a
configured share of golden copies relative to the items that entered it since the last run.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import EnforcementAction, Policy, User
from ops_platform.core.services import audit_record
from qa.models import GoldenInjection, GoldenItem, GoldenRate, QaSample, SampleState
from qa.review import require_qa
from qa.sampling import draw
from queues.models import Decision, ItemEvent, ItemKind, ItemState, Queue, ReviewItem
from routing.services import triage_enqueue

GOLDEN_SOURCE = "qa-golden"


@transaction.atomic
def golden_create(
    *,
    actor: User,
    queue: Queue,
    text: str,
    expected_is_violation: bool,
    expected_policy: Policy | None = None,
    expected_action: EnforcementAction | None = None,
    rationale: str = "",
    surface: str = "",
    language: str = "",
    report_reasons: list[str] | None = None,
    media_urls: list[str] | None = None,
    origin_item: ReviewItem | None = None,
) -> GoldenItem:
    require_qa(actor)
    if not text.strip() and not media_urls:
        raise ApplicationError("A golden item needs content.", field="text")
    if expected_is_violation and expected_policy is None:
        raise ApplicationError("A violating golden item needs its policy.", field="expected_policy")
    golden = GoldenItem.objects.create(
        text=text, media_urls=media_urls or [], surface=surface[:100], language=language[:16],
        report_reasons=report_reasons or [], origin_item=origin_item, queue=queue,
        expected_is_violation=expected_is_violation,
        expected_policy=expected_policy if expected_is_violation else None,
        expected_action=expected_action if expected_is_violation else None,
        rationale=rationale[:5000], created_by=actor,
    )  # fmt: skip
    audit_record(actor=actor, action="qa.golden_create", target=golden,
                 after={"queue": queue.slug, "expected_is_violation": expected_is_violation,
                        "expected_policy": expected_policy.slug if expected_policy else None})  # fmt: skip
    return golden


def golden_from_sample(*, actor: User, sample: QaSample, rationale: str = "") -> GoldenItem:
    """An adjudicated (or QA-verified) sample's item becomes a golden item with the settled answer."""
    if sample.state != SampleState.CLOSED:
        raise ApplicationError("Only a closed sample has a settled answer.", field="sample")
    adjudication = getattr(sample, "adjudication", None)
    if adjudication is not None:
        violation, policy, action = adjudication.is_violation, adjudication.policy, adjudication.action
        rationale = rationale or adjudication.rationale
    else:
        violation, policy, action = sample.original_is_violation, sample.original_policy, sample.original_action
    item = sample.item
    queue = sample.original_queue or item.queue
    if queue is None:
        raise ApplicationError("The item has no queue to inject its golden copies into.", field="queue")
    return golden_create(
        actor=actor, queue=queue, text=item.text, expected_is_violation=violation, expected_policy=policy,
        expected_action=action, rationale=rationale, surface=item.surface, language=item.language,
        report_reasons=list(item.report_reasons), media_urls=list(item.media_urls), origin_item=item,
    )  # fmt: skip


@transaction.atomic
def golden_rate_set(*, actor: User, queue: Queue, rate: float) -> GoldenRate:
    require_qa(actor)
    if not 0 <= rate <= 0.2:
        raise ApplicationError("A golden rate is between 0 and 0.2 (one in five items).", field="rate")
    setting, created = GoldenRate.objects.get_or_create(queue=queue, defaults={"rate": rate})
    before = None if created else {"rate": setting.rate}
    setting.rate = rate
    setting.save(update_fields=["rate"])
    audit_record(actor=actor, action="qa.golden_rate", target=setting, before=before, after={"rate": rate})
    return setting


def golden_copy(golden: GoldenItem, *, now: datetime) -> ReviewItem:
    """A fresh received item with the golden content, marked golden and nothing else."""
    origin = golden.origin_item
    return ReviewItem.objects.create(
        source=GOLDEN_SOURCE, external_id=uuid.uuid4().hex,
        kind=ItemKind.USER_REPORT if golden.report_reasons else ItemKind.CONTENT,
        text=golden.text, media_urls=golden.media_urls, surface=golden.surface, language=golden.language,
        author_ref=origin.author_ref if origin else "", report_reasons=golden.report_reasons,
        report_count=len(golden.report_reasons), received_at=now, is_golden=True,
    )  # fmt: skip


def golden_inject(*, now: datetime | None = None) -> int:
    """Give each queue with a golden rate its share of golden copies for the items that entered it."""
    now = now or timezone.now()
    created: list[int] = []
    with transaction.atomic():
        for setting in GoldenRate.objects.select_for_update().select_related("queue").filter(rate__gt=0):
            since = setting.last_injected_at or now
            entered = ItemEvent.objects.filter(
                queue=setting.queue, event="queued", at__gte=since, at__lt=now, item__is_golden=False
            ).count()
            expected = entered * setting.rate
            # Whole copies, and the fraction as a chance, so low-volume queues still get some over time.
            count = math.floor(expected) + (draw("golden", f"{setting.pk}@{now.isoformat()}") < expected % 1)
            goldens = list(GoldenItem.objects.filter(queue=setting.queue, is_active=True))
            for n in range(count if goldens else 0):
                golden = goldens[int(draw("golden-pick", f"{setting.pk}@{now.isoformat()}#{n}") * len(goldens))]
                item = golden_copy(golden, now=now)
                GoldenInjection.objects.create(golden=golden, item=item, injected_at=now)
                created.append(item.pk)
            setting.last_injected_at = now
            setting.save(update_fields=["last_injected_at"])
        if created:
            ids = list(created)
            transaction.on_commit(lambda: triage_enqueue(ids))
    return len(created)


def golden_answer_matches(golden: GoldenItem, decision: Decision) -> bool:
    if decision.is_violation != golden.expected_is_violation:
        return False
    if golden.expected_is_violation and decision.policy_id != golden.expected_policy_id:
        return False
    return not (golden.expected_action_id and decision.action_id != golden.expected_action_id)


def golden_results_score(*, now: datetime | None = None, limit: int = 5_000) -> int:
    """Score golden copies people have decided: the first human decision against the known answer."""
    now = now or timezone.now()
    scored = 0
    with transaction.atomic():
        waiting = list(
            GoldenInjection.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("golden")
            .filter(scored_at__isnull=True, item__state=ItemState.DECIDED)[:limit]
        )
        for injection in waiting:
            decision = (
                Decision.objects.filter(item_id=injection.item_id)
                .select_related("reviewer")
                .order_by("decided_at", "pk")
                .first()
            )
            if decision is None:
                continue
            injection.decision, injection.reviewer = decision, decision.reviewer
            injection.vendor_id = decision.vendor_id  # the reviewer's vendor when they decided
            injection.correct = golden_answer_matches(injection.golden, decision)
            injection.scored_at = now
            injection.save(update_fields=["decision", "reviewer", "vendor", "correct", "scored_at"])
            scored += 1
    return scored
