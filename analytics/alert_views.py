"""Alert pages: one alert with its causes, where people acknowledge or resolve it; the rules, where ops managers
and admins create and change them (through ``analytics.alerts``' audited services)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from analytics import alerts, panels
from analytics.forms import AlertResolveForm, AlertRuleForm
from analytics.models import Alert, AlertRule
from analytics.selectors.alerts import alert_reading, alert_rules_listed, alerts_shown
from analytics.tables import display
from analytics.views import viewer_required
from ops_platform.core.errors import ApplicationError
from ops_platform.core.refusals import refusal_response
from ops_platform.core.templatetags.units import slice_words

# Figures a cause may carry (rate causes, vendor throughput causes), in the order the page shows them.
CAUSE_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("window_rate", "Rate in window", "percent"),
    ("baseline_rate", "Rate in baseline", "percent"),
    ("window_volume", "Volume in window", "int"),
    ("window_share", "Share of window", "percent"),
    ("share_of_change", "Share of the change", "percent"),
    ("throughput_per_hour", "Decided per hour now", "float"),
    ("usual_per_hour", "Usually per hour", "float"),
    ("at_risk", "Projected to miss the SLA", "int"),
    ("due_soon", "Due within the window", "int"),
    ("overdue", "Already overdue", "int"),
    ("backlog_then", "Waiting at the window's start", "int"),
    ("backlog_now", "Waiting now", "int"),
    ("arrivals", "Arrived in the window", "int"),
    ("decided", "Decided in the window", "int"),
)


def _context(**extra: Any) -> dict[str, Any]:
    return {"areas": panels.areas_with_panels(), "area": "alerts", **extra}


def _causes(alert: Alert) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
    """The figure columns any cause has, and per cause its slice and those figures as display text."""
    causes = [c for c in alert.causes if isinstance(c, dict)] if isinstance(alert.causes, list) else []
    shown = [f for f in CAUSE_FIGURES if any(c.get(f[0]) is not None for c in causes)]
    rows = [
        {
            "slice": slice_words(c.get("slice") or {}) or str(c.get("value", "")),
            "figures": [display(c.get(key), kind) for key, _, kind in shown],
        }
        for c in causes
    ]
    return shown, rows


@viewer_required
@require_GET
def alert_detail(request: HttpRequest, pk: int) -> HttpResponse:
    alert = get_object_or_404(alerts_shown(), pk=pk)
    columns, causes = _causes(alert)
    return render(
        request,
        "analytics/alert.html",
        _context(
            alert=alert,
            reading=alert_reading(alert.metric, alert.value, alert.baseline, alert.rule.window, alert.rule.baseline),
            peak=alert_reading(alert.metric, alert.peak_value, None, alert.rule.window, alert.rule.baseline),
            cause_columns=columns,
            causes=causes,
            resolve_form=AlertResolveForm(),
            may_edit_rules=alerts.alert_rules_may_edit(request.user),  # type: ignore[arg-type]
        ),
    )


@viewer_required
@require_POST
def alert_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=pk)
    try:
        alerts.alert_acknowledge(alert=alert, actor=request.user)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Acknowledged: the alert stays until its condition clears or someone resolves it.")
    return redirect("analytics-alert", pk=alert.pk)


@viewer_required
@require_POST
def alert_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=pk)
    form = AlertResolveForm(request.POST)
    if not form.is_valid():
        exc = ApplicationError("The reason is at most 500 characters.", field="reason")
        return refusal_response(request, exc, back=reverse("analytics-alert", args=[alert.pk]))
    try:
        alerts.alert_resolve(alert=alert, actor=request.user, reason=form.cleaned_data["reason"])  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Resolved. If the condition still holds, the next evaluation opens a new alert.")
    return redirect("analytics-alert", pk=alert.pk)


@viewer_required
@require_GET
def alert_rules(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "analytics/alert_rules.html",
        _context(rules=alert_rules_listed(), may_edit=alerts.alert_rules_may_edit(request.user)),  # type: ignore[arg-type]
    )


@viewer_required
@require_http_methods(["GET", "POST"])
def alert_rule_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    if not alerts.alert_rules_may_edit(request.user):  # type: ignore[arg-type]
        raise PermissionDenied("Only ops managers and admins change alert rules.")
    rule = get_object_or_404(AlertRule, pk=pk) if pk else None
    form = AlertRuleForm(request.POST or None, initial=AlertRuleForm.initial_of(rule) if rule else None)
    if request.method == "POST" and form.is_valid():
        try:
            saved = alerts.alert_rule_save(
                actor=request.user,  # type: ignore[arg-type]
                rule=rule,
                reason=form.cleaned_data["reason"],
                **form.rule_fields(),
            )
        except ApplicationError as exc:
            form.add_error(_form_field(form, exc.field), exc.message)
        except ValidationError as exc:  # the model's own checks (full_clean)
            by_field = exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.messages}
            for name, problems in by_field.items():
                for message in problems:
                    form.add_error(_form_field(form, name), message)
        else:
            messages.success(request, f"Alert rule “{saved.name}” saved; it applies from the next evaluation.")
            return redirect("analytics-alert-rules")
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "analytics/alert_rule_form.html", _context(form=form, rule=rule), status=status)


def _form_field(form: AlertRuleForm, name: str | None) -> str | None:
    """The form field a rule field's problem belongs to (durations are edited in hours)."""
    for candidate in (name, f"{name}_hours"):
        if candidate in form.fields:
            return candidate
    return None
