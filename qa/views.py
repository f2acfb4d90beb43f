"""The QA pages (mounted at /qa/): blind re-review, adjudication, sampling plans, golden items, calibration,
scorecards, a reviewer's own coaching page and the ground-truth export.

QA pages need ``core.perform_qa``; coaching is for anyone who reviews and shows only their own outcomes.
The blind re-review page shows the item as the original reviewer saw it, minus everything that could
give the original decision away (history, metadata, panels, tags); only its holder may open it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime, time
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import Policy, User
from ops_platform.core.refusals import refusal_response, refused
from qa import calibration, golden, review, sampling, selectors
from qa.forms import (
    AdjudicationForm,
    CalibrationForm,
    GoldenForm,
    GoldenRateForm,
    PlanForm,
    RatingForm,
    SampleSizeForm,
    ScorecardFilterForm,
    VerdictForm,
)
from qa.models import (
    CalibrationItem,
    CalibrationRating,
    CalibrationSession,
    ErrorType,
    GoldenItem,
    GoldenRate,
    QaSample,
    SampleState,
    SamplingPlan,
)
from queues.models import Decision, Queue


def _qa(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User) or not user.has_perm("core.perform_qa"):
        raise PermissionDenied
    return user


def _reviewer(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User) or not (user.has_perm("core.review_items") or user.has_perm("core.perform_qa")):
        raise PermissionDenied
    return user


def _media_prefs(user: User) -> dict[str, bool]:
    profile = getattr(user, "reviewer_profile", None)
    return {"blur": profile.blur_media if profile else True, "greyscale": profile.greyscale_media if profile else True}


def _policies_for(queue: Queue | None) -> list[Policy]:
    """The policies a QA decision may cite: the queue's, or every active one for an item without a queue."""
    policies = queue.policies.filter(is_active=True) if queue else Policy.objects.filter(is_active=True)
    return list(policies.prefetch_related("enforcement_actions"))


def _verdict_of(form: VerdictForm) -> dict[str, Any]:
    return {
        "is_violation": form.is_violation,
        "policy": form.cleaned_data.get("policy"),
        "action": form.cleaned_data.get("action"),
    }


def _error_into(form: forms.BaseForm, exc: ApplicationError) -> None:
    """A service's refusal shown on the form, on the field it names when the form has it."""
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


def _status_of(form: forms.BaseForm | None) -> int:
    """A form sent back with errors is a refusal: 400, so the answer says so, not only the page."""
    return 400 if form is not None and form.is_bound and form.errors else 200


# --- home -----------------------------------------------------------------------------------------------


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    user = _qa(request)
    held = QaSample.objects.filter(state=SampleState.CLAIMED, assignee=user, lease_expires_at__gt=timezone.now())
    counts = selectors.queue_counts()
    return render(
        request,
        "qa/home.html",
        {
            "counts": [(SampleState(state).label, state, n) for state, n in counts.items()],
            "held": held.first(),
            "waiting": counts[SampleState.PENDING],
            "disputed": counts[SampleState.ADJUDICATION],
        },
    )


# --- blind re-review ----------------------------------------------------------------------------------


@login_required
@require_POST
def review_next(request: HttpRequest) -> HttpResponse:
    user = _qa(request)
    try:
        sample = review.sample_claim_next(actor=user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("qa-home")
    if sample is None:
        messages.info(request, "No sample is waiting for re-review.")
        return redirect("qa-home")
    return redirect("qa-review", pk=sample.pk)


@login_required
@require_http_methods(["GET", "POST"])
def review_page(request: HttpRequest, pk: int) -> HttpResponse:
    """Blind: the item, its reports and the guidelines, never the original decision or its maker."""
    user = _qa(request)
    sample = (
        QaSample.objects.select_related("item", "original_queue")
        .filter(pk=pk, state=SampleState.CLAIMED, assignee=user)
        .first()
    )
    if sample is None:
        raise Http404("No sample of yours has that id.")
    queue = sample.original_queue or sample.item.queue
    policies = _policies_for(queue)
    form = VerdictForm(request.POST or None, policies=policies)
    if request.method == "POST" and form.is_valid():
        try:
            review.qa_review_submit(
                sample=sample, actor=user, rationale=form.cleaned_data["rationale"], **_verdict_of(form)
            )
        except ApplicationError as exc:
            _error_into(form, exc)
        else:
            return redirect("qa-compare", pk=sample.pk)
    return render(
        request,
        "qa/review.html",
        {
            "sample": sample,
            "item": sample.item,
            "queue": queue,
            "policies": policies,
            "form": form,
            **_media_prefs(user),
        },
        status=_status_of(form),
    )


def _original_decision(sample: QaSample) -> Decision | None:
    if sample.decision_id is None:
        return None
    return Decision.objects.select_related("reviewer", "policy", "action").get(pk=sample.decision_id)


@login_required
@require_GET
def compare(request: HttpRequest, pk: int) -> HttpResponse:
    """After the blind re-review: both decisions side by side. Never before, or the re-review is not blind."""
    user = _qa(request)
    sample = get_object_or_404(
        QaSample.objects.select_related(
            "item", "original_queue", "original_policy", "original_action", "original_reviewer",
            "review__policy", "review__action", "review__reviewer",
        ),
        pk=pk, review__isnull=False,
    )  # fmt: skip
    return render(
        request,
        "qa/compare.html",
        {"sample": sample, "item": sample.item, "decision": _original_decision(sample), "qa": sample.review,
         "adjudication": getattr(sample, "adjudication", None), "mine": sample.review.reviewer_id == user.pk,
         **_media_prefs(user)},
    )  # fmt: skip


# --- adjudication -----------------------------------------------------------------------------------------


@login_required
@require_GET
def adjudication_list(request: HttpRequest) -> HttpResponse:
    user = _qa(request)
    return render(request, "qa/adjudication_list.html", {"samples": selectors.adjudication_waiting(), "me": user})


@login_required
@require_http_methods(["GET", "POST"])
def adjudicate(request: HttpRequest, pk: int) -> HttpResponse:
    user = _qa(request)
    sample = get_object_or_404(
        QaSample.objects.select_related(
            "item", "original_queue", "original_policy", "original_action", "original_reviewer",
            "review__policy", "review__action", "review__reviewer",
        ),
        pk=pk, state__in=[SampleState.ADJUDICATION, SampleState.CLOSED], review__isnull=False,
    )  # fmt: skip
    queue = sample.original_queue or sample.item.queue
    policies = _policies_for(queue)
    # Prefilled for the likeliest error (the re-review was right); the page's script follows the chosen label.
    qa_verdict = review.Verdict.of(sample.review.is_violation, sample.review.policy_id, sample.review.action_id)
    form = AdjudicationForm(
        request.POST or None, policies=policies, initial={"severity": review.default_severity(sample, qa_verdict)}
    )
    if request.method == "POST" and sample.state == SampleState.ADJUDICATION and form.is_valid():
        try:
            done = review.adjudicate(
                sample=sample, actor=user, rationale=form.cleaned_data["rationale"],
                severity=form.cleaned_data.get("severity"), **_verdict_of(form),
            )  # fmt: skip
        except ApplicationError as exc:
            _error_into(form, exc)
        else:
            found = ErrorType(done.error_type)
            what = "the original decision was right" if found == ErrorType.NONE else f"{found.label}"
            messages.success(request, f"Adjudicated: {what}.")
            return redirect("qa-adjudicate", pk=sample.pk)
    party = user.pk in (sample.original_reviewer_id, sample.review.reviewer_id)
    return render(
        request,
        "qa/adjudicate.html",
        {
            "sample": sample,
            "item": sample.item,
            "queue": queue,
            "policies": policies,
            "form": form,
            "decision": _original_decision(sample),
            "qa": sample.review,
            "adjudication": getattr(sample, "adjudication", None),
            "party": party,
            "severities": _default_severities(sample, policies),
            "is_golden_source": golden_made(sample),
            **_media_prefs(user),
        },
        status=_status_of(form),
    )


def _default_severities(sample: QaSample, policies: list[Policy]) -> dict[str, float]:
    """The prefilled severity weight for each possible final label (the script picks the one that applies)."""
    weights = {"none": review.default_severity(sample, review.Verdict.of(False, None, None))}
    for p in policies:
        weights[str(p.pk)] = review.default_severity(sample, review.Verdict.of(True, p, None))
    return weights


def golden_made(sample: QaSample) -> bool:
    return GoldenItem.objects.filter(origin_item_id=sample.item_id).exists()


@login_required
@require_POST
def golden_from_sample(request: HttpRequest, pk: int) -> HttpResponse:
    user = _qa(request)
    sample = get_object_or_404(QaSample, pk=pk)
    try:
        made = golden.golden_from_sample(actor=user, sample=sample)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("qa-adjudicate", pk=sample.pk)
    messages.success(request, f"Golden item {made.pk} created for {made.queue.name}.")
    return redirect("qa-golden")


# --- sampling plans ----------------------------------------------------------------------------------------


@login_required
@require_GET
def plans(request: HttpRequest) -> HttpResponse:
    _qa(request)
    size_form = SampleSizeForm(request.GET if "margin" in request.GET else None)
    size: dict[str, Any] = {}
    if size_form.is_bound and size_form.is_valid():
        data = size_form.cleaned_data
        try:
            n = sampling.plan_sample_size(
                expected_error_rate=data["expected_error_rate"], margin=data["margin"],
                confidence=data["confidence"], population=data.get("population"),
            )  # fmt: skip
        except ApplicationError as exc:
            _error_into(size_form, exc)
        else:
            size["n"] = n
            if data.get("decisions_per_month"):
                size["rate"] = sampling.plan_rate_for(sample=n, decisions_per_period=data["decisions_per_month"])
    all_plans = (
        SamplingPlan.objects.select_related("queue", "policy", "vendor", "reviewer")
        .annotate(n_samples=Count("samples"))
        .order_by("-is_active", "name")
    )
    return render(
        request,
        "qa/plans.html",
        {"plans": all_plans, "size_form": size_form, "size": size},
        status=_status_of(size_form),
    )


@login_required
@require_http_methods(["GET", "POST"])
def plan_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    user = _qa(request)
    plan = get_object_or_404(SamplingPlan, pk=pk) if pk else SamplingPlan(created_by=user)
    form = PlanForm(request.POST or None, instance=plan)
    if request.method == "POST" and form.is_valid():
        try:
            saved = sampling.plan_save(actor=user, plan=form.save(commit=False), reason=form.cleaned_data["reason"])
        except ApplicationError as exc:
            _error_into(form, exc)
        else:
            messages.success(request, f"Plan “{saved.name}” saved.")
            return redirect("qa-plans")
    return render(request, "qa/plan_form.html", {"form": form, "plan": plan}, status=_status_of(form))


# --- golden items ------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def golden_items(request: HttpRequest) -> HttpResponse:
    user = _qa(request)
    which = request.POST.get("form")
    form = GoldenForm(request.POST if which == "golden" else None)
    rate_form = GoldenRateForm(request.POST if which == "rate" else None)
    if which == "golden" and form.is_valid():
        data = form.cleaned_data
        try:
            made = golden.golden_create(
                actor=user,
                queue=data["queue"],
                text=data["text"],
                expected_is_violation=data["expected_is_violation"],
                expected_policy=data["expected_policy"],
                expected_action=data["expected_action"],
                rationale=data["rationale"],
                surface=data["surface"],
                language=data["language"],
                report_reasons=form.reasons(),
                kind=data["kind"],
                source=data["source"],
                author_ref=data["author_ref"],
                metadata=data["metadata"],
            )
        except ApplicationError as exc:
            _error_into(form, exc)
        else:
            messages.success(request, f"Golden item {made.pk} created.")
            return redirect("qa-golden")
    if which == "rate" and rate_form.is_valid():
        try:
            setting = golden.golden_rate_set(
                actor=user, queue=rate_form.cleaned_data["queue"], rate=rate_form.cleaned_data["rate"]
            )
        except ApplicationError as exc:
            _error_into(rate_form, exc)
        else:
            messages.success(request, f"{setting.queue.name}: {setting.rate:.1%} golden.")
            return redirect("qa-golden")
    return render(
        request,
        "qa/golden.html",
        {
            "rows": selectors.golden_list(),
            "form": form,
            "rate_form": rate_form,
            "rates": GoldenRate.objects.select_related("queue").order_by("queue__name"),
        },
        status=max(_status_of(form), _status_of(rate_form)),
    )


# --- calibration -------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def calibration_list(request: HttpRequest) -> HttpResponse:
    user = _reviewer(request)
    is_qa = user.has_perm("core.perform_qa")
    form = CalibrationForm(request.POST or None) if is_qa else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied
        if form.is_valid():
            try:
                session = calibration.session_create(
                    actor=user, name=form.cleaned_data["name"], item_ids=form.cleaned_data["item_ids"],
                    participants=list(form.cleaned_data["participants"]),
                )  # fmt: skip
            except ApplicationError as exc:
                _error_into(form, exc)
            else:
                messages.success(request, f"Session “{session.name}” created.")
                return redirect("qa-calibration-session", pk=session.pk)
    sessions = CalibrationSession.objects.order_by("-created_at")
    if not is_qa:
        sessions = sessions.filter(participants=user)
    return render(request, "qa/calibration_list.html", {"sessions": sessions, "form": form}, status=_status_of(form))


def _session_for(request: HttpRequest, pk: int) -> tuple[User, CalibrationSession, bool]:
    user = _reviewer(request)
    session = get_object_or_404(CalibrationSession, pk=pk)
    participant = session.participants.filter(pk=user.pk).exists()
    if not participant and not user.has_perm("core.perform_qa"):
        raise Http404("No session of yours has that id.")
    return user, session, participant


@login_required
@require_GET
def calibration_session(request: HttpRequest, pk: int) -> HttpResponse:
    """While open: each participant sees only their own ratings. Once closed: everyone's, item by item."""
    user, session, participant = _session_for(request, pk)
    session_items = list(session.session_items.select_related("item", "item__queue"))
    mine = {r.session_item_id: r for r in CalibrationRating.objects.filter(
        session_item__session=session, participant=user).select_related("policy")}  # fmt: skip
    rows = [
        {"si": si, "mine": mine.get(si.pk), "form": RatingForm(prefix=f"i{si.pk}"),
         "policies": _policies_for(si.item.queue)}
        for si in session_items
    ]  # fmt: skip
    report = calibration.session_report(session) if session.closed_at else None
    people = list(session.participants.order_by("username"))
    rated = {
        p.pk: CalibrationRating.objects.filter(session_item__session=session, participant=p).count() for p in people
    }
    return render(
        request,
        "qa/calibration_session.html",
        {"session": session, "rows": rows, "participant": participant, "report": report, "people": people,
         "progress": [(p, rated[p.pk]) for p in people], "total": len(session_items),
         "report_rows": _report_rows(report, people) if report else [], **_media_prefs(user)},
    )  # fmt: skip


def _report_rows(report: calibration.SessionReport, people: list[User]) -> list[dict[str, Any]]:
    return [{"row": row, "labels": [row.labels.get(p.pk, "") for p in people]} for row in report.items]


@login_required
@require_POST
def calibration_rate(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    user, session, _ = _session_for(request, pk)
    session_item = get_object_or_404(CalibrationItem.objects.select_related("session"), pk=item_pk, session=session)
    form = RatingForm(request.POST, prefix=f"i{session_item.pk}")
    back = reverse("qa-calibration-session", args=[session.pk])
    if not form.is_valid():
        name, problems = next(iter(form.errors.items()))
        return refusal_response(request, ApplicationError(str(problems[0]), field=form.add_prefix(name)), back=back)
    try:
        calibration.rating_submit(
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
    user = _qa(request)
    session = get_object_or_404(CalibrationSession, pk=pk)
    try:
        calibration.session_close(session=session, actor=user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("qa-calibration-session", pk=session.pk)


# --- scorecards and coaching ---------------------------------------------------------------------------------


def _error_columns() -> list[tuple[selectors.ErrorType, str]]:
    return [(t, ErrorType(t.value).label.split(" (")[0]) for t in selectors.ErrorType]


def _day_start(day: Any) -> datetime | None:
    return timezone.make_aware(datetime.combine(day, time.min)) if day else None


@login_required
@require_GET
def scorecards(request: HttpRequest) -> HttpResponse:
    """Per reviewer and per vendor, sorted by name: a quality tool, not a leaderboard."""
    _qa(request)
    form = ScorecardFilterForm(request.GET or None)
    f = selectors.QaFilter()
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        f = selectors.QaFilter(
            queue_id=data["queue"].pk if data["queue"] else None,
            policy_id=data["policy"].pk if data["policy"] else None,
            vendor_id=data["vendor"].pk if data["vendor"] else None,
            start=_day_start(data["start"]),
            end=_day_start(data["end"]),
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
        status=_status_of(form),
    )


@login_required
@require_GET
def coaching(request: HttpRequest) -> HttpResponse:
    """A reviewer's own QA outcomes and golden results, with the reasons: never anyone else's."""
    user = _reviewer(request)
    entries, golden_results, stats = selectors.coaching_for(user)
    return render(
        request,
        "qa/coaching.html",
        {"entries": entries, "golden": golden_results, "stats": stats, "error_types": _error_columns()},
    )


# --- ground truth export ---------------------------------------------------------------------------------------

GROUND_TRUTH_COLUMNS = ["item_id", "source", "external_id", "is_violation", "policy", "origin", "recorded_at"]


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value: object) -> object:
    """Client-supplied strings must not run as spreadsheet formulas."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _ground_truth_rows() -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(GROUND_TRUTH_COLUMNS)
    rows = selectors.ground_truth_latest().values_list(
        "item_id", "item__source", "item__external_id", "is_violation", "policy__slug", "origin", "recorded_at"
    )
    for item_id, source, external_id, violation, policy, origin, recorded_at in rows.iterator(chunk_size=2000):
        yield writer.writerow(
            [item_id, _cell(source), _cell(external_id), int(violation), policy or "", origin, recorded_at.isoformat()]
        )


@login_required
@require_GET
def ground_truth_csv(request: HttpRequest) -> StreamingHttpResponse:
    _qa(request)
    response = StreamingHttpResponse(_ground_truth_rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="ground-truth.csv"'
    return response
