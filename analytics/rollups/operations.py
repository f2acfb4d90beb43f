"""Operations rollups: what each daily row counts, and their incremental upkeep.

Definitions (the drill-down querysets below are the same definitions, so a number and its items agree):

- A *decided item* is a non-golden item with a human final decision, not closed by a rule (items still in
  'auto_actioned' are left out, so a correction of a rule's action is not a review). Its *deciding decision*
  is its first final decision (earliest ``decided_at``, then id); the item counts on that decision's local day,
  in its queue, for its reviewer's vendor (null: in-house) and at the item's priority. Turnaround, queue wait,
  handle time and SLA are the deciding decision's: a later correction (appeal overturn, QA adjudication, a
  reverted bulk decision) does not restart the clock. The *policy* is the one in force: the latest final
  decision nobody superseded, so a corrected item counts under its corrected policy.
- Turnaround = received -> decided; queue wait = received -> claimed (the claim the deciding decision came
  from; none for bulk decisions, which claim nothing); handle = claimed -> decided. Within SLA: decided at or
  before ``due_at``; items without a due time are left out of SLA attainment (``sla_counted``).
- Escalated: decided items with at least one 'escalated' event, counted where they were decided.
- Intake: items by received day, source, surface, kind and the policy of their final decision in force (so
  policy-level intake volume is "items received that people later found to violate P"); auto-actioned = a rule
  closed it ('auto_actioned' event); routed to review = it was queued (``queued_at`` set).
- Queue days: items entering each queue ('queued' and 'escalated' item events, golden copies included: they
  take a reviewer's time like any other), for the capacity forecast.
- Reviewer days: every decision of the day by the reviewer (interim reviews and corrections are work too; the
  rows that take a reverted bulk decision back are not decisions),
  handle time where there was a claim, and productive time: the sum of gaps between the reviewer's
  consecutive acts (ItemEvents) that are shorter than ``queues.wellness.BREAK_GAP``, plus any gap between
  claiming an item and the next act on that same item (holding an item for 15 minutes is work, not a break).
  Acts are split at midnight.
- Appeals: keyed by the contested item's deciding decision (queue, its own policy, vendor): appeal items by
  received day, appeal outcomes by the appeal decision's day, and decided items (by deciding day) that have
  been appealed since.

Turnaround, wait and handle times are kept as log-scale histograms (``analytics.rollups.histograms``).

Upkeep: ``rollups_refresh`` reads the Decision, ItemEvent and ReviewItem rows added since its cursor (minus an
overlap of ``CURSOR_OVERLAP`` ids, so rows of transactions that committed out of id order are still seen),
finds the local days they touch, and recomputes those days from raw rows: delete and insert in one
transaction, so a re-run changes nothing and late rows land in their day. The partition is the whole day
(not day x queue): a day is a handful of GROUP BY queries, and a correction touches its item's older days.
The same recomputation replaces the day's quality rollups (closed QA samples, scored golden copies;
``analytics.rollups.quality``), whose days are found by the time rows closed since the last refresh.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.db.models import (
    Count,
    Exists,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.utils import timezone

from analytics.filters import day_bounds, days_through, local_dates
from analytics.models import (
    GoldenDaily,
    OpsAppealDaily,
    OpsBacklogSnapshot,
    OpsDecisionDaily,
    OpsIntakeDaily,
    OpsLatencyDaily,
    OpsQueueDaily,
    OpsReceivedDaily,
    OpsReviewerDaily,
    QaSampleDaily,
    RollupCursor,
)
from analytics.models.operations import BacklogAge
from analytics.rollups import quality
from analytics.rollups.histograms import buckets_of
from ops_platform.core.models import ReviewerProfile
from qa.models import QaScorecardDaily
from qa.rollups import scorecard_rows
from queues.models import Decision, ItemEvent, ItemKind, ItemState, ReviewItem
from queues.wellness import BREAK_GAP

# --- the definitions, as querysets (rollups and drill-down share them) --------------------------------------

# The vendor a decision is counted for: its reviewer's when they decided (``Decision.vendor``).
VENDOR_OF_REVIEWER = "vendor"


def deciding_decisions() -> QuerySet[Decision]:
    """The first final decision of every decided item (see the module docstring)."""
    earlier = Decision.objects.filter(item=OuterRef("item"), is_final=True).filter(
        Q(decided_at__lt=OuterRef("decided_at")) | Q(decided_at=OuterRef("decided_at"), pk__lt=OuterRef("pk"))
    )
    return (
        Decision.objects.filter(is_final=True, item__is_golden=False)
        .exclude(item__state=ItemState.AUTO_ACTIONED)
        .exclude(Exists(earlier))
    )


def policy_in_force(item_ref: str = "item") -> Subquery:
    """The policy of the item's latest final decision nobody superseded."""
    return Subquery(
        Decision.objects.filter(item=OuterRef(item_ref), is_final=True, superseded_by__isnull=True)
        .order_by("-decided_at", "-pk")
        .values("policy_id")[:1]
    )


def escalated_exists(item_ref: str = "item") -> Exists:
    return Exists(ItemEvent.objects.filter(item=OuterRef(item_ref), event="escalated"))


def auto_actioned_exists(item_ref: str = "pk") -> Exists:
    return Exists(ItemEvent.objects.filter(item=OuterRef(item_ref), event="auto_actioned"))


def intake_items() -> QuerySet[ReviewItem]:
    return ReviewItem.objects.filter(is_golden=False)


def backlog_items() -> QuerySet[ReviewItem]:
    return ReviewItem.objects.filter(
        is_golden=False, state__in=(ItemState.QUEUED, ItemState.CLAIMED), queue__isnull=False
    )


# Item events that bring an item into a queue (the capacity forecast's volume).
ENTERING_EVENTS = ("queued", "escalated")

# Upper bounds of the backlog age buckets, in order; the last bucket is open-ended.
BACKLOG_AGES: tuple[tuple[str, timedelta | None], ...] = (
    (BacklogAge.UNDER_1H, timedelta(hours=1)),
    (BacklogAge.H1_4, timedelta(hours=4)),
    (BacklogAge.H4_24, timedelta(hours=24)),
    (BacklogAge.D1_3, timedelta(days=3)),
    (BacklogAge.OVER_3D, None),
)


def age_bucket_range(bucket: str, now: datetime) -> Q:
    """Items whose age at ``now`` falls in the bucket (the first bucket takes any age under its bound)."""
    lower: timedelta | None = None
    for name, upper in BACKLOG_AGES:
        if name == bucket:
            q = Q(received_at__lte=now - lower) if lower is not None else Q()
            return q & Q(received_at__gt=now - upper) if upper is not None else q
        lower = upper
    raise ValueError(f"unknown age bucket {bucket!r}")


# --- one day's rows ------------------------------------------------------------------------------------------


def _seconds(series: pd.Series) -> np.ndarray:
    return pd.to_timedelta(series).dt.total_seconds().to_numpy(dtype=float)


def _key(value: object) -> object:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


_NONE = -1  # stands for a null key while pandas groups (its NaN keys would turn ids into floats)


def _decision_rows(day: date) -> list[OpsDecisionDaily]:
    start, end = day_bounds(day)
    rows = list(
        deciding_decisions()
        .filter(decided_at__gte=start, decided_at__lt=end)
        .annotate(final_policy=policy_in_force(), was_escalated=escalated_exists())
        .values_list(
            "queue_id",
            "final_policy",
            VENDOR_OF_REVIEWER,
            "item__priority",
            "decided_at",
            "claimed_at",
            "handle_time",
            "item__received_at",
            "item__due_at",
            "was_escalated",
        )
    )
    if not rows:
        return []
    cols = ["queue", "policy", "vendor", "priority", "decided_at", "claimed_at", "handle", "received_at", "due_at"]
    df = pd.DataFrame(rows, columns=[*cols, "escalated"])
    keys = ["queue", "policy", "vendor", "priority"]
    for k in keys:
        df[k] = df[k].astype("object").where(df[k].notna(), _NONE).astype("int64")
    decided = pd.to_datetime(df["decided_at"], utc=True)
    received = pd.to_datetime(df["received_at"], utc=True)
    claimed = pd.to_datetime(df["claimed_at"], utc=True)
    due = pd.to_datetime(df["due_at"], utc=True)
    df["turnaround"] = (decided - received).dt.total_seconds()
    df["wait"] = (claimed - received).dt.total_seconds()
    df["handle_s"] = _seconds(df["handle"])
    df["sla_counted"] = due.notna()
    df["within_sla"] = due.notna() & (decided <= due)
    df["escalated"] = df["escalated"].astype(bool)
    df["has_handle"] = df["handle_s"].notna()
    sums = df.groupby(keys).agg(
        decided=("turnaround", "size"),
        sla_counted=("sla_counted", "sum"),
        within_sla=("within_sla", "sum"),
        escalated=("escalated", "sum"),
        handle_seconds=("handle_s", "sum"),
        handle_count=("has_handle", "sum"),
    )
    hists: dict[str, dict[tuple[int, ...], dict[str, int]]] = {}
    for name, column in (("turnaround_hist", "turnaround"), ("wait_hist", "wait"), ("handle_hist", "handle_s")):
        b = pd.Series(buckets_of(df[column].to_numpy(dtype=float)), index=df.index, name="bucket")
        counts = df[keys].assign(bucket=b)[b >= 0].groupby([*keys, "bucket"]).size()
        per: dict[tuple[int, ...], dict[str, int]] = {}
        for (*key, bucket), n in counts.items():
            per.setdefault(tuple(key), {})[str(bucket)] = int(n)
        hists[name] = per
    out = []
    for key, r in sums.iterrows():
        q, p, v, prio = (None if x == _NONE else int(x) for x in key)
        out.append(
            OpsDecisionDaily(
                day=day,
                queue_id=q,
                policy_id=p,
                vendor_id=v,
                priority=prio if prio is not None else 0,
                decided=int(r.decided),
                sla_counted=int(r.sla_counted),
                within_sla=int(r.within_sla),
                escalated=int(r.escalated),
                handle_seconds=float(r.handle_seconds),
                handle_count=int(r.handle_count),
                turnaround_hist=hists["turnaround_hist"].get(key, {}),
                wait_hist=hists["wait_hist"].get(key, {}),
                handle_hist=hists["handle_hist"].get(key, {}),
            )
        )
    return out


def _intake_rows(day: date) -> list[OpsIntakeDaily]:
    start, end = day_bounds(day)
    groups = (
        intake_items()
        .filter(received_at__gte=start, received_at__lt=end)
        .annotate(final_policy=policy_in_force("pk"), was_auto=auto_actioned_exists())
        .values("source", "surface", "kind", "final_policy")
        .annotate(
            received=Count("pk"),
            auto=Count("pk", filter=Q(was_auto=True)),
            routed=Count("pk", filter=Q(queued_at__isnull=False)),
        )
        .order_by()
    )
    return [
        OpsIntakeDaily(
            day=day,
            source=g["source"],
            surface=g["surface"],
            kind=g["kind"],
            policy_id=g["final_policy"],
            received=g["received"],
            auto_actioned=g["auto"],
            routed_to_review=g["routed"],
        )
        for g in groups
    ]


def received_counts(items: QuerySet[ReviewItem]) -> dict[str, int]:
    """What ``OpsReceivedDaily`` counts of ``items`` (golden already left out): decided with a due time and, of
    them, by it; closed (auto-actioned or decided) and, of them, by a rule."""
    sla = Q(decided_at__isnull=False, due_at__isnull=False)
    counts = items.aggregate(
        sla_decided=Count("pk", filter=sla),
        within_sla=Count("pk", filter=sla & Q(decided_at__lte=F("due_at"))),
        closed=Count("pk", filter=Q(state__in=[ItemState.AUTO_ACTIONED, ItemState.DECIDED])),
        closed_by_rule=Count("pk", filter=Q(state=ItemState.AUTO_ACTIONED)),
    )
    return {k: int(v or 0) for k, v in counts.items()}


def _received_rows(day: date) -> list[OpsReceivedDaily]:
    start, end = day_bounds(day)
    counts = received_counts(intake_items().filter(received_at__gte=start, received_at__lt=end))
    return [OpsReceivedDaily(day=day, **counts)] if any(counts.values()) else []


def _queue_rows(day: date) -> list[OpsQueueDaily]:
    start, end = day_bounds(day)
    groups = (
        ItemEvent.objects.filter(event__in=ENTERING_EVENTS, queue__isnull=False, at__gte=start, at__lt=end)
        .values("queue_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return [OpsQueueDaily(day=day, queue_id=g["queue_id"], entered=g["n"]) for g in groups]


def _productive_seconds(events: list[tuple[int, datetime, str, int]]) -> dict[int, float]:
    """Per reviewer: gaps under BREAK_GAP between consecutive acts, and any claim-to-next-act on one item."""
    if not events:
        return {}
    df = pd.DataFrame(events, columns=["actor", "at", "event", "item"])
    at = pd.to_datetime(df["at"], utc=True)
    gap = at.diff().dt.total_seconds().to_numpy()
    same_actor = (df["actor"] == df["actor"].shift()).to_numpy()
    holding = ((df["event"].shift() == "claimed") & (df["item"] == df["item"].shift())).to_numpy()
    counted = same_actor & ((gap < BREAK_GAP.total_seconds()) | holding)
    df["productive"] = np.where(counted, gap, 0.0)
    return {int(k): float(v) for k, v in df.groupby("actor")["productive"].sum().items()}


def _reviewer_rows(day: date) -> list[OpsReviewerDaily]:
    start, end = day_bounds(day)
    decided = {
        g["reviewer"]: g
        for g in Decision.objects.filter(decided_at__gte=start, decided_at__lt=end, item__is_golden=False)
        .exclude(is_reversal=True)  # taking a bulk decision back is not a decision
        .values("reviewer")
        .annotate(n=Count("pk"), handle=Sum("handle_time"), handle_n=Count("handle_time"), vendor=Max("vendor"))
        .order_by()
    }
    events = list(
        ItemEvent.objects.filter(at__gte=start, at__lt=end, actor__isnull=False, item__is_golden=False)
        .order_by("actor_id", "at", "id")
        .values_list("actor_id", "at", "event", "item_id")
    )
    productive = _productive_seconds(events)
    reviewers = set(decided) | set(productive)
    # The vendor of the day's decisions (a reviewer's decisions of one day share one); for a day without any,
    # the reviewer's vendor now.
    vendors = dict(ReviewerProfile.objects.filter(user_id__in=reviewers).values_list("user_id", "team__vendor_id"))
    vendors |= {reviewer: g["vendor"] for reviewer, g in decided.items()}
    out = []
    for reviewer_id in sorted(reviewers):
        g = decided.get(reviewer_id, {})
        handle = g.get("handle")
        out.append(
            OpsReviewerDaily(
                day=day,
                reviewer_id=reviewer_id,
                vendor_id=vendors.get(reviewer_id),
                decisions=g.get("n", 0),
                handle_seconds=handle.total_seconds() if handle else 0.0,
                handle_count=g.get("handle_n", 0),
                productive_seconds=productive.get(reviewer_id, 0.0),
            )
        )
    return out


def _original_keys(item_ids: Iterable[int]) -> dict[int, tuple[int | None, int | None, int | None]]:
    """(queue, policy, vendor) of each item's deciding decision."""
    rows = (
        deciding_decisions()
        .filter(item_id__in=set(item_ids))
        .values_list("item_id", "queue_id", "policy_id", VENDOR_OF_REVIEWER)
    )
    return {item: (q, p, v) for item, q, p, v in rows}


def _appeal_rows(day: date) -> list[OpsAppealDaily]:
    start, end = day_bounds(day)
    counts: dict[tuple[int | None, int | None, int | None], Counter[str]] = {}
    received = list(
        ReviewItem.objects.filter(
            kind=ItemKind.APPEAL, is_golden=False, received_at__gte=start, received_at__lt=end
        ).values_list("appeal_of_id", flat=True)
    )
    outcomes = list(
        Decision.objects.filter(decided_at__gte=start, decided_at__lt=end, item__is_golden=False)
        .exclude(appeal_outcome="")
        .values_list("item__appeal_of_id", "appeal_outcome")
    )
    keys = _original_keys([i for i in received if i] + [i for i, _ in outcomes if i])
    none: tuple[None, None, None] = (None, None, None)
    for original in received:
        counts.setdefault(keys.get(original, none), Counter())["appeals_received"] += 1
    for contested, outcome in outcomes:
        counts.setdefault(keys.get(contested, none) if contested else none, Counter())[outcome] += 1
    appealed = (
        deciding_decisions()
        .filter(decided_at__gte=start, decided_at__lt=end)
        .filter(Exists(ReviewItem.objects.filter(appeal_of=OuterRef("item"), kind=ItemKind.APPEAL)))
        .values_list("queue_id", "policy_id", VENDOR_OF_REVIEWER)
        .annotate(n=Count("pk"))
        .order_by()
    )
    for q, p, v, n in appealed:
        counts.setdefault((q, p, v), Counter())["decisions_appealed"] += n
    return [
        OpsAppealDaily(
            day=day,
            queue_id=q,
            policy_id=p,
            vendor_id=v,
            appeals_received=c["appeals_received"],
            upheld=c["upheld"],
            overturned=c["overturned"],
            decisions_appealed=c["decisions_appealed"],
        )
        for (q, p, v), c in counts.items()
    ]


LATENCY_DIMENSIONS = {"queue": "queue_id", "policy": "policy_id", "vendor": "vendor_id", "priority": "priority"}


def latency_rows(day: date, decisions: Iterable[OpsDecisionDaily]) -> list[OpsLatencyDaily]:
    """The day's decision rows merged per dimension (``OpsLatencyDaily``)."""
    merged: dict[tuple[str, Any], dict[str, Any]] = {}
    for row in decisions:
        for dimension, attribute in LATENCY_DIMENSIONS.items():
            slot = merged.setdefault(
                (dimension, getattr(row, attribute)),
                {"decided": 0, "turnaround_hist": Counter(), "wait_hist": Counter(), "handle_hist": Counter()},
            )
            slot["decided"] += row.decided
            for name in ("turnaround_hist", "wait_hist", "handle_hist"):
                slot[name].update(getattr(row, name))
    return [
        OpsLatencyDaily(
            day=day,
            dimension=dimension,
            key=key,
            decided=slot["decided"],
            **{
                name: {str(b): n for b, n in slot[name].items()}
                for name in ("turnaround_hist", "wait_hist", "handle_hist")
            },
        )
        for (dimension, key), slot in merged.items()
    ]


def latency_rollups_rebuild(start: date, end: date) -> int:
    """Derive ``OpsLatencyDaily`` from the stored decision rows of ``start`` to ``end`` (after an upgrade that
    added the table, without recomputing the decision rows); returns the rows written."""
    written = 0
    for day in days_through(start, end):
        with transaction.atomic():
            OpsLatencyDaily.objects.filter(day=day).delete()
            rows = latency_rows(day, OpsDecisionDaily.objects.filter(day=day))
            OpsLatencyDaily.objects.bulk_create(rows)
        written += len(rows)
    rollups_changed()
    return written


ROLLUP_TABLES = (
    OpsDecisionDaily,
    OpsLatencyDaily,
    OpsIntakeDaily,
    OpsReceivedDaily,
    OpsQueueDaily,
    OpsReviewerDaily,
    OpsAppealDaily,
    QaSampleDaily,
    GoldenDaily,
)


@transaction.atomic
def day_recompute(day: date) -> None:
    """Replace one day's rows of every daily rollup (operations and quality) with a fresh computation."""
    decisions = _decision_rows(day)
    fresh = (
        decisions,
        latency_rows(day, decisions),
        _intake_rows(day),
        _received_rows(day),
        _queue_rows(day),
        _reviewer_rows(day),
        _appeal_rows(day),
        quality.qa_sample_rows(day),
        quality.golden_rows(day),
        scorecard_rows(day),
    )
    for model, rows in zip((*ROLLUP_TABLES, QaScorecardDaily), fresh, strict=True):
        model.objects.filter(day=day).delete()  # type: ignore[attr-defined]
        model.objects.bulk_create(rows, batch_size=2_000)  # type: ignore[attr-defined]


# --- upkeep --------------------------------------------------------------------------------------------------

CURSOR_NAME = "operations"
# Ids are handed out before commit, so a row may appear below ids already read; re-reading the last few
# thousand of each table each run catches transactions that were still open last time (re-reading is harmless).
CURSOR_OVERLAP = 5_000


def _touched_days(cursor: RollupCursor, top: dict[str, int]) -> set[date]:
    d_lo, e_lo, i_lo = (
        max(0, x - CURSOR_OVERLAP) for x in (cursor.last_decision_id, cursor.last_event_id, cursor.last_item_id)
    )
    new_decisions = Q(pk__gt=d_lo, pk__lte=top["decision"])
    new_items = ReviewItem.objects.filter(pk__gt=i_lo, pk__lte=top["item"])
    days = local_dates(new_items, "received_at")
    appealed = deciding_decisions().filter(item__appeals__in=new_items.filter(kind=ItemKind.APPEAL))
    days |= local_dates(appealed, "decided_at")
    days |= local_dates(Decision.objects.filter(new_decisions), "decided_at")
    # A correction moves its item's policy: the item's deciding day and received day change too.
    new_decision_items = Decision.objects.filter(new_decisions).values("item_id")
    days |= local_dates(deciding_decisions().filter(item_id__in=new_decision_items), "decided_at")
    days |= local_dates(ReviewItem.objects.filter(pk__in=new_decision_items), "received_at")
    new_events = ItemEvent.objects.filter(pk__gt=e_lo, pk__lte=top["event"])
    days |= local_dates(new_events, "at")
    days |= local_dates(ReviewItem.objects.filter(pk__in=new_events.values("item_id")), "received_at")
    return days


def _tops() -> dict[str, int]:
    return {
        "decision": Decision.objects.aggregate(m=Max("pk"))["m"] or 0,
        "event": ItemEvent.objects.aggregate(m=Max("pk"))["m"] or 0,
        "item": ReviewItem.objects.aggregate(m=Max("pk"))["m"] or 0,
    }


@transaction.atomic
def rollups_refresh(*, now: datetime | None = None) -> list[date]:
    """Recompute every day touched by rows added since the last run (the first run builds everything).

    Runs are serialised by a lock on the cursor row; returns the days recomputed.
    """
    now = now or timezone.now()
    RollupCursor.objects.get_or_create(name=CURSOR_NAME)
    cursor = RollupCursor.objects.select_for_update().get(name=CURSOR_NAME)
    top = _tops()
    days = sorted(_touched_days(cursor, top) | quality.touched_days(cursor.refreshed_at))
    for day in days:
        day_recompute(day)
    cursor.last_decision_id, cursor.last_event_id, cursor.last_item_id = top["decision"], top["event"], top["item"]
    cursor.refreshed_at = now
    cursor.save()
    rollups_changed()
    return days


def rollups_changed() -> None:
    """A new generation of the rollups: every figure cached from them (keyed by ``RollupCursor.generation``) is
    read afresh. Called by each refresh and each rebuild, after their rows are written (in their transaction, if
    any): a page that read the old generation keeps figures at least as new as that generation."""
    RollupCursor.objects.get_or_create(name=CURSOR_NAME)
    RollupCursor.objects.filter(name=CURSOR_NAME).update(generation=F("generation") + 1)


def rollups_rebuild(start: date, end: date) -> int:
    """Recompute every day from ``start`` to ``end`` inclusive (backfills, fixes); the cursor's ids and refresh
    time are left alone, its generation moves on (cached figures are read afresh)."""
    days = list(days_through(start, end))
    for day in days:
        day_recompute(day)
    rollups_changed()
    return len(days)


def backlog_counts(*, now: datetime, queue_id: int | None = None) -> list[tuple[int, str, int, int, int]]:
    """Open items per (queue, age bucket) at ``now``, with how many are due within the hour and how many are already
    overdue: (queue id, bucket, items, due, overdue). The backlog panel and the snapshot both count this way;
    ``backlog_items`` + ``age_bucket_range`` at the same ``now`` list the items. One pass over item_backlog_idx
    (index only), every bucket a filtered count."""
    soon = now + timedelta(hours=1)
    items = backlog_items() if queue_id is None else backlog_items().filter(queue_id=queue_id)
    counts: dict[str, Count] = {}
    for i, (bucket, _) in enumerate(BACKLOG_AGES):
        within = age_bucket_range(bucket, now)
        # queue_id, never null in the backlog, is in the index: COUNT(id) would read every item's row.
        counts[f"n{i}"] = Count("queue_id", filter=within)
        counts[f"due{i}"] = Count("queue_id", filter=within & Q(due_at__gt=now, due_at__lte=soon))
        counts[f"overdue{i}"] = Count("queue_id", filter=within & Q(due_at__lte=now))
    groups = list(items.values("queue_id").annotate(**counts).order_by())
    return [
        (g["queue_id"], str(bucket), g[f"n{i}"], g[f"due{i}"], g[f"overdue{i}"])
        for i, (bucket, _) in enumerate(BACKLOG_AGES)
        for g in groups
        if g[f"n{i}"]
    ]


def backlog_snapshot_take(*, now: datetime | None = None) -> int:
    """Count open items per queue and age bucket now (the backlog's history, for alerts); returns the rows written."""
    now = now or timezone.now()
    rows = [
        OpsBacklogSnapshot(
            taken_at=now, queue_id=queue, age_bucket=bucket, count=n, due_within_hour=due, overdue=overdue
        )
        for queue, bucket, n, due, overdue in backlog_counts(now=now)
    ]
    OpsBacklogSnapshot.objects.bulk_create(rows)
    return len(rows)


def backlog_snapshots_purge(*, now: datetime | None = None) -> int:
    """Delete backlog snapshots older than ``ANALYTICS_BACKLOG_RETENTION``; returns the rows deleted."""
    now = now or timezone.now()
    deleted, _ = OpsBacklogSnapshot.objects.filter(taken_at__lt=now - settings.ANALYTICS_BACKLOG_RETENTION).delete()
    return deleted
