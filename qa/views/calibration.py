"""Calibration sessions: the list (QA creates sessions there), a session's page where each participant rates the
items, rating one item, and closing the session."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import User
from ops_platform.core.permissions import has_any
from ops_platform.core.refusals import refusal_response, refused
from qa import selectors, services
from qa.forms import CalibrationForm, RatingForm
from qa.models import CalibrationSession
from qa.views.common import error_into, media_prefs, qa_user, reviewer_user, status_of


@login_required
@require_http_methods(["GET", "POST"])
def calibration_list(request: HttpRequest) -> HttpResponse:
    user = reviewer_user(request)
    is_qa = has_any(user, "core.perform_qa")
    form = CalibrationForm(request.POST or None) if is_qa else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied
        if form.is_valid():
            try:
                session = services.session_create(
                    actor=user,
                    name=form.cleaned_data["name"],
                    item_ids=form.cleaned_data["item_ids"],
                    participants=list(form.cleaned_data["participants"]),
                )
            except ApplicationError as exc:
                error_into(form, exc)
            else:
                messages.success(request, f"Session “{session.name}” created.")
                return redirect("qa-calibration-session", pk=session.pk)
    sessions = selectors.calibration_sessions(of=None if is_qa else user)
    return render(request, "qa/calibration_list.html", {"sessions": sessions, "form": form}, status=status_of(form))


def _session_for(request: HttpRequest, pk: int) -> tuple[User, CalibrationSession, bool]:
    user = reviewer_user(request)
    session = get_object_or_404(CalibrationSession, pk=pk)
    participant = selectors.calibration_participant(session, user)
    if not participant and not has_any(user, "core.perform_qa"):
        raise Http404("No session of yours has that id.")
    return user, session, participant


@login_required
@require_GET
def calibration_session(request: HttpRequest, pk: int) -> HttpResponse:
    """While open: each participant sees only their own ratings. Once closed: everyone's, item by item."""
    user, session, participant = _session_for(request, pk)
    session_items = selectors.session_items(session)
    mine = selectors.ratings_of(session, user)
    rows = [
        {
            "si": si,
            "mine": mine.get(si.pk),
            "form": RatingForm(prefix=f"i{si.pk}"),
            "policies": selectors.policies_for(si.item.queue),
        }
        for si in session_items
    ]
    report = selectors.session_report(session) if session.closed_at else None
    people = selectors.session_people(session)
    rated = selectors.ratings_made(session, people)
    return render(
        request,
        "qa/calibration_session.html",
        {
            "session": session,
            "rows": rows,
            "participant": participant,
            "report": report,
            "people": people,
            "progress": [(p, rated[p.pk]) for p in people],
            "total": len(session_items),
            "report_rows": _report_rows(report, people) if report else [],
            **media_prefs(user),
        },
    )


def _report_rows(report: selectors.SessionReport, people: list[User]) -> list[dict[str, Any]]:
    return [{"row": row, "labels": [row.labels.get(p.pk, "") for p in people]} for row in report.items]


@login_required
@require_POST
def calibration_rate(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    user, session, _ = _session_for(request, pk)
    session_item = get_object_or_404(selectors.session_items_to_rate(session), pk=item_pk)
    form = RatingForm(request.POST, prefix=f"i{session_item.pk}")
    back = reverse("qa-calibration-session", args=[session.pk])
    if not form.is_valid():
        name, problems = next(iter(form.errors.items()))
        return refusal_response(request, ApplicationError(str(problems[0]), field=form.add_prefix(name)), back=back)
    try:
        services.rating_submit(
            session_item=session_item,
            actor=user,
            is_violation=form.cleaned_data["violation"] == "yes",
            policy=form.cleaned_data["policy"],
            rationale=form.cleaned_data["rationale"],
        )
    except ApplicationError as exc:
        if exc.field in form.fields:
            exc.field = form.add_prefix(exc.field)
        return refused(request, exc, back=back)
    messages.success(request, f"Item {session_item.position} rated.")
    return redirect(back)


@login_required
@require_POST
def calibration_close(request: HttpRequest, pk: int) -> HttpResponse:
    user = qa_user(request)
    session = get_object_or_404(CalibrationSession, pk=pk)
    try:
        services.session_close(session=session, actor=user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("qa-calibration-session", pk=session.pk)
