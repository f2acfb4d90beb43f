"""Alerts as their pages show them: one alert with its rule and the people who acted on it, and the rules with
how many alerts each raised."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q, QuerySet

from analytics.alerts import OPEN_STATES
from analytics.models import Alert, AlertMetric, AlertRule
from ops_platform.core.templatetags.units import duration_words


def alerts_shown() -> QuerySet[Alert]:
    return Alert.objects.select_related("rule", "rule__queue", "acknowledged_by", "resolved_by")


def alert_rules_listed() -> QuerySet[AlertRule]:
    """Every rule with its unresolved and total alerts."""
    return AlertRule.objects.select_related("queue").annotate(
        unresolved=Count("alerts", filter=Q(alerts__state__in=OPEN_STATES)), total=Count("alerts")
    )


def alert_reading(metric: str, value: float, baseline: float | None, window: timedelta, lookback: timedelta) -> str:
    """What an alert's value and baseline mean, in words with their units (issue 19: "716.0000 (baseline 2.9940)"
    said nothing). ``window`` and ``lookback``: the rule's window and baseline durations."""
    w, b = duration_words(window), duration_words(lookback)
    if metric in (AlertMetric.FALSE_POSITIVE_RATE, AlertMetric.OVERTURN_RATE):
        what = (
            "of QA-sampled decisions were false positives"
            if metric == AlertMetric.FALSE_POSITIVE_RATE
            else ("of appeals decided overturned the decision")
        )
        then = f", against {baseline * 100:.1f}% in the {b} before" if baseline is not None else ""
        return f"{value * 100:.1f}% {what} in the last {w}{then}."
    if metric == AlertMetric.SLA_AT_RISK:
        pace = (
            f"; at the pace of the last {b} the queues decide about {baseline:,.0f} items in that time"
            if baseline is not None
            else ""
        )
        return f"{value:,.0f} items will miss their SLA (overdue already, or due within {w} and beyond reach){pace}."
    if metric == AlertMetric.BACKLOG_GROWTH:
        then = f", against {baseline:,.0f} items {w} ago" if baseline is not None else ""
        return f"{value:,.0f} items waiting now{then}."
    return f"{value:,.4g}" + (f" (baseline {baseline:,.4g})" if baseline is not None else "")
