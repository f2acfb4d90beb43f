"""Dashboard pages: the ops-manager home, a page per area of registered panels, one page per panel (and its
CSV), and the drill-down list of the items behind a number."""

from __future__ import annotations

import logging
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from analytics import adapters, panels
from analytics.alerts import alerts_open
from analytics.charts import svgs_cached
from analytics.filters import MetricFilter
from analytics.forms import MetricFilterForm, metric_filter_from
from analytics.panels import Panel
from analytics.selectors import accounts as accounts_selectors
from analytics.selectors import home as home_selectors
from analytics.selectors.accounts import ACCOUNT_METRICS, STRIKE_METRICS
from analytics.selectors.alerts import alert_reading
from analytics.selectors.items import (
    ItemsSlice,
    classifier_items_listed,
    item_opened,
    items_behind_listed,
    items_drill,
)
from analytics.tables import as_of_text, filter_params, table_html_cached
from ops_platform.core.counts import count_capped
from ops_platform.core.csv_export import csv_response
from ops_platform.core.errors import ApplicationError
from ops_platform.core.keyset import keyset_page
from ops_platform.core.permissions import permitted
from queues.models import ReviewItem

logger = logging.getLogger(__name__)

ITEMS_PER_PAGE = 50
EXCERPT_CHARS = 160


def viewer_required(view: Any) -> Any:
    """Signed in (else the sign-in page), then ``core.view_analytics`` (else 403, before any method check)."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        permitted(request, "core.view_analytics")
        return view(request, *args, **kwargs)

    return login_required(checked)


def _guard(view: Any) -> Any:
    return viewer_required(require_GET(view))


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {"areas": panels.areas_with_panels(), **extra}


def _rendered(panel: Panel, f: MetricFilter) -> dict[str, Any]:
    """A panel's table and SVG charts, or the message of a refusal (one bad panel must not sink the page)."""
    query = urlencode(filter_params(f))
    base = reverse("analytics-panel", args=[panel.area, panel.name])
    out: dict[str, Any] = {
        "panel": panel,
        "url": f"{base}?{query}",
        "csv_url": f"{base}?{query}&format=csv",
        "json_url": f"{reverse('api-metric', args=[panel.name])}?{query}",
        # Read before the figures: they are at least this fresh.
        "as_of": as_of_text(panel.as_of()),
    }
    try:
        table = panel.table(f)
        out["table"] = table
        drawn_from = table.content()
        out["svgs"] = svgs_cached([panel.name, drawn_from], lambda: panel.charts(table))
        out["table_html"] = table_html_cached(table, panel.name, f)
    except ApplicationError as e:
        out["error"] = e.message
    return out


def _bad_filter(request: HttpRequest, form: MetricFilterForm, template: str, **extra: Any) -> HttpResponse:
    return render(request, template, _context(request, form=form, **extra), status=400)


@_guard
def home(request: HttpRequest) -> HttpResponse:
    tiles = [
        {"tile": t, "as_of": as_of_text(t.as_of()), "value": t.value(), "url": t.url() if t.url else None}
        for t in panels.tiles_all()
    ]
    areas = [
        {"slug": slug, "title": title, "panels": panels.panels_for(slug)} for slug, title in panels.areas_with_panels()
    ]
    opened = alerts_open().select_related("rule", "rule__queue")[:10]
    open_alerts = [
        {"alert": a, "reading": alert_reading(a.metric, a.value, a.baseline, a.rule.window, a.rule.baseline)}
        for a in opened
    ]
    return render(
        request,
        "analytics/home.html",
        _context(
            request,
            tiles=tiles,
            area_panels=areas,
            charts=home_selectors.day_charts_drawn(),
            open_alerts=open_alerts,
            backlog_due=home_selectors.backlog_due(),
        ),
    )


@_guard
def area(request: HttpRequest, area: str) -> HttpResponse:
    members = panels.panels_for(area)
    if not members:
        raise Http404("No such dashboard.")
    context = {"area": area, "area_title": panels.AREAS[area]}
    form, f = metric_filter_from(request.GET, classifiers=area == panels.CLF)
    if f is None:
        return _bad_filter(request, form, "analytics/area.html", **context)
    rendered = [_rendered(p, f) for p in members]
    return render(request, "analytics/area.html", _context(request, form=form, rendered=rendered, **context))


@_guard
def panel(request: HttpRequest, area: str, name: str) -> HttpResponseBase:
    p = panels.panel_get(name)
    if p is None or p.area != area:
        raise Http404("No such panel.")
    context = {"area": area, "area_title": panels.AREAS[area], "single": p}
    form, f = metric_filter_from(request.GET, classifiers=area == panels.CLF)
    if f is None:
        return _bad_filter(request, form, "analytics/area.html", **context)
    if request.GET.get("format") == "csv":
        try:
            table = p.table(f)
        except ApplicationError as e:
            return HttpResponse(e.message, status=400, content_type="text/plain; charset=utf-8")
        return csv_response(table.csv_lines(), f"{p.name}_{f.start}_{f.end}")
    rendered = [_rendered(p, f)]
    return render(request, "analytics/area.html", _context(request, form=form, rendered=rendered, **context))


ACCOUNT_ROWS_PER_PAGE = 100


@_guard
def account_rows(request: HttpRequest) -> HttpResponse:
    """The strikes, accounts or actions behind a figure of the account panels (docs/accounts.md): as many as the
    figure counts, newest first, in keyset pages, each linking to its account's page."""
    form, f = metric_filter_from(request.GET)
    if f is None:
        return _bad_filter(request, form, "analytics/account_rows.html")
    metric = request.GET.get("metric", "")
    try:
        queryset = accounts_selectors.account_rows(metric, f, request.GET)
        page = keyset_page(queryset, request.GET.get("after"), ACCOUNT_ROWS_PER_PAGE)
    except ApplicationError as e:
        context = _context(request, form=form, problem=e.message, problem_field=e.field)
        return render(request, "analytics/account_rows.html", context, status=e.status_code)
    kept = {k: v for k, v in request.GET.items() if k == "metric" or k.startswith("cell_")}
    shows = "strikes" if metric in STRIKE_METRICS else "accounts" if metric in ACCOUNT_METRICS else "actions"
    context = _context(
        request,
        form=form,
        metric=metric,
        shows=shows,
        page=page,
        listed=queryset,
        count=queryset.count(),
        query=urlencode({**filter_params(f), **kept}),
        extra_params=list(kept.items()),
    )
    return render(request, "analytics/account_rows.html", context)


@_guard
def items(request: HttpRequest) -> HttpResponse:
    form, f = metric_filter_from(request.GET, classifiers=bool(request.GET.get("clf_cell")))
    if f is None:
        return _bad_filter(request, form, "analytics/items.html")
    try:
        slice_ = ItemsSlice.from_params(request.GET)
        # ``is None``, not ``or``: an empty drill-down is an answer (a figure of 0), not a reason to list everything.
        drilled = _drilled(request, f)
        queryset = drilled if drilled is not None else items_drill(f, slice_)
    except ApplicationError as e:
        context = _context(request, form=form, problem=e.message, problem_field=e.field)
        return render(request, "analytics/items.html", context, status=e.status_code)
    try:
        page = keyset_page(queryset, request.GET.get("after"), ITEMS_PER_PAGE)
    except ApplicationError as e:
        context = _context(request, form=form, problem=e.message, problem_field=e.field)
        return render(request, "analytics/items.html", context, status=e.status_code)
    rows = [
        {
            "item": item,
            "excerpt": item.text[:EXCERPT_CHARS] + ("…" if len(item.text) > EXCERPT_CHARS else ""),
        }
        for item in page.rows
    ]
    drill_params = {k: v for k, v in request.GET.items() if k == "metric" or k.startswith(("cell_", "clf_"))}
    query = urlencode({**filter_params(f), **slice_.params(), **drill_params})
    return render(
        request,
        "analytics/items.html",
        _context(
            request,
            form=form,
            slice=slice_,
            page=page,
            listed=queryset,
            # Exact up to 10,000 items; a longer list is counted by the planner's estimate and says "about".
            counted=(counted := count_capped(queryset)),
            count=counted.n,
            rows=rows,
            query=query,
            extra_params=[*slice_.params().items(), *drill_params.items()],
        ),
    )


def _drilled(request: HttpRequest, f: MetricFilter) -> QuerySet[ReviewItem] | None:
    """The items behind an operations or classifier panel's number, when the link names one."""
    ops_cell = adapters.ops_cell(request.GET)
    if ops_cell is not None:
        metric, cell = ops_cell
        return items_behind_listed(metric, f, cell)
    clf_cell = adapters.classifier_cell(request.GET, f)
    if clf_cell is not None:
        try:
            return classifier_items_listed(f, clf_cell)
        except ApplicationError as e:
            e.field = adapters.CLASSIFIER_PARAMS.get(e.field or "", e.field)
            raise
    return None


@_guard
def item(request: HttpRequest, pk: int) -> HttpResponse:
    """One item behind a number, read-only: what it is, where it went, who decided what (its text shown as the
    review pages show attacker-controlled text: escaped, hidden characters made visible)."""
    opened = item_opened(pk)
    if opened is None:
        raise Http404("No such item.")
    it, decisions, events = opened
    # Media as the reviewer's page shows them: only the platform's stored copies, blurred until revealed here
    # (whatever the viewer's preference: this page is read by people who did not choose to review content).
    profile = getattr(request.user, "reviewer_profile", None)
    greyscale = profile.greyscale_media if profile else True
    context = _context(request, item=it, decisions=decisions, events=events, blur=True, greyscale=greyscale)
    return render(request, "analytics/item.html", context)
