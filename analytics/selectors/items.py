"""The items behind a number: the drill-down every panel links to, by the same filter plus a slice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.http import QueryDict

from analytics.filters import MetricFilter
from analytics.rollups import ENTERING_EVENTS
from analytics.selectors.classifiers import classifier_items
from analytics.selectors.operations import items_behind
from ops_platform.core.errors import ApplicationError
from queues.models import Decision, ItemEvent, ItemState, ReviewItem

# Which moment the period applies to.
ON = ("received", "queued", "decided")
OPEN_STATES = (ItemState.QUEUED, ItemState.CLAIMED)
TEXT_SLICES = ("surface", "source", "language", "kind")


@dataclass(frozen=True)
class ItemsSlice:
    on: str = "received"
    state: str | None = None  # an ItemState, or "open" (queued or claimed)
    sla: str | None = None  # "met" or "missed", among decided items
    golden: str = "exclude"  # "exclude" (operational figures), "include" (workload) or "only"
    priority: int | None = None
    surface: str | None = None
    source: str | None = None
    language: str | None = None
    kind: str | None = None

    @classmethod
    def from_params(cls, params: QueryDict) -> ItemsSlice:
        on = params.get("on") or "received"
        if on not in ON:
            raise ApplicationError(f"'on' is one of {', '.join(ON)}.", field="on")
        state = params.get("state") or None
        if state is not None and state != "open" and state not in ItemState.values:
            raise ApplicationError(f"Unknown state {state!r}.", field="state")
        sla = params.get("sla") or None
        if sla not in (None, "met", "missed"):
            raise ApplicationError("'sla' is met or missed.", field="sla")
        golden = params.get("golden") or "exclude"
        if golden not in ("exclude", "include", "only"):
            raise ApplicationError("'golden' is exclude, include or only.", field="golden")
        raw_priority = params.get("priority") or None
        try:
            priority = int(raw_priority) if raw_priority is not None else None
        except ValueError:
            raise ApplicationError("'priority' is a whole number.", field="priority") from None
        texts = {k: params.get(k) or None for k in TEXT_SLICES}
        return cls(on=on, state=state, sla=sla, golden=golden, priority=priority, **texts)

    def params(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items() if v is not None}


def items_drill(f: MetricFilter, s: ItemsSlice) -> QuerySet[ReviewItem]:
    """Items in the period (by ``s.on``) and the filter's slices, newest first."""
    items = ReviewItem.objects.select_related("queue")
    if s.on == "queued":
        # Items that entered the queue in the period, wherever they are now (as capacity counts them).
        entered = ItemEvent.objects.filter(
            item=OuterRef("pk"), event__in=ENTERING_EVENTS, at__gte=f.start_at, at__lt=f.end_at
        )
        if f.queue_id is not None:
            entered = entered.filter(queue_id=f.queue_id)
        items = items.filter(Exists(entered))
    else:
        moment = f"{s.on}_at"
        items = items.filter(**{f"{moment}__gte": f.start_at, f"{moment}__lt": f.end_at})
        if f.queue_id is not None:
            items = items.filter(queue_id=f.queue_id)
    if f.vendor_id is not None:
        by_vendor = Decision.objects.filter(item=OuterRef("pk"), vendor_id=f.vendor_id)
        items = items.filter(Exists(by_vendor))
    if f.policy_id is not None:
        items = items.filter(Exists(Decision.objects.filter(item=OuterRef("pk"), policy_id=f.policy_id)))
    if s.state == "open":
        items = items.filter(state__in=OPEN_STATES)
    elif s.state is not None:
        items = items.filter(state=s.state)
    if s.sla == "met":
        items = items.filter(decided_at__isnull=False, decided_at__lte=F("due_at"))
    elif s.sla == "missed":
        items = items.filter(decided_at__isnull=False, decided_at__gt=F("due_at"))
    if s.golden == "exclude":
        items = items.filter(is_golden=False)
    elif s.golden == "only":
        items = items.filter(is_golden=True)
    if s.priority is not None:
        items = items.filter(priority=s.priority)
    texts = {k: getattr(s, k) for k in TEXT_SLICES if getattr(s, k) is not None}
    if texts:
        items = items.filter(Q(**texts))
    # Never null here (received_at always; decided_at and queued_at in the period by the filter above): a plain
    # descending order, which item_received_idx serves for keyset pages (NULLS LAST would sort the whole period).
    order = "received_at" if s.on == "queued" else f"{s.on}_at"
    return items.order_by(f"-{order}", "-id")


def items_behind_listed(metric: str, f: MetricFilter, cell: dict[str, Any]) -> QuerySet[ReviewItem]:
    """The items behind an operations panel's number, as the drill-down lists them: newest first, with their queue."""
    return items_behind(metric, f, **cell).select_related("queue").order_by("-id")


def classifier_items_listed(f: MetricFilter, cell: dict[str, Any]) -> QuerySet[ReviewItem]:
    """The items behind a classifier panel's number (in ``classifier_items``' order), with their queue."""
    return classifier_items(f, **cell).select_related("queue")


def item_opened(pk: int) -> tuple[ReviewItem, list[Any], list[Any]] | None:
    """One item as a drill-down row opens it: the item with its queue, its decisions and its history (indexed by
    item); None when there is no such item."""
    from queues.models import Decision

    item = ReviewItem.objects.select_related("queue").filter(pk=pk).first()
    if item is None:
        return None
    decisions = list(
        Decision.objects.filter(item_id=pk)
        .select_related("reviewer", "policy", "action", "queue")
        .order_by("decided_at")
    )
    events = list(ItemEvent.objects.filter(item_id=pk).select_related("queue").order_by("at", "id")[:200])
    return item, decisions, events
