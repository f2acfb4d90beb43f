"""Alert metrics read from raw rows, one set-based query per period: QA and appeal observations with their
slice dimensions, backlog, arrivals and throughput per queue. These functions are the seam where daily rollups can
take over without touching detection or causes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from django.db.models import Count, F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Concat

from qa.models import ErrorType, QaSample, SampleState
from queues.models import Decision, ItemKind, ItemState, ReviewItem
from routing.models import Backend, ClassifierScore, RoutingDecision

DIMENSIONS = ("surface", "language", "rule", "model_version", "vendor", "queue")
NONE_LABEL = "(none)"
IN_HOUSE = "in-house"


def _rule_of(item_ref: str) -> Subquery:
    """The matched rule of the item's latest live (non-shadow) routing decision."""
    latest = RoutingDecision.objects.filter(item=OuterRef(item_ref), shadow=False).order_by("-at", "-id")
    return Subquery(latest.values("matched")[:1])


def _model_version_of(item_ref: str) -> Subquery:
    """``backend:model_version`` of the item's latest real classifier score."""
    latest = (
        ClassifierScore.objects.filter(item=OuterRef(item_ref))
        .exclude(backend=Backend.UNSCORED)
        .order_by("-created_at", "-id")
        .annotate(label=Concat("backend", Value(":"), "model_version"))
    )
    return Subquery(latest.values("label")[:1])


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for dim in DIMENSIONS:
        if dim in frame:
            frame[dim] = frame[dim].fillna(NONE_LABEL).replace("", NONE_LABEL).astype(str)
    if "vendor" in frame:
        frame["vendor"] = frame["vendor"].replace(NONE_LABEL, IN_HOUSE)
    return frame


RATE_COLUMNS = ["at", "weight", "hit", *DIMENSIONS]


def qa_observations(start: datetime, end: datetime, *, queue_id: int | None = None) -> pd.DataFrame:
    """QA samples closed in [start, end): weight 1/inclusion probability, hit when found a false positive.

    The slices describe the re-reviewed decision as it was (the sample's snapshot of vendor and queue).
    """
    samples = QaSample.objects.filter(
        state=SampleState.CLOSED, closed_at__gte=start, closed_at__lt=end, item__is_golden=False
    )
    if queue_id is not None:
        samples = samples.filter(original_queue_id=queue_id)
    rows: Any = samples.values(
        "inclusion_probability",
        "error_type",
        at=F("closed_at"),
        surface=F("item__surface"),
        language=F("item__language"),
        rule=_rule_of("item_id"),
        model_version=_model_version_of("item_id"),
        vendor=F("original_vendor__slug"),
        queue=F("original_queue__slug"),
    )
    frame = _frame(list(rows), ["inclusion_probability", "error_type", *RATE_COLUMNS])
    frame["weight"] = 1.0 / frame["inclusion_probability"].astype(float)
    frame["hit"] = (frame["error_type"] == ErrorType.FALSE_POSITIVE).astype(float)
    return frame[RATE_COLUMNS]


def appeal_observations(start: datetime, end: datetime, *, queue_id: int | None = None) -> pd.DataFrame:
    """Appeals decided in [start, end) (their current final decision), hit when overturned.

    The slices describe the contested decision: the appealed item, and the last decision on it made before the
    appeal arrived (its reviewer's vendor, its queue).
    """
    contested = Decision.objects.filter(
        item=OuterRef("item__appeal_of"), decided_at__lt=OuterRef("item__received_at")
    ).order_by("-decided_at", "-id")
    appeals = (
        Decision.objects.filter(
            is_final=True, decided_at__gte=start, decided_at__lt=end, item__kind=ItemKind.APPEAL, item__is_golden=False
        )
        .exclude(appeal_outcome="")
        .annotate(contested_queue_id=Subquery(contested.values("queue_id")[:1]))
    )
    if queue_id is not None:
        appeals = appeals.filter(contested_queue_id=queue_id)
    rows: Any = appeals.values(
        "appeal_outcome",
        at=F("decided_at"),
        surface=F("item__appeal_of__surface"),
        language=F("item__appeal_of__language"),
        rule=_rule_of("item__appeal_of"),
        model_version=_model_version_of("item__appeal_of"),
        contested_vendor=Subquery(contested.values("vendor__slug")[:1]),
        contested_queue=Subquery(contested.values("queue__slug")[:1]),
    )
    columns = ["appeal_outcome", *RATE_COLUMNS]
    frame = _frame(
        [{**r, "queue": r.pop("contested_queue"), "vendor": r.pop("contested_vendor")} for r in rows], columns
    )
    frame["weight"] = 1.0
    frame["hit"] = (frame["appeal_outcome"] == "overturned").astype(float)
    return frame[RATE_COLUMNS]


def _items(queue_id: int | None) -> QuerySet[ReviewItem]:
    """Operational items in a queue (golden copies left out), of one queue when given."""
    items = ReviewItem.objects.filter(is_golden=False, queue__isnull=False)
    return items.filter(queue_id=queue_id) if queue_id is not None else items


def backlog_by_queue(*, at: datetime | None = None, queue_id: int | None = None) -> pd.Series:
    """Items waiting per queue slug: from their state now, or reconstructed for a past instant as items queued
    by then and not yet decided (the queue is the item's current one: a later move counts where it went)."""
    items = _items(queue_id)
    if at is None:
        items = items.filter(state__in=[ItemState.QUEUED, ItemState.CLAIMED])
    else:
        items = items.filter(queued_at__lte=at).exclude(decided_at__lte=at)
    rows = items.values(queue_slug=F("queue__slug")).annotate(n=Count("id"))
    return pd.Series({r["queue_slug"]: r["n"] for r in rows}, dtype=float)


def arrivals_by_queue(start: datetime, end: datetime, *, queue_id: int | None = None) -> pd.Series:
    rows = (
        _items(queue_id)
        .filter(queued_at__gte=start, queued_at__lt=end)
        .values(queue_slug=F("queue__slug"))
        .annotate(n=Count("id"))
    )
    return pd.Series({r["queue_slug"]: r["n"] for r in rows}, dtype=float)


def decisions_by_queue_vendor(
    start: datetime, end: datetime, *, queue_id: int | None = None, queues: list[str] | None = None
) -> pd.DataFrame:
    """Decisions made in [start, end) per queue and decider's vendor: the throughput actually delivered."""
    decisions = Decision.objects.filter(decided_at__gte=start, decided_at__lt=end, item__is_golden=False).exclude(
        is_reversal=True
    )
    if queue_id is not None:
        decisions = decisions.filter(queue_id=queue_id)
    if queues is not None:
        decisions = decisions.filter(queue__slug__in=queues)
    rows = decisions.values(
        queue_slug=F("queue__slug"),
        vendor_label=Coalesce(F("vendor__slug"), Value(IN_HOUSE)),
    ).annotate(n=Count("id"))
    frame = pd.DataFrame.from_records(list(rows), columns=["queue_slug", "vendor_label", "n"])
    return frame.rename(columns={"vendor_label": "vendor"})


def items_due_by(deadline: datetime, *, queue_id: int | None = None) -> pd.DataFrame:
    """Waiting items due by ``deadline`` (overdue ones too), with their queue and due time."""
    rows = (
        _items(queue_id)
        .filter(state__in=[ItemState.QUEUED, ItemState.CLAIMED], due_at__lte=deadline)
        .values("due_at", queue_slug=F("queue__slug"))
    )
    return pd.DataFrame.from_records(list(rows), columns=["due_at", "queue_slug"])
