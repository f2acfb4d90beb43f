"""The strike settings page (``accounts:strike-settings``) for policy staff and its three forms: a policy's strike
terms, a label's weight, a threshold (new or changed). The view checks the page's door and the form's shape; the
settings services check the role again and the rules."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import DecisionLabel, Policy, User
from ops_platform.core.permissions import permitted
from queues.accounts import selectors, settings_services
from queues.accounts.models import ActionKind, StrikeThreshold

DAYS_MAX = 3650


class PolicyTermsForm(forms.Form):
    policy = forms.ModelChoiceField(queryset=Policy.objects.all(), to_field_name="slug")
    family = forms.SlugField(max_length=100)
    weight = forms.IntegerField(min_value=0, max_value=settings_services.MAX_WEIGHT)
    expires_days = forms.IntegerField(min_value=1, max_value=DAYS_MAX, label="Strikes count for (days)")
    suspension_needs_approval = forms.BooleanField(required=False)
    reason = forms.CharField(max_length=500, required=False)


class LabelWeightForm(forms.Form):
    label = forms.ModelChoiceField(queryset=DecisionLabel.objects.all())
    weight = forms.IntegerField(
        min_value=0, max_value=settings_services.MAX_WEIGHT, required=False, help_text="Empty: its policy's weight."
    )
    reason = forms.CharField(max_length=500, required=False)


class ThresholdForm(forms.Form):
    threshold = forms.ModelChoiceField(queryset=StrikeThreshold.objects.all(), required=False)
    family = forms.SlugField(max_length=100, required=False)
    strikes = forms.IntegerField(min_value=1, max_value=32767)
    action = forms.ChoiceField(choices=ActionKind.choices)
    custom_action = forms.SlugField(max_length=100, required=False)
    duration_days = forms.IntegerField(min_value=1, max_value=DAYS_MAX, required=False)
    is_active = forms.BooleanField(required=False)
    reason = forms.CharField(max_length=500, required=False)

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("threshold") is None and not data.get("family") and "family" not in self.errors:
            self.add_error("family", "Name the family of a new threshold.")
        return data


def _page(
    request: HttpRequest, *, status: int = 200, errors: list[tuple[str, str]] | None = None, form: str = ""
) -> HttpResponse:
    return render(
        request,
        "accounts/strike_settings.html",
        {
            "settings": selectors.strike_settings(),
            "kinds": ActionKind.choices,
            "errors": errors or [],
            "failed_form": form,
            "posted": request.POST if errors else {},
        },
        status=status,
    )


def _refused(request: HttpRequest, exc: ApplicationError, form: str) -> HttpResponse:
    return _page(request, status=exc.status_code, errors=[(exc.field or "", exc.message)], form=form)


def _invalid(request: HttpRequest, bound: forms.Form, form: str) -> HttpResponse:
    errors = [(field if field != "__all__" else "", str(msg)) for field, msgs in bound.errors.items() for msg in msgs]
    return _page(request, status=400, errors=errors, form=form)


def _door(request: HttpRequest) -> User:
    return permitted(request, settings_services.SETTINGS_PERM)


def _days(value: int | None) -> timedelta | None:
    return timedelta(days=value) if value else None


@login_required
@require_GET
def strike_settings(request: HttpRequest) -> HttpResponse:
    _door(request)
    return _page(request)


@login_required
@require_POST
def policy_terms_set(request: HttpRequest) -> HttpResponse:
    user = _door(request)
    bound = PolicyTermsForm(request.POST)
    if not bound.is_valid():
        return _invalid(request, bound, "policy")
    data = bound.cleaned_data
    try:
        settings_services.policy_strikes_set(
            actor=user,
            policy=data["policy"],
            family=data["family"],
            weight=data["weight"],
            expires_after=timedelta(days=data["expires_days"]),
            suspension_needs_approval=data["suspension_needs_approval"],
            reason=data["reason"],
        )
    except ApplicationError as exc:
        return _refused(request, exc, "policy")
    messages.success(request, f"Strike terms of {data['policy'].slug} saved.")
    return redirect("accounts:strike-settings")


@login_required
@require_POST
def label_weight_set(request: HttpRequest) -> HttpResponse:
    user = _door(request)
    bound = LabelWeightForm(request.POST)
    if not bound.is_valid():
        return _invalid(request, bound, "label")
    data = bound.cleaned_data
    try:
        settings_services.label_strikes_set(
            actor=user, label=data["label"], weight=data["weight"], reason=data["reason"]
        )
    except ApplicationError as exc:
        return _refused(request, exc, "label")
    messages.success(request, f"Weight of {data['label']} saved.")
    return redirect("accounts:strike-settings")


@login_required
@require_POST
def threshold_save(request: HttpRequest) -> HttpResponse:
    user = _door(request)
    bound = ThresholdForm(request.POST)
    if not bound.is_valid():
        return _invalid(request, bound, "threshold")
    data = bound.cleaned_data
    try:
        if data["threshold"] is None:
            threshold = settings_services.threshold_create(
                actor=user,
                family=data["family"],
                strikes=data["strikes"],
                action=data["action"],
                custom_action=data["custom_action"],
                duration=_days(data["duration_days"]),
                reason=data["reason"],
            )
        else:
            threshold = settings_services.threshold_update(
                actor=user,
                threshold=data["threshold"],
                strikes=data["strikes"],
                action=data["action"],
                custom_action=data["custom_action"],
                duration=_days(data["duration_days"]),
                is_active=data["is_active"],
                reason=data["reason"],
            )
    except ApplicationError as exc:
        return _refused(request, exc, "threshold")
    messages.success(request, f"Threshold {threshold} saved{'' if threshold.is_active else ' (inactive)'}.")
    return redirect("accounts:strike-settings")
