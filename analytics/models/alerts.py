"""Alert rules ops managers set, and the alerts their periodic evaluation opens, updates and resolves."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

from queues.models import Queue

__all__ = ["Alert", "AlertMetric", "AlertRule", "AlertState"]


class AlertMetric(models.TextChoices):
    FALSE_POSITIVE_RATE = "false_positive_rate", "False-positive rate (QA)"
    OVERTURN_RATE = "overturn_rate", "Appeal overturn rate"
    SLA_AT_RISK = "sla_at_risk", "SLA at risk"
    BACKLOG_GROWTH = "backlog_growth", "Backlog growth"


class AlertRule(models.Model):
    """When to open an alert. What the numbers mean depends on the metric:

    ============================  =====================================  =================================
    metric                        ``window`` / ``baseline``              fires when
    ============================  =====================================  =================================
    false_positive_rate,          the last ``window`` vs the             value ≥ baseline·(1 + relative)
    overturn_rate                 ``baseline`` before it                 and value ≥ absolute (a rate floor)
    sla_at_risk                   items due within ``window`` (or        projected breaches ≥ absolute
                                  overdue); throughput measured over     and breaches / due-soon ≥ relative
                                  the last ``baseline``
    backlog_growth                backlog now vs ``window`` ago          growth / then ≥ relative and
                                                                         growth ≥ absolute (items)
    ============================  =====================================  =================================

    ``min_volume`` is the least evidence worth judging: QA samples or appeals closed in the window (rates),
    items due soon (SLA), items in the backlog now (backlog). Below it the rule stays quiet.
    """

    name = models.CharField(max_length=200)
    metric = models.CharField(max_length=30, choices=AlertMetric.choices)
    queue = models.ForeignKey(
        Queue,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Empty: every queue.",
    )
    window = models.DurationField(default=timedelta(days=1))
    baseline = models.DurationField(default=timedelta(days=7))
    relative_threshold = models.FloatField(default=0.5, help_text="Relative rise (0.5 = 50 %) or share; see above.")
    absolute_threshold = models.FloatField(default=0.0, help_text="A rate floor, or a count of items; see above.")
    min_volume = models.PositiveIntegerField(default=30)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(window__gt=timedelta(0)), name="alert_rule_window_positive"),
            models.CheckConstraint(condition=Q(baseline__gt=timedelta(0)), name="alert_rule_baseline_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def scope(self) -> str:
        """What one alert of this rule covers; one open alert per rule and scope."""
        return f"queue:{self.queue_id}" if self.queue_id else "all"


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class Alert(models.Model):
    """One episode of a rule's condition holding: opened once, updated by every evaluation while it holds,
    resolved when it no longer does (or by a person). Holds figures and slice labels, never content."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    scope = models.CharField(max_length=50, default="all")
    metric = models.CharField(max_length=30, choices=AlertMetric.choices)
    opened_at = models.DateTimeField()
    evaluated_at = models.DateTimeField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    value = models.FloatField()
    baseline = models.FloatField(null=True, blank=True)
    # The worst value seen while open: an alert that eased off still shows how bad it got.
    peak_value = models.FloatField()
    volume = models.PositiveIntegerField(default=0)
    causes = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=20, choices=AlertState.choices, default=AlertState.OPEN)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "scope"], condition=~Q(state="resolved"), name="one_unresolved_alert_per_rule_scope"
            )
        ]
        indexes = [models.Index(fields=["state", "-opened_at"], name="alert_state_opened_idx")]

    def __str__(self) -> str:
        return f"{self.rule} ({self.state})"
