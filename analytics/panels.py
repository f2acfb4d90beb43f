"""The dashboard registry: every panel (a Table, optionally charts) and home tile, by area.

A page per area renders every panel registered for it (``/analytics/<area>/``), each panel has its own page
and CSV (``/analytics/<area>/<panel>/?format=csv``), and the JSON API serves it at ``/api/v1/metrics/<panel>``.
Register a panel with a few lines at the bottom of this module::

    register(Panel(
        name="turnaround_by_queue", title="Turnaround by queue", area="operations",
        table=operations.turnaround_by_queue,                       # (MetricFilter) -> Table
        chart=lambda t: charts.bar(t, x="queue", y="p90_seconds"),   # (Table) -> Chart | list[Chart] | None
    ))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from analytics import adapters, charts
from analytics.alerts import alerts_open
from analytics.charts import Chart
from analytics.filters import MetricFilter
from analytics.selectors import accounts, capacity, freshness, home
from analytics.selectors import operations as ops
from analytics.selectors.vendors import vendor_scorecard_table
from analytics.tables import Table, table_html_cached

# Areas in the order the home page and the navigation list them.
AREAS: dict[str, str] = {
    "operations": "Operations",
    "classifiers": "Classifier performance",
    "vendors": "Vendor scorecards",
    "capacity": "Capacity forecast",
    "alerts": "Alerts",
    "accounts": "Accounts and strikes",
}

ChartBuilder = Callable[[Table], "Chart | Sequence[Chart] | None"]


@dataclass(frozen=True)
class Panel:
    name: str  # unique, URL-safe: the API path and the CSV file name
    title: str
    area: str  # a key of AREAS
    table: Callable[[MetricFilter], Table]
    chart: ChartBuilder | None = None
    description: str = ""
    # When the rows the figures come from were last brought up to date (the page says "as of 14:02").
    as_of: Callable[[], datetime | None] = freshness.operations_as_of

    def charts(self, table: Table) -> list[Chart]:
        if self.chart is None or not table.rows:
            return []
        built = self.chart(table)
        if built is None:
            return []
        return [built] if isinstance(built, Chart) else list(built)


@dataclass(frozen=True)
class Tile:
    """A headline number on the ops-manager home: its value (already formatted) and where it leads."""

    name: str
    title: str
    value: Callable[[], str]
    url: Callable[[], str] | None = None
    hint: str = ""
    as_of: Callable[[], datetime | None] = freshness.live_as_of


_PANELS: dict[str, Panel] = {}
_TILES: dict[str, Tile] = {}


def register(panel: Panel) -> Panel:
    if panel.area not in AREAS:
        raise ValueError(f"Unknown area {panel.area!r}; add it to AREAS first.")
    if not panel.name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"Panel names are URL-safe words: {panel.name!r}.")
    if panel.name in _PANELS:
        raise ValueError(f"A panel named {panel.name!r} is already registered.")
    _PANELS[panel.name] = panel
    return panel


def register_tile(tile: Tile) -> Tile:
    if tile.name in _TILES:
        raise ValueError(f"A tile named {tile.name!r} is already registered.")
    _TILES[tile.name] = tile
    return tile


def panel_get(name: str) -> Panel | None:
    return _PANELS.get(name)


def panels_all() -> list[Panel]:
    return list(_PANELS.values())


def panels_for(area: str) -> list[Panel]:
    return [p for p in _PANELS.values() if p.area == area]


def areas_with_panels() -> list[tuple[str, str]]:
    """(slug, title) of every area that has at least one panel, in AREAS order."""
    used = {p.area for p in _PANELS.values()}
    return [(slug, title) for slug, title in AREAS.items() if slug in used]


def tiles_all() -> list[Tile]:
    return list(_TILES.values())


# --- the registrations -------------------------------------------------------------------------------

register_tile(Tile("intake_today", "Intake today", home.intake_today, hint="items received since midnight"))
register_tile(
    Tile(
        "backlog",
        "Backlog",
        home.backlog,
        url=home.backlog_url,
        hint="queued or claimed (latest backlog snapshot)",
        as_of=home.backlog_as_of,
    )
)
# SLA attainment counts decided items only; beside it, what is waiting past or near its due time (issue 19).
register_tile(
    Tile(
        "overdue",
        "Overdue now",
        home.overdue_now,
        hint="waiting past the SLA due time (latest backlog snapshot)",
        as_of=home.backlog_as_of,
    )
)
register_tile(
    Tile(
        "due_soon",
        "Due within the hour",
        home.due_within_hour,
        hint="not yet overdue (latest backlog snapshot)",
        as_of=home.backlog_as_of,
    )
)
register_tile(
    Tile(
        "sla_7d",
        "SLA attainment, 7 days",
        home.sla_attainment_7d,
        hint="items received in the last 7 days and decided: within the SLA",
        as_of=freshness.operations_as_of,
    )
)
register_tile(
    Tile("automation_today", "Automation rate today", home.automation_today, hint="closed by a rule, not a person")
)

register(
    Panel(
        name="capacity_plan",
        title="Reviewers required per queue",
        area="capacity",
        table=capacity.capacity_plan_table,
        chart=lambda t: charts.bar(t, x="queue", y="peak_required", title="Peak reviewers required, next 14 days"),
        description=capacity.PLAN_NOTE,
    )
)
register(
    Panel(
        name="capacity_forecast",
        title="Daily volume: history and forecast",
        area="capacity",
        table=capacity.capacity_forecast_table,
        chart=capacity.forecast_charts,
        description=capacity.FORECAST_NOTE,
    )
)


def _drawn(y: str, build: Callable[[Table], Chart]) -> ChartBuilder:
    """Draw only when the plotted column has a value: a rate with nothing to divide is no chart."""
    return lambda t: build(t) if any(row.get(y) is not None for row in t.rows) else None


def _bar(x: str, y: str, **kw: str) -> ChartBuilder:
    return _drawn(y, lambda t: charts.bar(t, x=x, y=y, **kw))


def _stacked(x: str, y: str, color: str) -> ChartBuilder:
    return _drawn(y, lambda t: charts.stacked_bar(t, x=x, y=y, color=color))


def _line(x: str, y: str, **kw: str) -> ChartBuilder:
    return _drawn(y, lambda t: charts.line(t, x=x, y=y, **kw))


def _ops(
    name: str,
    title: str,
    area: str,
    selector: Callable[..., ops.Table],
    chart: ChartBuilder | None = None,
    *,
    as_of: Callable[[], datetime | None] = freshness.operations_as_of,
    **kwargs: str,
) -> None:
    compute: Callable[[MetricFilter], ops.Table] = partial(selector, **kwargs)
    if area == OPS and as_of is freshness.operations_as_of:
        # Read from the rollups only: the same until the next refresh, so kept until then (issue 19: the
        # operations page rebuilt every table per request, ~1 s at a million decisions).
        compute = freshness.rollup_cached(name, compute)
    register(Panel(name, title, area, adapters.ops_panel(compute), chart=chart, as_of=as_of))


register_tile(
    Tile(
        "open_alerts",
        "Open alerts",
        lambda: str(alerts_open().count()),
        url=lambda: "/analytics/alerts/",
        hint="open or acknowledged",
    )
)

OPS = "operations"
_ops("intake_by_source", "Intake volume by source", OPS, ops.intake_volume, _stacked("day", "received", "source"))
_ops(
    "intake_by_surface",
    "Intake volume by surface",
    OPS,
    ops.intake_volume,
    _stacked("day", "received", "surface"),
    by="surface",
)
_ops("intake_by_policy", "Intake volume by final policy", OPS, ops.intake_volume, by="policy")
_ops("automation_rate", "Automation rate", OPS, ops.automation_rate, _line("day", "automation_rate"))
_ops(
    "backlog",
    "Backlog by queue and age",
    OPS,
    ops.backlog,
    _stacked("queue", "items", "age_bucket"),
    as_of=freshness.live_as_of,
)
_ops(
    "turnaround_by_queue",
    "Turnaround, wait and handle time by queue",
    OPS,
    ops.latency_percentiles,
    _bar("queue", "turnaround_p90", title="Turnaround p90"),
)
_ops("turnaround_by_policy", "Turnaround by policy", OPS, ops.latency_percentiles, by="policy")
_ops("turnaround_by_priority", "Turnaround by priority", OPS, ops.latency_percentiles, by="priority")
_ops("sla_by_queue", "SLA attainment by queue", OPS, ops.sla_attainment, _bar("queue", "sla_attainment"))
_ops(
    "sla_by_vendor", "SLA attainment by vendor", OPS, ops.sla_attainment, _bar("vendor", "sla_attainment"), by="vendor"
)
_ops("escalation_rate", "Escalation rate by queue", OPS, ops.escalation_rate, _bar("queue", "escalation_rate"))
_ops("appeals", "Appeal and overturn rates by queue", OPS, ops.appeal_rates, _bar("queue", "overturn_rate"))
_ops(
    "reviewer_productivity",
    "Reviewer throughput, handle time and occupancy",
    OPS,
    ops.reviewer_productivity,
    _bar("reviewer", "decisions_per_productive_hour"),
)

_ops(
    "vendor_scorecards",
    "Vendor scorecards by week",
    "vendors",
    vendor_scorecard_table,
    _line("week_start", "sla_attainment", color="vendor", title="SLA attainment by week"),
)

CLF = "classifiers"
register(
    Panel(
        "classifier_summary",
        "Classifiers at their active thresholds",
        CLF,
        adapters.classifier_summary_table,
        chart=_bar("category", "precision", color="backend"),
        as_of=freshness.classifiers_as_of,
    )
)
register(
    Panel(
        "classifier_pr_curve",
        "Precision-recall curve",
        CLF,
        adapters.classifier_pr_table,
        chart=_drawn("precision", lambda t: charts.pr_curve(t, color="category" if "category" in t.keys else None)),
        as_of=freshness.classifiers_as_of,
    )
)


def _calibration(t: Table) -> Chart:
    return charts.calibration(t, predicted="mean_predicted", observed="observed_rate")


register(
    Panel(
        "classifier_calibration",
        "Calibration",
        CLF,
        adapters.classifier_calibration_table,
        chart=_drawn("observed_rate", _calibration),
        as_of=freshness.classifiers_as_of,
    )
)
register(
    Panel(
        "classifier_drift",
        "Weekly drift",
        CLF,
        adapters.classifier_drift_table,
        chart=_line("week_start", "precision"),
        as_of=freshness.classifiers_as_of,
    )
)

register(Panel("alerts", "Alerts opened in the period", "alerts", adapters.alerts_table, as_of=freshness.live_as_of))


def charts_warm(days: int | None = None) -> int:
    """Draw every panel's charts and format its table for the pages' default period, and draw the home's charts,
    into the cache (keyed by what they are drawn from, as the pages look them up), so no one waits on a first
    drawing; the periodic rollup refresh calls it after each refresh. Returns the charts drawn or found."""
    from analytics.charts import svgs_cached
    from analytics.forms import DEFAULT_DAYS
    from ops_platform.core.errors import ApplicationError

    f = MetricFilter.last_days(days or DEFAULT_DAYS)
    drawn = 0
    for panel in panels_all():
        try:
            table = panel.table(f)
        except ApplicationError:
            continue
        drawn += len(svgs_cached([panel.name, table.content()], partial(panel.charts, table)))
        table_html_cached(table, panel.name, f)  # and its table formatted, as the area and panel pages show it
    return drawn + len(home.day_charts_drawn())


# Accounts (docs/accounts.md): read live from the account tables.
register(
    Panel(
        "repeat_offenders",
        "Repeat-offender rate",
        "accounts",
        accounts.repeat_offenders,
        chart=_bar("family", "repeat_rate"),
        as_of=freshness.live_as_of,
    )
)
register(
    Panel(
        "strikes_by_day",
        "Strikes issued, expired and removed",
        "accounts",
        accounts.strikes_by_day,
        chart=_line("day", "issued"),
        as_of=freshness.live_as_of,
    )
)
register(
    Panel(
        "account_actions_by_policy",
        "Account actions by policy and their appeal overturn rate",
        "accounts",
        accounts.account_actions_by_policy,
        chart=_bar("policy", "actions"),
        as_of=freshness.live_as_of,
    )
)
