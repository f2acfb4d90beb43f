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

from analytics import charts
from analytics.charts import Chart
from analytics.filters import MetricFilter
from analytics.selectors import capacity, home
from analytics.tables import Table

# Areas in the order the home page and the navigation list them.
AREAS: dict[str, str] = {
    "operations": "Operations",
    "classifiers": "Classifier performance",
    "vendors": "Vendor scorecards",
    "capacity": "Capacity forecast",
    "alerts": "Alerts",
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
register_tile(Tile("backlog", "Backlog", home.backlog, url=home.backlog_url, hint="queued or claimed now"))
register_tile(Tile("sla_7d", "SLA attainment, 7 days", home.sla_attainment_7d, hint="decided within the SLA"))
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
