"""The filter form every dashboard page and the metrics API read: a period, then optional queue, vendor, policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.http import QueryDict
from django.utils import timezone

from analytics.alerts.services import MAX_RULE_SPAN
from analytics.filters import PRESET_DAYS, MetricFilter
from analytics.models import AlertMetric, AlertRule, ClassifierView, TruthSource
from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import Policy, Vendor
from ops_platform.core.params import MAX_INT
from queues.models import Queue

MAX_RULE_HOURS = MAX_RULE_SPAN / timedelta(hours=1)
PERIODS = [(str(days), f"Last {days} days") for days in PRESET_DAYS]
DEFAULT_DAYS = 28


class MetricFilterForm(forms.Form):
    period = forms.ChoiceField(choices=[("", "Custom (start to end)"), *PERIODS], required=False)
    # ISO dates only: what a date input submits and what the metrics API documents.
    start = forms.DateField(required=False, input_formats=["%Y-%m-%d"], widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, input_formats=["%Y-%m-%d"], widget=forms.DateInput(attrs={"type": "date"}))
    queue = forms.ModelChoiceField(Queue.objects.order_by("name"), required=False, empty_label="All queues")
    vendor = forms.ModelChoiceField(Vendor.objects.order_by("name"), required=False, empty_label="All vendors")
    policy = forms.ModelChoiceField(Policy.objects.order_by("name"), required=False, empty_label="All policies")
    # The classifier panels' choices; blank is the default (final decisions, per category).
    truth = forms.ChoiceField(choices=[("", "Truth: final decisions"), *TruthSource.choices[1:]], required=False)
    view = forms.ChoiceField(choices=[("", "Per category"), *ClassifierView.choices[1:]], required=False)

    def __init__(self, data: QueryDict | dict[str, Any], *, classifiers: bool = True, **kwargs: Any) -> None:
        """``classifiers=False``: the classifier choices ride along hidden (pages of other panels)."""
        data = data.copy()
        if not any(data.get(k) for k in ("period", "start", "end")):
            data["period"] = str(DEFAULT_DAYS)
        super().__init__(data, **kwargs)
        for name in ("truth", "view"):
            if not classifiers:
                self.fields[name].widget = forms.HiddenInput()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        slices: dict[str, Any] = {
            "queue_id": data["queue"].pk if data.get("queue") else None,
            "vendor_id": data["vendor"].pk if data.get("vendor") else None,
            "policy_id": data["policy"].pk if data.get("policy") else None,
            "truth": data.get("truth") or TruthSource.DECISION.value,
            "view": data.get("view") or ClassifierView.CATEGORY.value,
        }
        start, end = data.get("start"), data.get("end")
        try:
            if start or end:
                end = end or timezone.localdate()
                start = start or end - timedelta(days=DEFAULT_DAYS - 1)
                self.metric_filter = MetricFilter(start=start, end=end, **slices)
            else:
                self.metric_filter = MetricFilter.last_days(int(data["period"] or DEFAULT_DAYS), **slices)
        except ApplicationError as e:
            self.add_error(e.field if e.field in self.fields else None, e.message)
        except OverflowError:  # an end near year 1: the default start before it is no date
            self.add_error("end" if end and not data.get("start") else "start", "The date is out of range.")
        return data

    def problems(self) -> list[dict[str, str]]:
        """Errors in the API's shape: one entry per field and problem."""
        return [
            {"field": name if name != "__all__" else "period", "problem": str(message)}
            for name, messages in self.errors.items()
            for message in messages
        ]


def metric_filter_from(params: QueryDict, *, classifiers: bool = True) -> tuple[MetricFilterForm, MetricFilter | None]:
    form = MetricFilterForm(params, classifiers=classifiers)
    return form, (form.metric_filter if form.is_valid() else None)


class AlertRuleForm(forms.Form):
    """An alert rule as ops managers edit it: durations in hours, and why the change was made (audit log)."""

    name = forms.CharField(max_length=200)
    metric = forms.ChoiceField(choices=AlertMetric.choices)
    queue = forms.ModelChoiceField(Queue.objects.order_by("name"), required=False, empty_label="Every queue")
    window_hours = forms.FloatField(min_value=0.01, max_value=MAX_RULE_HOURS, label="Window (hours)")
    baseline_hours = forms.FloatField(min_value=0.01, max_value=MAX_RULE_HOURS, label="Baseline (hours)")
    relative_threshold = forms.FloatField(help_text="Relative rise (0.5 = 50%) or share; see the table below.")
    absolute_threshold = forms.FloatField(help_text="A rate floor, or a count of items; see the table below.")
    min_volume = forms.IntegerField(min_value=0, max_value=MAX_INT, label="Least volume to judge")
    is_active = forms.BooleanField(required=False, initial=True, label="Active")
    reason = forms.CharField(max_length=500, required=False, help_text="Why this change (audit log).")

    @classmethod
    def initial_of(cls, rule: AlertRule) -> dict[str, Any]:
        return {
            "name": rule.name,
            "metric": rule.metric,
            "queue": rule.queue,
            "is_active": rule.is_active,
            "window_hours": rule.window / timedelta(hours=1),
            "baseline_hours": rule.baseline / timedelta(hours=1),
            "relative_threshold": rule.relative_threshold,
            "absolute_threshold": rule.absolute_threshold,
            "min_volume": rule.min_volume,
        }

    def rule_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "metric": data["metric"],
            "queue": data["queue"],
            "is_active": data["is_active"],
            "window": timedelta(hours=data["window_hours"]),
            "baseline": timedelta(hours=data["baseline_hours"]),
            "relative_threshold": data["relative_threshold"],
            "absolute_threshold": data["absolute_threshold"],
            "min_volume": data["min_volume"],
        }


class AlertResolveForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False, help_text="What was done (audit log).")
