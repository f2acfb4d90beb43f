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
    form = CalibrationForm(request.POST or None, request.FILES or None) if is_qa else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied
        if form.is_valid():
            data = form.cleaned_data
            if data.get("queue") is not None:
                item_ids = selectors.session_items_from(
                    queue=data["queue"], state=data.get("state") or None, limit=data.get("limit") or 200
                )
            else:
                item_ids = data["ids"]
            try:
                session = services.session_create(
                    actor=user, name=data["name"], item_ids=item_ids, participants=list(data["participants"])
                )
            except ApplicationError as exc:
                error_into(form, exc)
            else:
                messages.success(request, f"Session “{session.name}” created with {len(item_ids)} item ids.")
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


REPORT_PAGE = 100


@login_required
@require_GET
def calibration_session(request: HttpRequest, pk: int) -> HttpResponse:
    """While open: progress and a way into rating (one item at a time). Once closed: the report, its item rows
    paginated, its figures stored at close."""
    user, session, participant = _session_for(request, pk)
    people = selectors.session_people(session)
    rated = selectors.ratings_made(session, people)
    total = session.session_items.count()
    context: dict[str, Any] = {
        "session": session,
        "participant": participant,
        "people": people,
        "progress": [(p, rated[p.pk]) for p in people],
        "total": total,
        "mine": rated.get(user.pk, 0),
    }
    if session.closed_at:
        page = _page_number(request.GET.get("page"))
        report = selectors.session_report_page(session, page=page, page_size=REPORT_PAGE)
        context["report"] = report
        context["report_rows"] = [
            {"row": row, "labels": [row.labels.get(p.pk, "") for p in people]} for row in report.items
        ]
    return render(request, "qa/calibration_session.html", context)


def _page_number(raw: str | None) -> int:
    try:
        return min(max(1, int(raw or 1)), 1_000_000)
    except ValueError:
        return 1


@login_required
@require_GET
def calibration_rate_page(request: HttpRequest, pk: int) -> HttpResponse:
    """One item at a time: the participant's next unrated item (or ``?position=``), with one-key ratings."""
    user, session, participant = _session_for(request, pk)
    if not participant:
        raise Http404("You do not take part in this session.")
    if session.closed_at:
        return redirect("qa-calibration-session", pk=session.pk)
    position = request.GET.get("position")
    session_item = (
        selectors.session_item_at(session, _page_number(position)) if position else None
    ) or selectors.session_item_next(session, user)
    if session_item is None:
        messages.success(request, "You have rated every item of this session.")
        return redirect("qa-calibration-session", pk=session.pk)
    policies = selectors.policies_for(session_item.item.queue)
    total = session.session_items.count()
    return render(
        request,
        "qa/calibration_rate.html",
        {
            "session": session,
            "si": session_item,
            "item": session_item.item,
            "mine": selectors.rating_of(session_item, user),
            "quick": [(str(n), p) for n, p in enumerate(policies[:9], start=1)],
            "form": RatingForm(prefix=f"i{session_item.pk}"),
            "rated": selectors.ratings_made(session, [user])[user.pk],
            "total": total,
            **media_prefs(user),
        },
    )


@login_required
@require_POST
def calibration_rate(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    """Rate one item, then on to the participant's next unrated one (never back to a page of every item)."""
    user, session, _ = _session_for(request, pk)
    session_item = get_object_or_404(selectors.session_items_to_rate(session), pk=item_pk)
    form = RatingForm(request.POST, prefix=f"i{session_item.pk}")
    here = reverse("qa-calibration-rate-next", args=[session.pk]) + f"?position={session_item.position}"
    if not form.is_valid():
        name, problems = next(iter(form.errors.items()))
        return refusal_response(request, ApplicationError(str(problems[0]), field=form.add_prefix(name)), back=here)
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
        return refused(request, exc, back=here)
    messages.success(request, f"Item {session_item.position} rated.")
    return redirect("qa-calibration-rate-next", pk=session.pk)


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
