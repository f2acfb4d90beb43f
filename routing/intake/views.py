"""Intake's one page action: re-drive a dead letter (a triage or scoring task that failed for good), from the list on
the scoring overview."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from ops_platform.core.errors import ApplicationError
from ops_platform.core.permissions import permitted
from routing.intake.models import DeadLetter
from routing.intake.services import dead_letter_redrive
from routing.scoring.views import OPS


@login_required
@require_POST
def dead_letter_redrive_view(request: HttpRequest, pk: int) -> HttpResponse:
    user = permitted(request, *OPS)
    letter = get_object_or_404(DeadLetter, pk=pk)
    try:
        dead_letter_redrive(letter=letter, actor=user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Dead letter {letter.pk} ({letter.task}) sent again.")
    return redirect("scoring-overview")
