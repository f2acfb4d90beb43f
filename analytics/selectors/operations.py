"""Operations metrics read from the rollups only, as ``Table``s a page, a CSV export and the JSON API all render,
and ``items_behind`` to list the raw items behind any cell.

Which filter fields apply: decisions, latency, SLA, escalation and appeals take queue, vendor and policy;
intake takes policy (the final decision's, see ``analytics.rollups.operations``); reviewer figures take vendor; the
backlog takes queue. Rates are None where their denominator is zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from django.core.cache import cache
from django.db.models import Exists, F, OuterRef, QuerySet, Sum
from django.utils import timezone

from analytics.filters import MetricFilter, day_bounds
from analytics.models import (
    OpsAppealDaily,
    OpsDecisionDaily,
    OpsIntakeDaily,
    OpsLatencyDaily,
    OpsReviewerDaily,
)
from analytics.rollups import (
    BACKLOG_AGES,
    VENDOR_OF_REVIEWER,
    age_bucket_range,
    auto_actioned_exists,
    backlog_counts,
    backlog_items,
    deciding_decisions,
    escalated_exists,
    hist_percentile,
    intake_items,
    policy_in_force,
)
from analytics.selectors.freshness import operations_stamp
from analytics.sql import HIST_FIELDS, histograms_merged, rollup_column
from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import Policy, User, Vendor
from queues.models import Decision, ItemKind, Queue, ReviewItem

PERCENTILES = (0.5, 0.9, 0.95)
IN_HOUSE = "in-house"
NONE_LABEL = "(none)"


@dataclass(frozen=True)
class Table:
    """Rows of plain values; ``metric`` and ``keys`` say how to drill into a row (``items_behind``)."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    metric: str = ""
    keys: tuple[str, ...] = ()  # the columns that identify a row's slice, passed to items_behind
    notes: tuple[str, ...] = field(default=())
    drill_at: datetime | None = None  # a live count: the moment its drill-down lists the items at

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def cell_keys(self, row: tuple[Any, ...]) -> dict[str, Any]:
        values = dict(zip(self.columns, row, strict=True))
        return {k: values[k] for k in self.keys}


def _rate(num: float, den: float) -> float | None:
    return num / den if den else None


def _period(qs: QuerySet[Any], f: MetricFilter, *, queue: bool = True, vendor: bool = True, policy: bool = True) -> Any:
    qs = qs.filter(day__gte=f.start, day__lte=f.end)
    if queue and f.queue_id is not None:
        qs = qs.filter(queue_id=f.queue_id)
    if vendor and f.vendor_id is not None:
        qs = qs.filter(vendor_id=f.vendor_id)
    if policy and f.policy_id is not None:
        qs = qs.filter(policy_id=f.policy_id)
    return qs


Dimension = Literal["queue", "policy", "vendor", "priority"]


def _labels(by: str, ids: Iterable[Any]) -> dict[Any, str]:
    ids = {i for i in ids if i is not None}
    names: dict[Any, str]
    if by == "queue":
        names = dict(Queue.objects.filter(pk__in=ids).values_list("pk", "name"))
    elif by == "policy":
        names = dict(Policy.objects.filter(pk__in=ids).values_list("pk", "name"))
    elif by == "vendor":
        names = dict(Vendor.objects.filter(pk__in=ids).values_list("pk", "name"))
    elif by == "reviewer":
        names = dict(User.objects.filter(pk__in=ids).values_list("pk", "username"))
    else:
        names = {i: str(i) for i in ids}
    return {**names, None: IN_HOUSE if by == "vendor" else NONE_LABEL}


def _check_dimension(by: str, allowed: Iterable[str]) -> None:
    if by not in allowed:
        raise ApplicationError(f"Cannot split by {by!r}; choose one of {', '.join(allowed)}.", field="by")


def _key_sort(key: Any) -> tuple[bool, Any]:
    return (key is None, key)


# --- intake and automation -----------------------------------------------------------------------------------


def intake_volume(f: MetricFilter, *, by: Literal["source", "surface", "kind", "policy"] = "source") -> Table:
    """Items received per day and source (or surface, kind, final decision's policy), with the rule-closed share."""
    _check_dimension(by, ("source", "surface", "kind", "policy"))
    field_name = "policy_id" if by == "policy" else by
    groups = (
        _period(OpsIntakeDaily.objects.all(), f, queue=False, vendor=False)
        .values("day", field_name)
        .annotate(received=Sum("received"), auto=Sum("auto_actioned"), routed=Sum("routed_to_review"))
        .order_by("day", field_name)
    )
    rows = list(groups)
    labels = _labels("policy", [g[field_name] for g in rows]) if by == "policy" else {}
    key_col = f"{by}_id" if by == "policy" else by
    return Table(
        title=f"Intake volume by {by}",
        columns=("day", key_col, by, "received", "auto_actioned", "routed_to_review")
        if by == "policy"
        else ("day", by, "received", "auto_actioned", "routed_to_review"),
        rows=[
            (g["day"], g[field_name], labels[g[field_name]], g["received"], g["auto"], g["routed"])
            if by == "policy"
            else (g["day"], g[field_name], g["received"], g["auto"], g["routed"])
            for g in rows
        ],
        metric="received",
        keys=("day", key_col),
    )


def automation_rate(f: MetricFilter) -> Table:
    """Per day: received, closed by a rule, routed to people, and the automation rate (auto-actioned / received)."""
    rows = (
        _period(OpsIntakeDaily.objects.all(), f, queue=False, vendor=False)
        .values("day")
        .annotate(received=Sum("received"), auto=Sum("auto_actioned"), routed=Sum("routed_to_review"))
        .order_by("day")
    )
    return Table(
        title="Automation rate",
        columns=("day", "received", "auto_actioned", "routed_to_review", "automation_rate"),
        rows=[(g["day"], g["received"], g["auto"], g["routed"], _rate(g["auto"], g["received"])) for g in rows],
        metric="auto_actioned",
        keys=("day",),
    )


# --- backlog -------------------------------------------------------------------------------------------------


def backlog(f: MetricFilter, *, at: datetime | None = None) -> Table:
    """Open items per queue and age bucket, counted live at ``at`` (default now) with the drill-down's own
    definition (``backlog_counts``), with those already overdue and those due within the hour (two separate
    counts: an overdue item is not "due within the hour"); each row drills to its items at that same moment. The
    period is ignored."""
    if at is None:
        at, counted = backlog_counts_shared(queue_id=f.queue_id)
    else:
        counted = backlog_counts(now=at, queue_id=f.queue_id)
    data = [(q, b, n, overdue, due) for q, b, n, due, overdue in counted]
    labels = _labels("queue", [r[0] for r in data])
    order = {name: i for i, (name, _) in enumerate(BACKLOG_AGES)}
    data.sort(key=lambda r: (labels[r[0]], order[r[1]]))
    return Table(
        title="Backlog by queue and age",
        columns=("queue_id", "queue", "age_bucket", "items", "overdue", "due_within_hour"),
        rows=[(q, labels[q], b, n, overdue, due) for q, b, n, overdue, due in data],
        metric="backlog",
        keys=("queue_id", "age_bucket"),
        drill_at=at,
    )


# The backlog panel (any queue filter), its API and the home's tiles share one live count of every queue, taken by
# the minute's rollup refresh ahead of the pages (``backlog_counts_publish``) and kept a little longer than a
# refresh interval: at a million waiting items the pass over item_backlog_idx takes seconds on a loaded machine.
# A page counts only when no refresh published a count lately (no beat running, or a refresh that failed).
BACKLOG_SHARED_SECONDS = 75
BACKLOG_KEY = "analytics:backlog-counts:{generation}"
BacklogRow = tuple[int, str, int, int, int]


def backlog_counts_publish() -> tuple[datetime, list[BacklogRow]]:
    """Count the backlog of every queue now and share it with the pages (the periodic rollup refresh calls it after
    each refresh, so no page waits on the count); returns (the moment it counted at, its rows)."""
    generation, _ = operations_stamp()
    at = timezone.now()
    found = (at, backlog_counts(now=at))
    cache.set(BACKLOG_KEY.format(generation=generation), found, BACKLOG_SHARED_SECONDS)
    return found


def backlog_counts_shared(*, queue_id: int | None = None) -> tuple[datetime, list[BacklogRow]]:
    """``backlog_counts`` as the last refresh counted it, at most ``BACKLOG_SHARED_SECONDS`` ago (counted now when
    none did): (the moment it counted at, its rows, those of ``queue_id`` only when given: a queue's rows of the
    count of every queue are that queue's count). The drill-down lists the items at that same moment, so the panel
    still equals it. The share ends at the next rollup refresh too (its key names the rollups' generation): items
    that arrive late, with a receipt time before the counted moment, are then counted with the rows the refresh
    picked up."""
    generation, _ = operations_stamp()
    found: tuple[datetime, list[BacklogRow]] | None = cache.get(BACKLOG_KEY.format(generation=generation))
    if found is None:
        found = backlog_counts_publish()
    at, rows = found
    return at, rows if queue_id is None else [r for r in rows if r[0] == queue_id]


# --- decisions: latency, SLA, escalation ---------------------------------------------------------------------


_COUNTS = ("decided", "sla_counted", "within_sla", "escalated", "handle_seconds", "handle_count")


def _decision_sums(f: MetricFilter, by: str) -> dict[Any, dict[str, Any]]:
    """The period's counts per slice, summed in the database (no histogram leaves it)."""
    column = "priority" if by == "priority" else f"{by}_id"
    rows = (
        _period(OpsDecisionDaily.objects.all(), f)
        .values(column)
        .annotate(**{f"sum_{name}": Sum(name) for name in _COUNTS})
    )
    return {row[column]: {name: row[f"sum_{name}"] for name in _COUNTS} for row in rows.order_by()}


def _merged_in_database(f: MetricFilter, by: str) -> dict[Any, dict[str, Counter[int]]]:
    """The period's histograms per slice (``histograms_merged`` keyed by the one slice column). Without a queue,
    vendor or policy filter they come from the per-dimension rollup, a few rows a day; with one, from the
    decision rollup rows that match it."""
    if f.queue_id is None and f.vendor_id is None and f.policy_id is None:
        rows = OpsLatencyDaily.objects.filter(dimension=by, day__gte=f.start, day__lte=f.end)
        merged = histograms_merged(rows, [rollup_column("key")])
    else:
        column = rollup_column("priority" if by == "priority" else f"{by}_id")
        merged = histograms_merged(_period(OpsDecisionDaily.objects.all(), f), [column])
    return {key: hists for (key,), hists in merged.items()}


def latency_percentiles(f: MetricFilter, *, by: Dimension = "queue") -> Table:
    """Turnaround (received -> decided), queue wait and handle time p50/p90/p95 in seconds, per queue, policy,
    priority or vendor, read from merged histograms (within 1%, see ``analytics.rollups.histograms``)."""
    _check_dimension(by, ("queue", "policy", "vendor", "priority"))
    sums = _decision_sums(f, by)
    merged = _merged_in_database(f, by)
    labels = _labels(by, sums)
    rows = []
    for key in sorted(sums, key=_key_sort):
        line: list[Any] = [key, labels.get(key, str(key)), sums[key]["decided"]]
        for hist_field in HIST_FIELDS:
            hist = merged.get(key, {}).get(hist_field, Counter())
            line += [hist_percentile(hist, q) for q in PERCENTILES]
        rows.append(tuple(line))
    columns = [f"{by}_id", by, "decided"]
    for name in ("turnaround", "wait", "handle"):
        columns += [f"{name}_p{round(q * 100)}" for q in PERCENTILES]
    return Table(f"Turnaround, queue wait and handle time by {by}", tuple(columns), rows, "decided", (f"{by}_id",))


def sla_attainment(f: MetricFilter, *, by: Literal["queue", "vendor", "policy", "priority"] = "queue") -> Table:
    """Share of decided items (with a due time) decided by their due time, per queue or vendor."""
    _check_dimension(by, ("queue", "policy", "vendor", "priority"))
    sums = _decision_sums(f, by)
    labels = _labels(by, sums)
    rows = []
    for key in sorted(sums, key=_key_sort):
        counted, within, decided = sums[key]["sla_counted"], sums[key]["within_sla"], sums[key]["decided"]
        rows.append((key, labels.get(key, str(key)), decided, counted, within, _rate(within, counted)))
    return Table(
        f"SLA attainment by {by}",
        (f"{by}_id", by, "decided", "sla_counted", "within_sla", "sla_attainment"),
        rows,
        "within_sla",
        (f"{by}_id",),
    )


def escalation_rate(f: MetricFilter, *, by: Dimension = "queue") -> Table:
    """Share of decided items that were escalated on the way (counted in the queue that decided them)."""
    _check_dimension(by, ("queue", "policy", "vendor", "priority"))
    sums = _decision_sums(f, by)
    labels = _labels(by, sums)
    rows = []
    for key in sorted(sums, key=_key_sort):
        decided, escalated = sums[key]["decided"], sums[key]["escalated"]
        rows.append((key, labels.get(key, str(key)), decided, escalated, _rate(escalated, decided)))
    return Table(
        f"Escalation rate by {by}",
        (f"{by}_id", by, "decided", "escalated", "escalation_rate"),
        rows,
        "escalated",
        (f"{by}_id",),
    )


def handle_time(f: MetricFilter, *, by: Dimension = "queue") -> Table:
    """Average handle time in seconds (claimed -> decided) per slice, from the decision rollup."""
    sums = _decision_sums(f, by)
    labels = _labels(by, sums)
    rows = []
    for key in sorted(sums, key=_key_sort):
        seconds, n = sums[key]["handle_seconds"], sums[key]["handle_count"]
        rows.append((key, labels.get(key, str(key)), n, _rate(seconds, n)))
    return Table(
        f"Average handle time by {by}", (f"{by}_id", by, "handled", "aht_seconds"), rows, "decided", (f"{by}_id",)
    )


# --- appeals -------------------------------------------------------------------------------------------------


def appeal_rates(f: MetricFilter, *, by: Literal["queue", "policy", "vendor"] = "queue") -> Table:
    """Appeals received per decided item (appeal rate) and overturned per appeal decided (overturn rate), by the
    contested decision's queue, policy or vendor. ``decisions_appealed`` counts the period's decided items that
    have been appealed (a cohort rate, immune to appeals arriving after the period)."""
    _check_dimension(by, ("queue", "policy", "vendor"))
    column = f"{by}_id"
    appeals = {
        g[column]: g
        for g in _period(OpsAppealDaily.objects.all(), f)
        .values(column)
        .annotate(
            received=Sum("appeals_received"),
            upheld=Sum("upheld"),
            overturned=Sum("overturned"),
            appealed=Sum("decisions_appealed"),
        )
        .order_by()
    }
    decided = dict(
        _period(OpsDecisionDaily.objects.all(), f).values(column).annotate(n=Sum("decided")).values_list(column, "n")
    )
    keys = sorted(set(appeals) | set(decided), key=_key_sort)
    labels = _labels(by, keys)
    rows = []
    for key in keys:
        a = appeals.get(key, {})
        received, upheld, overturned, appealed = (
            a.get(k) or 0 for k in ("received", "upheld", "overturned", "appealed")
        )
        n = decided.get(key) or 0
        rows.append(
            (
                key,
                labels.get(key, str(key)),
                n,
                received,
                _rate(received, n),
                appealed,
                _rate(appealed, n),
                upheld,
                overturned,
                _rate(overturned, upheld + overturned),
            )
        )
    return Table(
        f"Appeals by {by}",
        (
            column,
            by,
            "decided",
            "appeals_received",
            "appeal_rate",
            "decisions_appealed",
            "decisions_appealed_rate",
            "upheld",
            "overturned",
            "overturn_rate",
        ),
        rows,
        "appeals_received",
        (column,),
    )


# --- reviewers -----------------------------------------------------------------------------------------------


def reviewer_productivity(f: MetricFilter) -> Table:
    """Per reviewer: decisions, productive hours, decisions per productive hour, AHT and occupancy
    (handle time / productive time; can pass 1 when decisions are made without claims, as in bulk)."""
    rows = (
        _period(OpsReviewerDaily.objects.all(), f, queue=False, policy=False)
        .values("reviewer_id", "vendor_id")
        .annotate(
            n=Sum("decisions"), handle=Sum("handle_seconds"), hn=Sum("handle_count"), prod=Sum("productive_seconds")
        )
        .order_by("reviewer_id", "vendor_id")
    )
    data = list(rows)
    people = _labels("reviewer", [r["reviewer_id"] for r in data])
    vendors = _labels("vendor", [r["vendor_id"] for r in data])
    return Table(
        "Reviewer throughput and occupancy",
        (
            "reviewer_id",
            "reviewer",
            "vendor",
            "decisions",
            "productive_hours",
            "decisions_per_productive_hour",
            "aht_seconds",
            "occupancy",
        ),
        [
            (
                r["reviewer_id"],
                people[r["reviewer_id"]],
                vendors[r["vendor_id"]],
                r["n"],
                r["prod"] / 3600,
                _rate(r["n"], r["prod"] / 3600),
                _rate(r["handle"], r["hn"]),
                _rate(r["handle"], r["prod"]),
            )
            for r in data
        ],
        "reviewer_decisions",
        ("reviewer_id",),
    )


# --- drill-down ----------------------------------------------------------------------------------------------

DECISION_METRICS = ("decided", "within_sla", "escalated", "decisions_appealed")
INTAKE_METRICS = ("received", "auto_actioned", "routed_to_review")
APPEAL_METRICS = ("appeals_received", "upheld", "overturned")
METRICS = (*DECISION_METRICS, *INTAKE_METRICS, *APPEAL_METRICS, "backlog", "reviewer_decisions")
_UNSET = object()


def _match(qs: QuerySet[Any], cell: dict[str, Any], f_value: int | None, name: str, path: str) -> QuerySet[Any]:
    """Apply a filter field and a cell key; a cell key given as None means 'none' (e.g. in-house)."""
    if f_value is not None:
        qs = qs.filter(**{path: f_value})
    value = cell.get(name, _UNSET)
    if value is not _UNSET:
        qs = qs.filter(**({f"{path}__isnull": True} if value is None else {path: value}))
    return qs


def _cell_bounds(f: MetricFilter, cell: dict[str, Any]) -> tuple[datetime, datetime]:
    """The moments a cell covers: its day, its week within the period, or the whole period."""
    if cell.get("day") is not None:
        return day_bounds(cell["day"])
    week = cell.get("week_start")
    if week is not None:
        return day_bounds(max(week, f.start))[0], day_bounds(min(week + timedelta(days=6), f.end))[1]
    return f.start_at, f.end_at


def _deciding_in(f: MetricFilter, cell: dict[str, Any], *, policy: str = "final_policy") -> QuerySet[Decision]:
    start, end = _cell_bounds(f, cell)
    qs = deciding_decisions().filter(decided_at__gte=start, decided_at__lt=end).annotate(final_policy=policy_in_force())
    qs = _match(qs, cell, f.queue_id, "queue_id", "queue_id")
    qs = _match(qs, cell, f.vendor_id, "vendor_id", VENDOR_OF_REVIEWER)
    qs = _match(qs, cell, f.policy_id, "policy_id", policy)
    for name in ("priority", "priority_id"):  # tables split by priority name their key column priority_id
        if name in cell:
            qs = qs.filter(item__priority=cell[name])
    return qs


def items_behind(metric: str, f: MetricFilter, **cell: Any) -> QuerySet[ReviewItem]:
    """The raw items one number counts: ``metric`` is a table's ``metric`` (or a count column's name) and
    ``cell`` its ``cell_keys`` (day, queue_id, policy_id, vendor_id, priority, source, surface, kind,
    age_bucket, reviewer_id); a key given as None selects 'none' (in-house, no policy)."""
    if metric not in METRICS:
        raise ApplicationError(f"Unknown metric {metric!r}; one of {', '.join(METRICS)}.", field="metric")
    items = ReviewItem.objects.all()
    if metric in DECISION_METRICS:
        decisions = _deciding_in(f, cell)
        if metric == "within_sla":
            decisions = decisions.filter(item__due_at__gte=F("decided_at"))
        elif metric == "escalated":
            decisions = decisions.filter(escalated_exists())
        elif metric == "decisions_appealed":
            decisions = _deciding_in(f, cell, policy="policy_id").filter(
                Exists(ReviewItem.objects.filter(appeal_of=OuterRef("item"), kind=ItemKind.APPEAL))
            )
        return items.filter(pk__in=decisions.values("item_id"))
    if metric in INTAKE_METRICS:
        start, end = _cell_bounds(f, cell)
        qs = intake_items().filter(received_at__gte=start, received_at__lt=end).annotate(final=policy_in_force("pk"))
        qs = _match(qs, cell, f.policy_id, "policy_id", "final")
        qs = qs.filter(**{k: cell[k] for k in ("source", "surface", "kind") if k in cell})
        if metric == "auto_actioned":
            qs = qs.filter(auto_actioned_exists())
        elif metric == "routed_to_review":
            qs = qs.filter(queued_at__isnull=False)
        return items.filter(pk__in=qs.values("pk"))
    if metric in APPEAL_METRICS:
        # The contested decision: filter and cell slice it by its own queue, policy and vendor.
        originals = deciding_decisions()
        originals = _match(originals, cell, f.queue_id, "queue_id", "queue_id")
        originals = _match(originals, cell, f.vendor_id, "vendor_id", VENDOR_OF_REVIEWER)
        originals = _match(originals, cell, f.policy_id, "policy_id", "policy_id")
        start, end = _cell_bounds(f, cell)
        appeals = ReviewItem.objects.filter(
            kind=ItemKind.APPEAL, is_golden=False, appeal_of__in=originals.values("item_id")
        )
        if metric == "appeals_received":
            return appeals.filter(received_at__gte=start, received_at__lt=end)
        outcome = Decision.objects.filter(
            appeal_outcome=metric, decided_at__gte=start, decided_at__lt=end, item__in=appeals
        ).values("item_id")
        return items.filter(pk__in=outcome)
    if metric == "backlog":
        open_items = backlog_items()
        if f.queue_id is not None:
            open_items = open_items.filter(queue_id=f.queue_id)
        if cell.get("queue_id") is not None:
            open_items = open_items.filter(queue_id=cell["queue_id"])
        if cell.get("age_bucket"):
            open_items = open_items.filter(age_bucket_range(cell["age_bucket"], cell.get("at") or timezone.now()))
        return open_items
    # reviewer_decisions
    start, end = _cell_bounds(f, cell)
    decisions = Decision.objects.filter(decided_at__gte=start, decided_at__lt=end, item__is_golden=False).exclude(
        is_reversal=True
    )
    if cell.get("reviewer_id") is not None:
        decisions = decisions.filter(reviewer_id=cell["reviewer_id"])
    decisions = _match(decisions, cell, f.vendor_id, "vendor_id", VENDOR_OF_REVIEWER)
    # Throughput counts decisions, and a reviewer may decide one item twice (an interim review, a correction): one
    # row per decision, each shown by its item, so the list is as long as the figure.
    return items.filter(decisions__in=decisions)
