"""Sampling plans: the list with a sample-size helper, and the form that creates or changes a plan."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from ops_platform.core.errors import ApplicationError
from qa import selectors, services
from qa.forms import PlanForm, SampleSizeForm
from qa.models import SamplingPlan
from qa.views.common import error_into, qa_user, status_of


@login_required
@require_GET
def plans(request: HttpRequest) -> HttpResponse:
    qa_user(request)
    size_form = SampleSizeForm(request.GET if "margin" in request.GET else None)
    size: dict[str, Any] = {}
    if size_form.is_bound and size_form.is_valid():
        data = size_form.cleaned_data
        try:
            n = services.plan_sample_size(
                expected_error_rate=data["expected_error_rate"],
                margin=data["margin"],
                confidence=data["confidence"],
                population=data.get("population"),
            )
        except ApplicationError as exc:
            error_into(size_form, exc)
        else:
            size["n"] = n
            if data.get("decisions_per_month"):
                size["rate"] = services.plan_rate_for(sample=n, decisions_per_period=data["decisions_per_month"])
    return render(
        request,
        "qa/plans.html",
        {"plans": selectors.plans_listed(), "size_form": size_form, "size": size},
        status=status_of(size_form),
    )


@login_required
@require_http_methods(["GET", "POST"])
def plan_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    user = qa_user(request)
    plan = get_object_or_404(SamplingPlan, pk=pk) if pk else SamplingPlan(created_by=user)
    form = PlanForm(request.POST or None, instance=plan)
    if request.method == "POST" and form.is_valid():
        try:
            saved = services.plan_save(actor=user, plan=form.save(commit=False), reason=form.cleaned_data["reason"])
        except ApplicationError as exc:
            error_into(form, exc)
        else:
            messages.success(request, f"Plan “{saved.name}” saved.")
            return redirect("qa-plans")
    return render(request, "qa/plan_form.html", {"form": form, "plan": plan}, status=status_of(form))
