"""Scorecards per reviewer and per vendor (QA), and a reviewer's own coaching page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from ops_platform.core.localday import day_start
from qa import selectors
from qa.forms import ScorecardFilterForm
from qa.models import ErrorType
from qa.views.common import qa_user, reviewer_user, status_of


def _error_columns() -> list[tuple[selectors.ErrorType, str]]:
    return [(t, ErrorType(t.value).label.split(" (")[0]) for t in selectors.ErrorType]


@login_required
@require_GET
def scorecards(request: HttpRequest) -> HttpResponse:
    """Per reviewer and per vendor, sorted by name: a quality tool, not a leaderboard."""
    qa_user(request)
    form = ScorecardFilterForm(request.GET or None)
    f = selectors.QaFilter()
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        f = selectors.QaFilter(
            queue_id=data["queue"].pk if data["queue"] else None,
            policy_id=data["policy"].pk if data["policy"] else None,
            vendor_id=data["vendor"].pk if data["vendor"] else None,
            start=day_start(data["start"]) if data["start"] else None,
            end=day_start(data["end"]) if data["end"] else None,
        )
    return render(
        request,
        "qa/scorecards.html",
        {
            "form": form,
            "people": selectors.scorecards("reviewer", f),
            "vendors": selectors.scorecards("vendor", f),
            "error_types": _error_columns(),
        },
        status=status_of(form),
    )


@login_required
@require_GET
def coaching(request: HttpRequest) -> HttpResponse:
    """A reviewer's own QA outcomes and golden results, with the reasons: never anyone else's."""
    user = reviewer_user(request)
    entries, golden_results, stats = selectors.coaching_for(user)
    return render(
        request,
        "qa/coaching.html",
        {"entries": entries, "golden": golden_results, "stats": stats, "error_types": _error_columns()},
    )
