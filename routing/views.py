"""Scoring pages for ops: usage and spend per backend, breakers, incidents, dead letters, model cards."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import User
from routing import rule_selectors, selectors
from routing.models import DeadLetter
from routing.services import dead_letter_redrive

OPS = ("core.view_analytics", "core.manage_platform")
# Policy staff read model cards too: they decide which thresholds rules use.
MODEL_READERS = (*OPS, "core.edit_policies")


def _require_any(user: User, perms: tuple[str, ...]) -> None:
    if not any(user.has_perm(p) for p in perms):
        raise PermissionDenied


@login_required
@require_GET
def scoring_overview(request: HttpRequest) -> HttpResponse:
    _require_any(request.user, OPS)  # type: ignore[arg-type]
    return render(
        request,
        "routing/scoring_overview.html",
        {
            "backends": selectors.backends_status(),
            "usage": selectors.usage_daily(days=14),
            "incidents": selectors.incidents_recent(days=7),
            "rule_incidents": rule_selectors.rule_incidents_open()[:100],
            "dead_letters": selectors.dead_letters_open()[:200],
            "models": selectors.model_versions()[:20],
        },
    )


@login_required
@require_GET
def model_card(request: HttpRequest, pk: int) -> HttpResponse:
    _require_any(request.user, MODEL_READERS)  # type: ignore[arg-type]
    version = get_object_or_404(selectors.model_versions(), pk=pk)
    metrics = sorted(version.metrics.items())
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
        for category, figures in metrics
    ]
    return render(
        request,
        "routing/model_card.html",
        {"version": version, "rows": rows, "history": selectors.model_history(version)},
    )


@login_required
@require_POST
def dead_letter_redrive_view(request: HttpRequest, pk: int) -> HttpResponse:
    _require_any(request.user, OPS)  # type: ignore[arg-type]
    letter = get_object_or_404(DeadLetter, pk=pk)
    try:
        dead_letter_redrive(letter=letter, actor=request.user)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Dead letter {letter.pk} ({letter.task}) sent again.")
    return redirect("scoring-overview")
