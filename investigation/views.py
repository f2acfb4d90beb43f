"""The investigation pages: the item search and a found item, for senior reviewers, QA, policy staff, ops managers
and admins (``selectors.SEARCH_PERMISSIONS``). Thin: the services scope, refuse and audit."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from investigation import services
from investigation.forms import search_form_for
from investigation.selectors import SEARCH_PERMISSIONS
from ops_platform.core.permissions import permitted


@login_required
def search(request: HttpRequest) -> HttpResponse:
    user = permitted(request, *SEARCH_PERMISSIONS)
    if request.method != "GET":
        return HttpResponse("Search answers GET.", status=405, headers={"Allow": "GET"})
    form = search_form_for(user, request.GET or None)
    if not form.is_bound:
        return render(request, "investigation/search.html", {"form": form})
    if not form.is_valid():
        return render(request, "investigation/search.html", {"form": form}, status=400)
    search_filter = form.search_filter()
    results = services.items_search(actor=user, search=search_filter)
    next_query = ""
    if results.next_before is not None:
        next_query = urlencode({**search_filter.params(), "before": results.next_before})
    return render(request, "investigation/search.html", {"form": form, "results": results, "next_query": next_query})


@login_required
def item(request: HttpRequest, pk: int) -> HttpResponse:
    user = permitted(request, *SEARCH_PERMISSIONS)
    if request.method != "GET":
        return HttpResponse("This page answers GET.", status=405, headers={"Allow": "GET"})
    found, decisions, events, content = services.item_investigate(actor=user, pk=pk)
    return render(
        request,
        "investigation/item.html",
        {"item": found, "decisions": decisions, "events": events, "content": content},
    )
