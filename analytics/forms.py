"""The filter form every dashboard page and the metrics API read: a period, then optional queue, vendor, policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.http import QueryDict
from django.utils import timezone

from analytics.filters import MetricFilter
from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import Policy, Vendor
from queues.models import Queue

PERIODS = [("7", "Last 7 days"), ("14", "Last 14 days"), ("28", "Last 28 days"), ("90", "Last 90 days")]
DEFAULT_DAYS = 28


class MetricFilterForm(forms.Form):
    period = forms.ChoiceField(choices=[("", "Custom (start to end)"), *PERIODS], required=False)
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    queue = forms.ModelChoiceField(Queue.objects.order_by("name"), required=False, empty_label="All queues")
    vendor = forms.ModelChoiceField(Vendor.objects.order_by("name"), required=False, empty_label="All vendors")
    policy = forms.ModelChoiceField(Policy.objects.order_by("name"), required=False, empty_label="All policies")

    def __init__(self, data: QueryDict | dict[str, Any], **kwargs: Any) -> None:
        data = data.copy()
        if not any(data.get(k) for k in ("period", "start", "end")):
            data["period"] = str(DEFAULT_DAYS)
        super().__init__(data, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        slices = {
            "queue_id": data["queue"].pk if data.get("queue") else None,
            "vendor_id": data["vendor"].pk if data.get("vendor") else None,
            "policy_id": data["policy"].pk if data.get("policy") else None,
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
        return data

    def problems(self) -> list[dict[str, str]]:
        """Errors in the API's shape: one entry per field and problem."""
        return [
            {"field": name if name != "__all__" else "period", "problem": str(message)}
            for name, messages in self.errors.items()
            for message in messages
        ]


def metric_filter_from(params: QueryDict) -> tuple[MetricFilterForm, MetricFilter | None]:
    form = MetricFilterForm(params)
    return form, (form.metric_filter if form.is_valid() else None)
