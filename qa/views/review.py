"""A sample's pages: the QA home, blind re-review, the comparison after it, and adjudication of a disagreement.

The blind re-review page shows the item as the original reviewer saw it, minus everything that could give the
original decision away (history, metadata, panels, tags); only its holder may open it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import Policy
from qa import selectors, services
from qa.forms import AdjudicationForm, SampleScopeForm, SkipForm, VerdictForm
from qa.models import ErrorType, QaSample, SampleState
from qa.views.common import error_into, media_prefs, qa_user, status_of, verdict_of

# The re-review queue's scope is kept in the person's session, so "next" after a re-review or a skip stays in it.
SCOPE_KEY = "qa_sample_scope"


def _scope(request: HttpRequest, data: Any = None) -> tuple[SampleScopeForm, selectors.SampleScope]:
    """The scope from ``data`` (the filter's fields) when given, else the one kept in the session."""
    if data is None:
        data = request.session.get(SCOPE_KEY, {})
    form = SampleScopeForm(data)
    return form, selectors.SampleScope(**form.scope())


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    user = qa_user(request)
    counts = selectors.queue_counts()
    form, scope = _scope(request, request.GET if request.GET else None)
    return render(
        request,
        "qa/home.html",
        {
            "counts": [(SampleState(state).label, state, n) for state, n in counts.items()],
            "held": selectors.sample_held(actor=user),
            "waiting": counts[SampleState.PENDING],
            "in_scope": selectors.samples_waiting_in_scope(scope),
            "scoped": bool(scope.as_query()),
            "scope_form": form,
            "disputed": counts[SampleState.ADJUDICATION],
        },
        status=status_of(form),
    )


# --- blind re-review ----------------------------------------------------------------------------------


def _claim_next(request: HttpRequest, user: Any, scope: selectors.SampleScope) -> HttpResponse:
    try:
        sample = services.sample_claim_next(actor=user, scope=scope)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("qa-home")
    if sample is None:
        where = " in this scope" if scope.as_query() else ""
        messages.info(request, f"No sample is waiting for re-review{where}.")
        return redirect(reverse("qa-home") + (f"?{urlencode(scope.as_query())}" if scope.as_query() else ""))
    return redirect("qa-review", pk=sample.pk)


@login_required
@require_POST
def review_next(request: HttpRequest) -> HttpResponse:
    """Claim the next sample in the scope the form sends (kept for the next claims)."""
    user = qa_user(request)
    form, scope = _scope(request, request.POST)
    if not form.is_valid():
        messages.error(request, "That scope names a plan, vendor, queue or policy that does not exist.")
        return redirect("qa-home")
    request.session[SCOPE_KEY] = scope.as_query()
    return _claim_next(request, user, scope)


@login_required
@require_POST
def review_skip(request: HttpRequest, pk: int) -> HttpResponse:
    """Give the held sample back unreviewed with a reason; back to the QA home, whose "start" keeps the scope."""
    user = qa_user(request)
    sample = selectors.sample_in_review(pk=pk, actor=user)
    if sample is None:
        raise Http404("No sample of yours has that id.")
    form = SkipForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why you skip it.")
        return redirect("qa-review", pk=pk)
    try:
        services.sample_skip(sample=sample, actor=user, reason=form.cleaned_data["reason"])
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("qa-home")
    messages.info(
        request, f"Sample {pk} skipped: others get it first; it comes back to you only when nothing else waits."
    )
    scope = _scope(request)[1]
    return redirect(reverse("qa-home") + (f"?{urlencode(scope.as_query())}" if scope.as_query() else ""))


@login_required
@require_http_methods(["GET", "POST"])
def review_page(request: HttpRequest, pk: int) -> HttpResponse:
    """Blind: the item, its reports and the guidelines, never the original decision or its maker."""
    user = qa_user(request)
    sample = selectors.sample_in_review(pk=pk, actor=user)
    if sample is None:
        raise Http404("No sample of yours has that id.")
    queue = sample.original_queue or sample.item.queue
    policies = selectors.policies_for(queue)
    form = VerdictForm(request.POST or None, policies=policies)
    if request.method == "POST" and form.is_valid():
        try:
            services.qa_review_submit(
                sample=sample, actor=user, rationale=form.cleaned_data["rationale"], **verdict_of(form)
            )
        except ApplicationError as exc:
            error_into(form, exc)
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
            **media_prefs(user),
        },
        status=status_of(form),
    )


@login_required
@require_GET
def compare(request: HttpRequest, pk: int) -> HttpResponse:
    """After the blind re-review: both decisions side by side. Never before, or the re-review is not blind."""
    user = qa_user(request)
    sample = get_object_or_404(selectors.samples_rereviewed(), pk=pk)
    return render(
        request,
        "qa/compare.html",
        {
            "sample": sample,
            "item": sample.item,
            "decision": selectors.original_decision(sample),
            "qa": sample.review,
            "adjudication": getattr(sample, "adjudication", None),
            "mine": sample.review.reviewer_id == user.pk,
            **media_prefs(user),
        },
    )


# --- adjudication -----------------------------------------------------------------------------------------


@login_required
@require_GET
def adjudication_list(request: HttpRequest) -> HttpResponse:
    user = qa_user(request)
    return render(request, "qa/adjudication_list.html", {"samples": selectors.adjudication_waiting(), "me": user})


@login_required
@require_http_methods(["GET", "POST"])
def adjudicate(request: HttpRequest, pk: int) -> HttpResponse:
    user = qa_user(request)
    sample = get_object_or_404(selectors.samples_adjudicable(), pk=pk)
    queue = sample.original_queue or sample.item.queue
    policies = selectors.policies_for(queue)
    # Prefilled for the likeliest error (the re-review was right); the page's script follows the chosen label.
    qa_verdict = services.Verdict.of(sample.review.is_violation, sample.review.policy_id, sample.review.action_id)
    form = AdjudicationForm(
        request.POST or None, policies=policies, initial={"severity": services.default_severity(sample, qa_verdict)}
    )
    if request.method == "POST" and sample.state == SampleState.ADJUDICATION and form.is_valid():
        try:
            done = services.adjudicate(
                sample=sample,
                actor=user,
                rationale=form.cleaned_data["rationale"],
                severity=form.cleaned_data.get("severity"),
                **verdict_of(form),
            )
        except ApplicationError as exc:
            error_into(form, exc)
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
            "decision": selectors.original_decision(sample),
            "qa": sample.review,
            "adjudication": getattr(sample, "adjudication", None),
            "party": party,
            "severities": _default_severities(sample, policies),
            "is_golden_source": selectors.golden_made(sample),
            **media_prefs(user),
        },
        status=status_of(form),
    )


def _default_severities(sample: QaSample, policies: list[Policy]) -> dict[str, float]:
    """The prefilled severity weight for each possible final label (the script picks the one that applies)."""
    weights = {"none": services.default_severity(sample, services.Verdict.of(False, None, None))}
    for p in policies:
        weights[str(p.pk)] = services.default_severity(sample, services.Verdict.of(True, p, None))
    return weights
