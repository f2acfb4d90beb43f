"""Reads on items and queues, for the reviewer workspace, the wellness and bulk pages, and the API."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.utils import timezone

from ops_platform.core.localday import today_start
from ops_platform.core.models import AuditLog, DecisionLabel, EnforcementAction, Policy, User
from ops_platform.core.selectors import people_named_for
from queues.models import Decision, ExposureCategory, GroundTruth, ItemKind, ItemState, Queue, ReviewItem
from queues.wellness import exposure_opened, exposure_today


def item_get_for_source(*, item_id: int, source: str) -> ReviewItem | None:
    """An item as its submitting client may see it: another source's item does not exist for it."""
    return ReviewItem.objects.select_related("queue").filter(pk=item_id, source=source, is_golden=False).first()


def item_final_decision(*, item: ReviewItem) -> Decision | None:
    decisions: QuerySet[Decision] = item.decisions.select_related("policy", "action").filter(
        is_final=True, superseded_by__isnull=True
    )
    return decisions.order_by("-decided_at").first()


def items_load(item_ids: Sequence[int], *, fields: Sequence[str]) -> list[ReviewItem]:
    """Items in id order with only ``fields`` loaded (triage reads a few columns of many items: docs/performance.md).
    By id alone: callers check the state (see ``services.placement.received_locked`` on the partial index)."""
    return list(ReviewItem.objects.filter(pk__any=item_ids).only(*fields).order_by("pk"))


# --- the reviewer workspace --------------------------------------------------------------------------


def queues_active() -> QuerySet[Queue]:
    """Queues open for work (a retired queue's pages answer 404)."""
    return Queue.objects.filter(is_active=True)


def item_held(*, pk: int, reviewer: User) -> ReviewItem | None:
    """The item ``reviewer`` holds under a claim, with its queue; None for any other item, so ids cannot be
    probed."""
    return (
        ReviewItem.objects.select_related("queue", "queue__exposure_category")
        .filter(pk=pk, state=ItemState.CLAIMED, assignee=reviewer)
        .first()
    )


def item_assigned(*, pk: int, reviewer: User) -> ReviewItem | None:
    """The item if it is assigned to ``reviewer`` (whatever its lease); None for another's item or no item."""
    return ReviewItem.objects.filter(pk=pk, assignee=reviewer).first()


def items_all() -> QuerySet[ReviewItem]:
    return ReviewItem.objects.all()


def escalation_seniors(item: ReviewItem, *, reviewer: User) -> QuerySet[User]:
    """Senior colleagues ``reviewer`` may escalate ``item`` to: nobody who decided it or the item it appeals,
    as claim-next would never give it to them."""
    return (
        User.objects.filter(groups__permissions__codename="bulk_decide")
        .exclude(pk=reviewer.pk)
        .exclude(decisions__item_id__in=[pk for pk in (item.pk, item.appeal_of_id) if pk])
        .distinct()
    )


def people_active() -> QuerySet[User]:
    return User.objects.filter(is_active=True)


def policies_all() -> QuerySet[Policy]:
    """Every policy, retired ones too: a form names one by id and the service refuses a retired one by name."""
    return Policy.objects.all()


def enforcement_actions_all() -> QuerySet[EnforcementAction]:
    """Every enforcement action, retired ones too (as :func:`policies_all`)."""
    return EnforcementAction.objects.all()


def decision_labels_all() -> QuerySet[DecisionLabel]:
    """Every decision label, retired ones too (as :func:`policies_all`)."""
    return DecisionLabel.objects.all()


def decision_labels_by_ids(ids: Sequence[int]) -> list[DecisionLabel]:
    """The labels of these ids that exist (an id of no label is left out; the service checks the rest)."""
    return list(DecisionLabel.objects.filter(pk__in=ids))


def exposure_categories() -> QuerySet[ExposureCategory]:
    return ExposureCategory.objects.all()


def queues_with_exposure() -> QuerySet[Queue]:
    """Open queues with their exposure category, for the wellness page."""
    return queues_active().select_related("exposure_category")


@dataclass(frozen=True)
class QueueRow:
    queue: Queue
    pending: int
    oldest: timedelta | None
    at_risk: int
    mine_today: int
    # For a queue under an exposure cap: items of its category this reviewer opened today, and the cap.
    opened_today: int | None = None
    daily_cap: int | None = None

    @property
    def capped(self) -> bool:
        return self.daily_cap is not None and (self.opened_today or 0) >= self.daily_cap

    @property
    def oldest_label(self) -> str:
        if self.oldest is None:
            return ""
        minutes = int(self.oldest.total_seconds() // 60)
        if minutes < 120:
            return f"{minutes} min"
        hours = minutes // 60
        return f"{hours} h" if hours < 48 else f"{hours // 24} d"


AT_RISK_WITHIN = timedelta(hours=1)


def queues_for_reviewer(user: User) -> list[QueueRow]:
    """The queues this reviewer may work, with what waits in them and what they did today."""
    profile = getattr(user, "reviewer_profile", None)
    if not user.has_perm("core.review_items") or profile is None:
        return []
    now = timezone.now()
    queues = [
        q
        for q in Queue.objects.filter(is_active=True)
        .select_related("exposure_category")
        .prefetch_related("allowed_teams", "allowed_vendors")
        if q.may_be_worked_by(profile)
    ]
    waiting = {
        row["queue"]: row
        for row in ReviewItem.objects.filter(queue__in=queues, state=ItemState.QUEUED)
        .values("queue")
        .annotate(
            pending=Count("pk"),
            oldest=Min("received_at"),
            at_risk=Count("pk", filter=Q(due_at__lte=now + AT_RISK_WITHIN)),
        )
    }
    start = today_start(now)
    today = dict(
        Decision.objects.filter(reviewer=user, decided_at__gte=start, queue__in=queues)
        .values_list("queue")
        .annotate(n=Count("pk"))
        .values_list("queue", "n")
    )
    exposure = exposure_today(user, now=now)
    rows = []
    for queue in queues:
        stats = waiting.get(queue.pk, {})
        oldest = stats.get("oldest")
        category = queue.exposure_category
        rows.append(
            QueueRow(
                queue=queue,
                pending=stats.get("pending", 0),
                oldest=now - oldest if oldest else None,
                at_risk=stats.get("at_risk", 0),
                mine_today=today.get(queue.pk, 0),
                opened_today=exposure.get(category.pk, 0) if category else None,
                daily_cap=category.daily_cap if category else None,
            )
        )
    return rows


def queues_to_offer(user: User, *, instead_of: Queue) -> list[QueueRow]:
    """Where a reviewer who reached a queue's exposure cap can go on working: open, uncapped queues with work."""
    capped_category = instead_of.exposure_category_id
    return [
        row
        for row in queues_for_reviewer(user)
        if row.queue.pk != instead_of.pk
        and row.pending
        and not row.capped
        and (capped_category is None or row.queue.exposure_category_id != capped_category)
    ]


@dataclass(frozen=True)
class ExposureRow:
    reviewer: User
    opened: dict[int, int]  # category id -> items opened today


def exposure_board(*, now: datetime | None = None) -> tuple[list[ExposureCategory], list[ExposureRow]]:
    """For ops managers: each reviewer's exposure today per category (only reviewers with any)."""
    now = now or timezone.now()
    categories = list(ExposureCategory.objects.prefetch_related("queues"))
    counts: dict[int, dict[int, int]] = {}
    for actor_id, category_id, n in (
        exposure_opened(since=today_start(now))
        .values_list("actor", "queue__exposure_category")
        .annotate(n=Count("pk"))
        .values_list("actor", "queue__exposure_category", "n")
    ):
        counts.setdefault(actor_id, {})[category_id] = n
    people = User.objects.filter(pk__in=counts).order_by("username")
    return categories, [ExposureRow(person, counts[person.pk]) for person in people]


@dataclass(frozen=True)
class QuickDecision:
    key: str
    label: str
    policy: Policy | None
    action: EnforcementAction | None
    decision_label: DecisionLabel | None


def queue_policies(queue: Queue) -> list[Policy]:
    """What a decision in ``queue`` may use: its active policies, each with only its active labels and actions."""
    return list(
        queue.policies.filter(is_active=True).prefetch_related(
            Prefetch("labels", queryset=DecisionLabel.objects.filter(is_active=True)),
            Prefetch("enforcement_actions", queryset=EnforcementAction.objects.filter(is_active=True)),
        )
    )


def quick_decisions(queue: Queue) -> list[QuickDecision]:
    """One-key decisions for a queue: 'no violation', then per policy its first label and usual action."""
    quick = [QuickDecision("n", "No violation", None, None, None)]
    policies = queue_policies(queue)
    for index, policy in enumerate(policies[:9], start=1):
        actions = sorted(policy.enforcement_actions.all(), key=lambda a: a.strength)
        action = next((a for a in actions if a.slug == "remove"), actions[0] if actions else None)
        label = next(iter(policy.labels.all()), None)
        quick.append(
            QuickDecision(str(index), f"{policy.name}: {action.name if action else 'violation'}", policy, action, label)
        )
    return quick


def author_history(item: ReviewItem, *, limit: int = 20) -> list[Decision]:
    """The author's earlier decided items on this platform, newest first. Golden copies are QA's content, not
    the author's: they never appear here (nor in the author counts triage uses)."""
    if not item.author_ref:
        return []
    return list(
        Decision.objects.filter(
            item__source=item.source,
            item__author_ref=item.author_ref,
            item__is_golden=False,
            is_final=True,
            superseded_by__isnull=True,
        )
        .exclude(item=item)
        .select_related("policy", "action", "item")
        .order_by("-decided_at")[:limit]
    )


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    event: str
    queue_slug: str
    actor: str  # as the viewer may see them: "you", a name, a role, or the rule or process that acted
    reason: str  # blank when there is none, or when it was written by someone the viewer may not name


def item_history(item: ReviewItem, *, viewer: User) -> list[HistoryEntry]:
    """The item's history as ``viewer`` may read it. People are named as ``people_named_for`` says; a reason a
    person wrote (why they skipped or escalated) is free text that can name them or their team, so it is shown
    only where the person is. Rules and processes are shown as recorded, with their reasons."""
    events = list(item.events.select_related("queue").order_by("at", "pk"))
    named = people_named_for(viewer=viewer, people={e.actor_id for e in events if e.actor_id is not None})
    entries = []
    for event in events:
        reason = event.data.get("reason") if isinstance(event.data, dict) else None
        actor = event.actor_label
        if event.actor_id is not None:
            naming = named[event.actor_id]
            actor = naming.label
            reason = reason if naming.identified else None
        queue_slug = event.queue.slug if event.queue else ""
        entries.append(HistoryEntry(event.at, event.event, queue_slug, actor, str(reason or "")))
    return entries


def items_reserved(*, queues: Sequence[Queue] | None = None) -> list[ReviewItem]:
    """Items escalated to a named colleague and not decided yet, soonest reservation end first: for leads, who
    can give one back to everyone. ``queues`` narrows them to those queues (None: every queue)."""
    items = ReviewItem.objects.filter(
        reserved_for__isnull=False, state__in=[ItemState.QUEUED, ItemState.CLAIMED]
    ).select_related("queue", "reserved_for")
    if queues is not None:
        items = items.filter(queue__in=queues)
    return list(items.order_by("reserved_until", "pk")[:500])


def ground_truth_latest() -> QuerySet[GroundTruth]:
    """The latest verified label of each item (a later record supersedes an earlier one), by item id. The one
    definition of an item's ground truth: QA's export, the classifier figures and the local model's training."""
    latest = GroundTruth.objects.filter(item=OuterRef("item")).order_by("-recorded_at", "-pk").values("pk")[:1]
    return GroundTruth.objects.filter(pk=Subquery(latest)).order_by("item_id")


# --- bulk decisions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkFilter:
    """What a senior reviewer narrows a queue to before selecting items; every field is optional."""

    text: str = ""
    tag: str = ""
    surface: str = ""
    language: str = ""
    min_priority: int | None = None


def _has_tag(tag: str) -> Q:
    # JSON containment is PostgreSQL-only; the quoted tag within the stored JSON text works everywhere.
    return Q(tags__icontains=json.dumps(tag))


def bulk_candidates(queue: Queue, actor: User, filters: BulkFilter) -> QuerySet[ReviewItem]:
    """Waiting items of ``queue`` a bulk decision may close, oldest first."""
    items = (
        ReviewItem.objects.filter(queue=queue, state=ItemState.QUEUED, required_reviews=1)
        .exclude(kind=ItemKind.APPEAL)
        .filter(Q(reserved_for__isnull=True) | Q(reserved_for=actor))
    )
    # Adjudication needs someone to read the disagreeing decisions; it never goes in a batch.
    items = items.exclude(_has_tag("adjudication"))
    if filters.text:
        items = items.filter(text__icontains=filters.text)
    if filters.tag:
        items = items.filter(_has_tag(filters.tag))
    if filters.surface:
        items = items.filter(surface=filters.surface)
    if filters.language:
        items = items.filter(language=filters.language)
    if filters.min_priority is not None:
        items = items.filter(priority__gte=filters.min_priority)
    return items.order_by("received_at", "pk")


@dataclass(frozen=True)
class BatchRow:
    batch_id: str
    at: datetime
    by: str
    items: int
    decision: str  # "no violation" or "policy / action"
    reverted_by: str  # empty while it stands
    revertible_until: datetime


def bulk_batches_recent(queue: Queue, *, now: datetime | None = None) -> list[BatchRow]:
    """The queue's bulk decisions that may still be reverted, newest first, and whether they were."""
    now = now or timezone.now()
    window = settings.BULK_DECISION_REVERT_WINDOW
    entries = AuditLog.objects.filter(
        target_type=queue._meta.label_lower,
        target_id=str(queue.pk),
        action__in=["decision.bulk", "decision.bulk_revert"],
        at__gte=now - window,
    ).order_by("at", "id")
    reverted: dict[str, str] = {}
    batches = []
    for entry in entries:
        if entry.action == "decision.bulk_revert":
            reverted[str((entry.before or {}).get("batch_id"))] = entry.actor_label
            continue
        after = entry.after or {}
        if not after.get("items"):
            continue
        verdict = "no violation"
        if after.get("is_violation"):
            verdict = f"{after.get('policy')} / {after.get('action') or 'no action'}"
        batches.append((str(after.get("batch_id")), entry, len(after["items"]), verdict))
    return [
        BatchRow(batch, entry.at, entry.actor_label, n, verdict, reverted.get(batch, ""), entry.at + window)
        for batch, entry, n, verdict in reversed(batches)
    ]


def queue_ids_admitting(user: User) -> frozenset[int]:
    """Every queue (retired ones too) whose allow-lists and skills admit ``user``, by the rule claim-next applies
    (``Queue.admits``): what a vendor's people may see of the items."""
    return frozenset(q.pk for q in Queue.objects.only("pk") if q.admits(user.pk))
