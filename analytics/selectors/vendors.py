"""Vendor scorecards per ISO week: each measure against its target (green / amber / red) with the change on the
previous week.

Operational measures (volume, SLA attainment, turnaround p90, handle time) come from the decision rollup, by
the week of the deciding decision. Quality measures come from the quality rollups (``analytics.models.quality``:
QA samples closed, golden results scored that week), with the filter's queue and policy; they are the figures
``qa.selectors.slice_stats`` computes from the raw samples, without their intervals:

- quality score: the severity-weighted QA quality score; target ``Vendor.target_quality_score``;
- golden accuracy: share of golden items answered right; target 0.90 (default);
- agreement: Cohen's kappa between the vendor's decisions and the blind QA re-review; target 0.70 (default,
  "substantial" agreement);
- cost per correct decision: cost per decision / (1 - weighted error rate), where the error rate is the
  inclusion-weighted (Hajek) share of sampled decisions QA found wrong; target: the contracted cost per
  decision divided by the quality target (what a correct decision costs at contract quality).
- SLA attainment: target ``Vendor.target_sla_attainment``; turnaround p90: target 24 h (default); average
  handle time: target 300 s (default). Volume and cost per decision have no target.

Every figure of every vendor and week comes from five grouped queries, whatever the number of vendors and weeks.

Green meets the target; amber misses it by at most 5% of the target; red misses it by more. Lower is better for
times and costs. Pass ``targets`` to override the defaults.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import TruncWeek

from analytics.filters import MetricFilter
from analytics.models import GoldenDaily, OpsDecisionDaily, QaSampleDaily, RollupCursor
from analytics.rollups import CURSOR_NAME, hist_percentile
from analytics.selectors.operations import Table
from analytics.sql import histograms_merged, rollup_column, week_start_sql
from ops_platform.core.models import Vendor
from qa.models import MAX_SEVERITY
from qa.statistics import kappa_from_counts

AMBER_TOLERANCE = 0.05
CACHE_SECONDS = 24 * 3600  # a rewrite of the rollups changes the key first
DEFAULT_TARGETS: dict[str, float] = {
    "golden_accuracy": 0.90,
    "agreement": 0.70,
    "turnaround_p90_seconds": 24 * 3600.0,
    "aht_seconds": 300.0,
}
# (name, higher is better); the order of the scorecard's columns.
MEASURES: tuple[tuple[str, bool], ...] = (
    ("volume", True),
    ("sla_attainment", True),
    ("turnaround_p90_seconds", False),
    ("quality_score", True),
    ("golden_accuracy", True),
    ("agreement", True),
    ("aht_seconds", False),
    ("cost_per_decision", False),
    ("cost_per_correct_decision", False),
)


def rag(value: float | None, target: float | None, *, higher_is_better: bool) -> str | None:
    """'green' at or beyond the target, 'amber' within 5% of it, 'red' further; None without both numbers."""
    if value is None or target is None:
        return None
    if higher_is_better:
        return "green" if value >= target else "amber" if value >= target * (1 - AMBER_TOLERANCE) else "red"
    return "green" if value <= target else "amber" if value <= target * (1 + AMBER_TOLERANCE) else "red"


@dataclass(frozen=True)
class Measure:
    value: float | None
    target: float | None
    status: str | None  # green / amber / red, or None when there is no target or no value
    previous: float | None  # the previous week's value
    delta: float | None  # value - previous


@dataclass(frozen=True)
class VendorWeek:
    vendor_id: int
    vendor: str
    week: str  # ISO week, e.g. 2025-W10
    week_start: date  # its Monday
    measures: dict[str, Measure]


def iso_weeks(f: MetricFilter) -> list[date]:
    """Mondays of the ISO weeks the period touches."""
    monday = f.start - timedelta(days=f.start.weekday())
    weeks = []
    while monday <= f.end:
        weeks.append(monday)
        monday += timedelta(days=7)
    return weeks


def _monday(value: date | str) -> date:
    day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    return day - timedelta(days=day.weekday())


def _in_scope(qs: QuerySet[Any], vendor_ids: list[int], mondays: list[date]) -> QuerySet[Any]:
    return qs.filter(vendor_id__in=vendor_ids, day__gte=mondays[0], day__lte=mondays[-1] + timedelta(days=6))


def _label(violation: bool, policy_id: int | None) -> tuple[str, int | None]:
    """A QA label as ``qa.selectors`` compares them: the policy when it is a violation, else 'none'."""
    return ("violation", policy_id) if violation else ("none", None)


def _weekly_values(
    vendors: list[Vendor], mondays: list[date], f: MetricFilter
) -> dict[tuple[int, date], dict[str, float | None]]:
    """Every measure per (vendor id, Monday), from the rollups in one grouped query per source."""
    ids = [v.pk for v in vendors]
    decided = _in_scope(OpsDecisionDaily.objects.all(), ids, mondays)
    qa = _in_scope(QaSampleDaily.objects.all(), ids, mondays)
    golden = _in_scope(GoldenDaily.objects.all(), ids, mondays)
    if f.queue_id is not None:
        decided, qa, golden = (qs.filter(queue_id=f.queue_id) for qs in (decided, qa, golden))
    if f.policy_id is not None:
        decided = decided.filter(policy_id=f.policy_id)
        qa = qa.filter(Q(original_policy_id=f.policy_id) | Q(review_policy_id=f.policy_id))
        golden = golden.filter(policy_id=f.policy_id)
    week = TruncWeek("day")

    sums = {
        (g["vendor_id"], _monday(g["week"])): g
        for g in decided.annotate(week=week)
        .values("vendor_id", "week")
        .annotate(
            n=Sum("decided"),
            counted=Sum("sla_counted"),
            within=Sum("within_sla"),
            handle=Sum("handle_seconds"),
            handled=Sum("handle_count"),
        )
        .order_by()
    }
    turnaround = {
        (vendor_id, _monday(monday)): hists["turnaround_hist"]
        for (vendor_id, monday), hists in histograms_merged(
            decided, [rollup_column("vendor_id"), week_start_sql(rollup_column("day"))], fields=("turnaround_hist",)
        ).items()
    }
    quality: dict[tuple[int, date], dict[str, Any]] = {}
    for g in (
        qa.annotate(week=week)
        .values("vendor_id", "week", "original_violation", "original_policy_id", "review_violation", "review_policy_id")
        .annotate(n=Sum("samples"), w=Sum("weight"), loss=Sum("loss"), err=Sum("error_weight"))
        .order_by()
    ):
        slot = quality.setdefault(
            (g["vendor_id"], _monday(g["week"])), {"n": 0, "w": 0.0, "loss": 0.0, "err": 0.0, "pairs": Counter()}
        )
        for name in ("n", "w", "loss", "err"):
            slot[name] += g[name]
        if g["review_violation"] is not None:
            original = _label(g["original_violation"], g["original_policy_id"])
            slot["pairs"][(original, _label(g["review_violation"], g["review_policy_id"]))] += g["n"]
    goldens = {
        (g["vendor_id"], _monday(g["week"])): g
        for g in golden.annotate(week=week)
        .values("vendor_id", "week")
        .annotate(n=Sum("scored"), right=Sum("correct"))
        .order_by()
    }

    values: dict[tuple[int, date], dict[str, float | None]] = {}
    for vendor in vendors:
        cost = float(vendor.cost_per_decision)
        for monday in mondays:
            key = (vendor.pk, monday)
            s = sums.get(key, {})
            q = quality.get(key)
            g = goldens.get(key)
            error_rate = q["err"] / q["w"] if q and q["w"] else None
            values[key] = {
                "volume": s.get("n") or 0,
                "sla_attainment": s["within"] / s["counted"] if s.get("counted") else None,
                "turnaround_p90_seconds": hist_percentile(turnaround.get(key, Counter()), 0.9),
                "quality_score": 1 - q["loss"] / (MAX_SEVERITY * q["w"]) if q and q["w"] else None,
                "golden_accuracy": g["right"] / g["n"] if g and g["n"] else None,
                "agreement": kappa_from_counts(q["pairs"]) if q and q["pairs"].total() >= 2 else None,
                "aht_seconds": s["handle"] / s["handled"] if s.get("handled") else None,
                "cost_per_decision": cost,
                "cost_per_correct_decision": cost / (1 - error_rate)
                if error_rate is not None and error_rate < 1
                else None,
            }
    return values


def operations_generation() -> int:
    """How many times the operations rollups were rewritten (``rollups_refresh`` with work, ``rollups_rebuild``)."""
    return RollupCursor.objects.filter(name=CURSOR_NAME).values_list("generation", flat=True).first() or 0


def _weekly_values_cached(
    vendors: list[Vendor], mondays: list[date], f: MetricFilter
) -> dict[tuple[int, date], dict[str, float | None]]:
    """``_weekly_values`` read once per rewrite of the rollups (keyed by their generation, the filter, the vendors
    and their costs): merging a period's turnaround histograms costs half a second at a million decisions. The
    periodic refresh warms the default period's (``analytics.panels.charts_warm``); targets and RAG are applied
    after, per request, so an edited target shows at once."""
    what = [asdict(f), [(v.pk, str(v.cost_per_decision)) for v in vendors], mondays, operations_generation()]
    body = json.dumps(what, sort_keys=True, default=str)
    key = "analytics:vendors:" + hashlib.sha256(body.encode()).hexdigest()
    values: dict[tuple[int, date], dict[str, float | None]] | None = cache.get(key)
    if values is None:
        values = _weekly_values(vendors, mondays, f)
        cache.set(key, values, CACHE_SECONDS)
    return values


def vendor_targets(vendor: Vendor, overrides: Mapping[str, float] | None = None) -> dict[str, float | None]:
    quality = float(vendor.target_quality_score)
    targets: dict[str, float | None] = {
        "volume": None,
        "sla_attainment": float(vendor.target_sla_attainment),
        "quality_score": quality,
        "cost_per_decision": None,
        "cost_per_correct_decision": float(vendor.cost_per_decision) / quality if quality else None,
        **DEFAULT_TARGETS,
    }
    return {**targets, **(overrides or {})}


def vendor_scorecards(f: MetricFilter, *, targets: Mapping[str, float] | None = None) -> list[VendorWeek]:
    """One scorecard per vendor (the filter's, or every active one) and ISO week of the period."""
    vendors = Vendor.objects.filter(pk=f.vendor_id) if f.vendor_id else Vendor.objects.filter(is_active=True)
    vendors_sorted = list(vendors.order_by("name"))
    weeks = iso_weeks(f)
    if not vendors_sorted:
        return []
    values = _weekly_values_cached(vendors_sorted, [weeks[0] - timedelta(days=7), *weeks], f)
    cards = []
    for vendor in vendors_sorted:
        goals = vendor_targets(vendor, targets)
        previous = values[(vendor.pk, weeks[0] - timedelta(days=7))]
        for monday in weeks:
            current = values[(vendor.pk, monday)]
            measures = {}
            for name, higher in MEASURES:
                value, before = current[name], previous[name]
                measures[name] = Measure(
                    value=value,
                    target=goals.get(name),
                    status=rag(value, goals.get(name), higher_is_better=higher),
                    previous=before,
                    delta=value - before if value is not None and before is not None else None,
                )
            year, week, _ = monday.isocalendar()
            cards.append(VendorWeek(vendor.pk, vendor.name, f"{year}-W{week:02d}", monday, measures))
            previous = current
    return cards


def vendor_scorecard_table(f: MetricFilter, *, targets: Mapping[str, float] | None = None) -> Table:
    """The scorecards flattened for CSV and JSON: per measure its value, target, status and delta."""
    columns: list[str] = ["vendor_id", "vendor", "week", "week_start"]
    for name, _ in MEASURES:
        columns += [name, f"{name}_target", f"{name}_status", f"{name}_delta"]
    rows: list[tuple[Any, ...]] = []
    for card in vendor_scorecards(f, targets=targets):
        row: list[Any] = [card.vendor_id, card.vendor, card.week, card.week_start]
        for name, _ in MEASURES:
            m = card.measures[name]
            row += [m.value, m.target, m.status, m.delta]
        rows.append(tuple(row))
    # A row drills to the items its volume counts: the vendor's decided items of that week (within the period).
    return Table("Vendor scorecards by week", tuple(columns), rows, "decided", ("vendor_id", "week_start"))
