"""Golden items: the list with their accuracy, the forms that write one and set a queue's golden rate, and the
button on an adjudicated sample that makes its item golden."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from ops_platform.core.errors import ApplicationError
from qa import selectors, services
from qa.forms import GoldenForm, GoldenRateForm
from qa.models import QaSample
from qa.views.common import error_into, qa_user, status_of


@login_required
@require_http_methods(["GET", "POST"])
def golden_items(request: HttpRequest) -> HttpResponse:
    user = qa_user(request)
    which = request.POST.get("form")
    form = GoldenForm(request.POST if which == "golden" else None)
    rate_form = GoldenRateForm(request.POST if which == "rate" else None)
    if which == "golden" and form.is_valid():
        data = form.cleaned_data
        try:
            made = services.golden_create(
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
            error_into(form, exc)
        else:
            messages.success(request, f"Golden item {made.pk} created.")
            return redirect("qa-golden")
    if which == "rate" and rate_form.is_valid():
        try:
            setting = services.golden_rate_set(
                actor=user, queue=rate_form.cleaned_data["queue"], rate=rate_form.cleaned_data["rate"]
            )
        except ApplicationError as exc:
            error_into(rate_form, exc)
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
            "rates": selectors.golden_rates(),
        },
        status=max(status_of(form), status_of(rate_form)),
    )


@login_required
@require_POST
def golden_from_sample(request: HttpRequest, pk: int) -> HttpResponse:
    user = qa_user(request)
    sample = get_object_or_404(QaSample, pk=pk)
    try:
        made = services.golden_from_sample(actor=user, sample=sample)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("qa-adjudicate", pk=sample.pk)
    messages.success(request, f"Golden item {made.pk} created for {made.queue.name}.")
    return redirect("qa-golden")
