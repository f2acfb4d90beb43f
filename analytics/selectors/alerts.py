"""Alerts as their pages show them: one alert with its rule and the people who acted on it, and the rules with
how many alerts each raised."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from analytics.alerts import OPEN_STATES
from analytics.models import Alert, AlertRule


def alerts_shown() -> QuerySet[Alert]:
    return Alert.objects.select_related("rule", "rule__queue", "acknowledged_by", "resolved_by")


def alert_rules_listed() -> QuerySet[AlertRule]:
    """Every rule with its unresolved and total alerts."""
    return AlertRule.objects.select_related("queue").annotate(
        unresolved=Count("alerts", filter=Q(alerts__state__in=OPEN_STATES)), total=Count("alerts")
    )
