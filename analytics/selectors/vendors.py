"""Vendor scorecards per ISO week: each measure against its target (green / amber / red) with the change on the
previous week.

Operational measures (volume, SLA attainment, turnaround p90, handle time) come from the decision rollup, by
the week of the deciding decision. Quality measures come from ``qa.selectors.slice_stats`` for the vendor and
the week (QA samples closed, golden results scored that week), with the filter's queue and policy:

- quality score: the severity-weighted QA quality score; target ``Vendor.target_quality_score``;
- golden accuracy: share of golden items answered right; target 0.90 (default);
- agreement: Cohen's kappa between the vendor's decisions and the blind QA re-review; target 0.70 (default,
  "substantial" agreement);
- cost per correct decision: cost per decision / (1 - weighted error rate), where the error rate is the
  inclusion-weighted (Hajek) share of sampled decisions QA found wrong; target: the contracted cost per
  decision divided by the quality target (what a correct decision costs at contract quality).
- SLA attainment: target ``Vendor.target_sla_attainment``; turnaround p90: target 24 h (default); average
  handle time: target 300 s (default). Volume and cost per decision have no target.

Green meets the target; amber misses it by at most 5% of the target; red misses it by more. Lower is better for
times and costs. Pass ``targets`` to override the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.db.models import Sum

from analytics.filters import MetricFilter
from analytics.models import OpsDecisionDaily
from analytics.rollups import day_bounds, hist_merge, hist_percentile
from analytics.selectors.operations import Table
from ops_platform.core.models import Vendor
from qa.selectors import QaFilter, slice_stats

AMBER_TOLERANCE = 0.05
DEFAULT_TARGETS: dict[str, float] = {
    "golden_accuracy": 0.90,
    "agreement": 0.70,
    "turnaround_p90_seconds": 24 * 3600.0,
    "aht_seconds": 300.0,
}
QA_RESAMPLES = 0  # the scorecard shows point estimates; intervals are on the QA scorecards page
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


def _week_values(vendor: Vendor, monday: date, f: MetricFilter) -> dict[str, float | None]:
    rows = OpsDecisionDaily.objects.filter(vendor=vendor, day__gte=monday, day__lte=monday + timedelta(days=6))
    if f.queue_id is not None:
        rows = rows.filter(queue_id=f.queue_id)
    if f.policy_id is not None:
        rows = rows.filter(policy_id=f.policy_id)
    sums = rows.aggregate(n=Sum("decided"), counted=Sum("sla_counted"), within=Sum("within_sla"),
                          handle=Sum("handle_seconds"), handled=Sum("handle_count"))  # fmt: skip
    turnaround = hist_percentile(hist_merge(rows.values_list("turnaround_hist", flat=True)), 0.9)
    start, _ = day_bounds(monday)
    _, end = day_bounds(monday + timedelta(days=6))
    qa = QaFilter(queue_id=f.queue_id, policy_id=f.policy_id, vendor_id=vendor.pk, start=start, end=end)
    stats = slice_stats(qa, n_resamples=QA_RESAMPLES)
    error_rate = sum(e.value for e in stats.errors.values()) if stats.samples else None
    cost = float(vendor.cost_per_decision)
    return {
        "volume": sums["n"] or 0,
        "sla_attainment": sums["within"] / sums["counted"] if sums["counted"] else None,
        "turnaround_p90_seconds": turnaround,
        "quality_score": stats.quality.value if stats.quality else None,
        "golden_accuracy": stats.golden_accuracy.value if stats.golden_accuracy else None,
        "agreement": stats.kappa.value if stats.kappa else None,
        "aht_seconds": sums["handle"] / sums["handled"] if sums["handled"] else None,
        "cost_per_decision": cost,
        "cost_per_correct_decision": cost / (1 - error_rate) if error_rate is not None and error_rate < 1 else None,
    }


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
    weeks = iso_weeks(f)
    cards = []
    for vendor in vendors.order_by("name"):
        goals = vendor_targets(vendor, targets)
        previous = _week_values(vendor, weeks[0] - timedelta(days=7), f)
        for monday in weeks:
            values = _week_values(vendor, monday, f)
            measures = {}
            for name, higher in MEASURES:
                value, before = values[name], previous[name]
                measures[name] = Measure(
                    value=value,
                    target=goals.get(name),
                    status=rag(value, goals.get(name), higher_is_better=higher),
                    previous=before,
                    delta=value - before if value is not None and before is not None else None,
                )
            year, week, _ = monday.isocalendar()
            cards.append(VendorWeek(vendor.pk, vendor.name, f"{year}-W{week:02d}", monday, measures))
            previous = values
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
    return Table("Vendor scorecards by week", tuple(columns), rows, "decided", ("vendor_id",))
