"""Scoring pages for ops: usage and spend per backend, breakers, incidents, model cards; rules and intake add their
sections to the overview (rule incidents, dead letters) through ``routing.scoring.overview``."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from ops_platform.core.permissions import permitted
from routing.scoring import selectors
from routing.scoring.coverage import child_safety_gap, coverage_incidents_open, coverage_read
from routing.scoring.overview import overview_sections

OPS = ("core.view_analytics", "core.manage_platform")
# Policy staff read model cards too: they decide which thresholds rules use.
MODEL_READERS = (*OPS, "core.edit_policies")


@login_required
@require_GET
def scoring_overview(request: HttpRequest) -> HttpResponse:
    permitted(request, *OPS)
    coverage = coverage_read()
    return render(
        request,
        "routing/scoring_overview.html",
        {
            "coverage": coverage,
            # The guard's state as configured now; the incident row says since when (the beat task keeps it).
            "coverage_gap": child_safety_gap(coverage),
            "coverage_incident": next(iter(coverage_incidents_open()), None),
            "backends": selectors.backends_status(),
            "usage": selectors.usage_daily(days=14),
            "incidents": selectors.incidents_recent(days=7),
            "models": selectors.model_versions()[:20],
            **overview_sections(),
        },
    )


@login_required
@require_GET
def model_card(request: HttpRequest, pk: int) -> HttpResponse:
    permitted(request, *MODEL_READERS)
    version = get_object_or_404(selectors.model_versions(), pk=pk)
    baseline = version.training_data.get("baseline", {}).get("auprc", {})
    rows = [
        {
            "category": category,
            **figures,
            "lift": figures["auprc"] / figures["prevalence"]
            if figures.get("auprc") and figures["prevalence"]
            else None,
            "threshold": version.thresholds.get(category),
            "baseline": baseline.get(category),
        }
        for category, figures in sorted(version.metrics.items())
    ]
    cross_validated = version.training_data.get("cross_validated") or {}
    cv_rows = [
        {"category": category, **figures}
        for category, figures in sorted((cross_validated.get("categories") or {}).items())
    ]
    if cross_validated.get("overall"):
        cv_rows.append({"category": "overall (any violation)", "intervals": cross_validated["overall"]})
    return render(
        request,
        "routing/model_card.html",
        {
            "version": version,
            "rows": rows,
            "cv_rows": cv_rows,
            "cv_folds": cross_validated.get("folds"),
            "history": selectors.model_history(version),
        },
    )
