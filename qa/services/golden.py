"""Golden items: content with a known answer, injected into live queues and scored automatically.

A copy enters like any intake item (received, then scored and routed by triage), so the reviewer sees
what they see for every item: classifier scores, the routing rule, history, and a real item's context
(client source, author and their history, metadata). Only ``is_golden`` on the item marks it, which no
page or API shows; its decision is sent to no client, and it counts in no author's history. Each queue receives a
configured share of golden copies relative to the items that entered it since the last run.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import ApiClient, EnforcementAction, Policy, User
from ops_platform.core.services import audit_record
from qa.models import GoldenInjection, GoldenItem, GoldenRate, QaSample, SampleState
from qa.services.review import require_qa
from qa.services.sampling import draw
from queues.models import Decision, ItemEvent, ItemKind, ItemState, Queue, ReviewItem
from queues.services import decision_scope_validate
from routing.intake.serializers import MAX_METADATA_BYTES
from routing.intake.services import items_receive
from routing.scoring.media.models import MediaAsset
from routing.scoring.media.services import media_copy

# Only for a copy made while no real item ever entered its queue (there is nothing it could be told from then).
GOLDEN_SOURCE = "qa-golden"
# Where a written golden item borrows its context: one of the queue's latest real items, of this age at most.
CONTEXT_WINDOW = timedelta(days=30)
CONTEXT_CANDIDATES = 200
GOLDEN_KINDS = (ItemKind.CONTENT, ItemKind.USER_REPORT)


@dataclass(frozen=True)
class GoldenContext:
    """What a copy needs besides the content to look like a real item: whose item, from which client, with what
    the client sent about it. Author history is computed from (source, author_ref)."""

    source: str
    author_ref: str
    metadata: dict[str, Any]


def golden_context_default(
    queue: Queue, *, key: str, source: str = "", now: datetime | None = None
) -> GoldenContext | None:
    """The context of a recent real item of ``queue`` (of ``source`` when given), picked by ``key`` so that
    golden items written together do not all borrow the same author; None when the queue has none."""
    now = now or timezone.now()
    recent = ReviewItem.objects.filter(queue=queue, is_golden=False, kind__in=GOLDEN_KINDS)
    if source:
        recent = recent.filter(source=source)
    candidates = list(
        recent.filter(received_at__gte=now - CONTEXT_WINDOW)
        .order_by("-received_at", "-pk")
        .values_list("source", "author_ref", "metadata")[:CONTEXT_CANDIDATES]
    ) or list(recent.order_by("-pk").values_list("source", "author_ref", "metadata")[:1])
    if not candidates:
        return None
    chosen_source, author_ref, metadata = candidates[int(draw("golden-context", key) * len(candidates))]
    return GoldenContext(chosen_source, author_ref, metadata or {})


def _metadata_checked(metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise ApplicationError("Metadata is a JSON object.", field="metadata")
    if len(json.dumps(metadata, ensure_ascii=False).encode("utf-8")) > MAX_METADATA_BYTES:
        raise ApplicationError(f"Metadata is at most {MAX_METADATA_BYTES} bytes, as at intake.", field="metadata")
    return metadata


@transaction.atomic
def _expected_answer_offered(queue: Queue, policy: Policy | None, action: EnforcementAction | None) -> None:
    """A golden item expects only an answer its queue's decide form offers: else every reviewer 'fails' it."""
    fields = {"policy": "expected_policy", "action": "expected_action"}
    try:
        decision_scope_validate(queue, policy=policy, action=action)
        if policy is not None and not policy.is_active:
            raise ApplicationError(f"Policy '{policy.slug}' is retired.", field="policy")
        if action is not None and not action.is_active:
            raise ApplicationError(f"Action '{action.slug}' is retired.", field="action")
        if action is not None and policy is not None and not policy.enforcement_actions.filter(pk=action.pk).exists():
            raise ApplicationError(f"'{action.slug}' is not an action of policy '{policy.slug}'.", field="action")
    except ApplicationError as refused:
        raise ApplicationError(refused.message, field=fields.get(refused.field or "", refused.field)) from None


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
    kind: str = "",
    source: str = "",
    author_ref: str = "",
    metadata: dict[str, Any] | None = None,
) -> GoldenItem:
    """A golden item. Its copies must be indistinguishable from real items, so it carries a real item's context:
    made from an item, that item's kind, source, author and metadata; written by a lead, what they enter, and
    for what they leave blank the source, author and metadata of a recent real item of the queue."""
    require_qa(actor)
    if not text.strip() and not media_urls:
        raise ApplicationError("A golden item needs content.", field="text")
    if expected_is_violation and expected_policy is None:
        raise ApplicationError("A violating golden item needs its policy.", field="expected_policy")
    if expected_is_violation:
        _expected_answer_offered(queue, expected_policy, expected_action)
    reasons = report_reasons or []
    kind = kind or (origin_item.kind if origin_item else "") or (ItemKind.USER_REPORT if reasons else ItemKind.CONTENT)
    if kind not in GOLDEN_KINDS:
        raise ApplicationError("A golden item is content or a user report.", field="kind")
    if kind == ItemKind.USER_REPORT and not reasons:
        raise ApplicationError("A user report needs at least one reason.", field="report_reasons")
    if source and not ApiClient.objects.filter(source=source).exists():
        raise ApplicationError(f"No API client has the source '{source}'.", field="source")
    if metadata is not None:
        metadata = _metadata_checked(metadata)
    if origin_item is not None:
        context = GoldenContext(origin_item.source, origin_item.author_ref, origin_item.metadata or {})
    else:
        context = golden_context_default(queue, key=f"{queue.pk}:{text}", source=source) or GoldenContext(
            source, "", {}
        )
    golden = GoldenItem.objects.create(
        text=text,
        media_urls=media_urls or [],
        kind=kind,
        source=source or context.source,
        author_ref=(author_ref or context.author_ref)[:200],
        metadata=metadata if metadata else context.metadata,
        surface=surface[:100],
        language=language[:16],
        report_reasons=reasons,
        origin_item=origin_item,
        queue=queue,
        expected_is_violation=expected_is_violation,
        expected_policy=expected_policy if expected_is_violation else None,
        expected_action=expected_action if expected_is_violation else None,
        rationale=rationale[:5000],
        created_by=actor,
    )
    audit_record(
        actor=actor,
        action="qa.golden_create",
        target=golden,
        after={
            "queue": queue.slug,
            "expected_is_violation": expected_is_violation,
            "expected_policy": expected_policy.slug if expected_policy else None,
            "source": golden.source,
            "author_ref": golden.author_ref,
        },
    )
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
    if item.kind not in GOLDEN_KINDS:
        # A copy could not carry what an appeal shows beside its statement: the contested item and decision.
        raise ApplicationError("An appeal cannot become a golden item.", field="sample")
    queue = sample.original_queue or item.queue
    if queue is None:
        raise ApplicationError("The item has no queue to inject its golden copies into.", field="queue")
    return golden_create(
        actor=actor,
        queue=queue,
        text=item.text,
        expected_is_violation=violation,
        expected_policy=policy,
        expected_action=action,
        rationale=rationale,
        surface=item.surface,
        language=item.language,
        report_reasons=list(item.report_reasons),
        media_urls=list(item.media_urls),
        origin_item=item,
    )


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
    """A golden copy, entered as intake enters an item: stored received and handed to triage once committed."""
    (copy,) = _golden_copies_enter([golden], now=now)
    return copy


@transaction.atomic
def _golden_copies_enter(goldens: list[GoldenItem], *, now: datetime) -> list[ReviewItem]:
    """Copies of ``goldens`` entered through intake's own path (``items_receive``): one hand-off to triage for all,
    once committed, by which time each copy holds its golden's stored media (so triage fetches nothing)."""
    copies = [_golden_item(golden, now=now) for golden in goldens]
    created = items_receive(rows=copies)
    stored = ReviewItem.objects.in_bulk([created[copy.external_id] for copy in copies])
    entered = [stored[created[copy.external_id]] for copy in copies]
    by_golden: dict[int, list[ReviewItem]] = {}
    for golden, item in zip(goldens, entered, strict=True):
        if golden.media_urls:
            by_golden.setdefault(golden.pk, []).append(item)
    for golden in {g.pk: g for g in goldens if g.pk in by_golden}.values():
        source = _golden_media_source(golden)
        if source is not None:
            media_copy(source=source, targets=by_golden[golden.pk])
    return entered


def _golden_media_source(golden: GoldenItem) -> ReviewItem | None:
    """The item whose stored media a golden's copies show: the item it was made from, else its first copy whose
    media were fetched (a golden written by hand). None when neither has any: the copy fetches them itself."""
    if golden.origin_item_id and MediaAsset.objects.filter(item_id=golden.origin_item_id).exists():
        return golden.origin_item
    first = (
        GoldenInjection.objects.filter(golden=golden, item__media_assets__isnull=False)
        .order_by("injected_at", "pk")
        .select_related("item")
        .first()
    )
    return first.item if first is not None else None


def _golden_item(golden: GoldenItem, *, now: datetime) -> ReviewItem:
    """A fresh item (not yet stored) with the golden content and context, marked golden and nothing else. The
    external id is never shown to reviewers; random, it cannot take an id the client will send."""
    context = GoldenContext(golden.source, golden.author_ref, golden.metadata or {})
    if not golden.source:
        context = golden_context_default(golden.queue, key=f"{golden.pk}@{now.isoformat()}", now=now) or GoldenContext(
            GOLDEN_SOURCE, "", {}
        )
    return ReviewItem(
        source=context.source,
        external_id=uuid.uuid4().hex,
        kind=golden.kind,
        text=golden.text,
        media_urls=golden.media_urls,
        surface=golden.surface,
        language=golden.language,
        author_ref=context.author_ref,
        metadata=context.metadata,
        report_reasons=golden.report_reasons,
        report_count=len(golden.report_reasons),
        received_at=now,
        is_golden=True,
    )


def golden_inject(*, now: datetime | None = None) -> int:
    """Give each queue with a golden rate its share of golden copies for the items that entered it."""
    now = now or timezone.now()
    picked: list[GoldenItem] = []
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
                picked.append(goldens[int(draw("golden-pick", f"{setting.pk}@{now.isoformat()}#{n}") * len(goldens))])
            setting.last_injected_at = now
            setting.save(update_fields=["last_injected_at"])
        for golden, item in zip(picked, _golden_copies_enter(picked, now=now), strict=True):
            GoldenInjection.objects.create(golden=golden, item=item, injected_at=now)
    return len(picked)


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
