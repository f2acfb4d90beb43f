"""A sample's pages: the QA home, blind re-review, the comparison after it, and adjudication of a disagreement.

The blind re-review page shows the item as the original reviewer saw it, minus everything that could give the
original decision away (history, metadata, panels, tags); only its holder may open it.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import Policy
from qa import selectors, services
from qa.forms import AdjudicationForm, VerdictForm
from qa.models import ErrorType, QaSample, SampleState
from qa.views.common import error_into, media_prefs, qa_user, status_of, verdict_of


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    user = qa_user(request)
    counts = selectors.queue_counts()
    return render(
        request,
        "qa/home.html",
        {
            "counts": [(SampleState(state).label, state, n) for state, n in counts.items()],
            "held": selectors.sample_held(actor=user),
            "waiting": counts[SampleState.PENDING],
            "disputed": counts[SampleState.ADJUDICATION],
        },
    )


# --- blind re-review ----------------------------------------------------------------------------------


@login_required
@require_POST
def review_next(request: HttpRequest) -> HttpResponse:
    user = qa_user(request)
    try:
        sample = services.sample_claim_next(actor=user)
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
