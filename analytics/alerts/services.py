"""Alerts delivered (payload, webhooks, the lists the app shows) and people's changes to alerts and rules, audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from analytics.filters import MetricFilter
from analytics.models import Alert, AlertRule, AlertState
from ops_platform.core.errors import ApplicationError, Conflict, NotPermitted
from ops_platform.core.models import ApiClient, ApiScope, Role, User, WebhookEventType
from ops_platform.core.services import audit_record
from ops_platform.core.webhooks import webhook_emit

WEBHOOK_CAUSES = 3
OPEN_STATES = (AlertState.OPEN, AlertState.ACKNOWLEDGED)


# --- delivery -----------------------------------------------------------------------------------------------


def alert_payload(alert: Alert) -> dict[str, Any]:
    """What leaves the platform: figures and slice labels, never content."""
    rule = alert.rule
    return {
        "alert_id": alert.pk,
        "rule": {"id": rule.pk, "name": rule.name},
        "metric": alert.metric,
        "scope": alert.scope,
        "queue": rule.queue.slug if rule.queue else None,
        "value": alert.value,
        "baseline": alert.baseline,
        "volume": alert.volume,
        "window": {"start": alert.window_start.isoformat(), "end": alert.window_end.isoformat()},
        "opened_at": alert.opened_at.isoformat(),
        "causes": alert.causes[:WEBHOOK_CAUSES],
    }


def alert_webhooks_emit(alert: Alert) -> int:
    """One signed ``alert.opened`` event to every active client subscribed with ``alerts:read``."""
    payload = alert_payload(alert)
    # Scopes are a JSON list; clients are few, and a Python filter works on SQLite (the demo) too.
    clients = [c for c in ApiClient.objects.filter(is_active=True) if c.has_scope(ApiScope.ALERTS_READ)]
    return sum(
        webhook_emit(client=c, event_type=WebhookEventType.ALERT_OPENED, payload=payload) is not None for c in clients
    )


def alerts_open() -> QuerySet[Alert]:
    """Alerts still needing attention (open or acknowledged), newest first."""
    return Alert.objects.filter(state__in=OPEN_STATES).select_related("rule", "rule__queue", "acknowledged_by")


def alerts_recent(f: MetricFilter, *, state: str | None = None) -> QuerySet[Alert]:
    """Alerts opened in the filter's period, newest first; a queue filter keeps that queue's rules. Vendor and
    policy filters do not narrow alerts (a vendor appears among the causes, not the scope)."""
    alerts = Alert.objects.filter(opened_at__gte=f.start_at, opened_at__lt=f.end_at)
    if f.queue_id is not None:
        alerts = alerts.filter(rule__queue_id=f.queue_id)
    if state:
        alerts = alerts.filter(state=state)
    return alerts.select_related("rule", "rule__queue", "acknowledged_by", "resolved_by")


# --- people's changes (audited) -----------------------------------------------------------------------------


def alert_rules_may_edit(user: User) -> bool:
    """Admins (``manage_platform``), or ops managers: ``view_analytics`` held through the ops-manager role (an
    admin-granted ``view_analytics`` alone lets someone see alerts, not change what raises them)."""
    return user.has_perm("core.manage_platform") or (
        user.has_perm("core.view_analytics") and user.has_role(Role.OPS_MANAGER)
    )


RULE_FIELDS = (
    "name",
    "metric",
    "queue",
    "window",
    "baseline",
    "relative_threshold",
    "absolute_threshold",
    "min_volume",
    "is_active",
)


# Longer than any window or baseline worth comparing (backlog snapshots are kept 400 days).
MAX_RULE_SPAN = timedelta(days=400)


def _rule_snapshot(rule: AlertRule) -> dict[str, Any]:
    snapshot: dict[str, Any] = {name: getattr(rule, name) for name in RULE_FIELDS if name != "queue"}
    snapshot["queue"] = rule.queue_id
    snapshot["window"] = str(rule.window)
    snapshot["baseline"] = str(rule.baseline)
    return snapshot


@transaction.atomic
def alert_rule_save(*, actor: User, rule: AlertRule | None = None, reason: str = "", **fields: Any) -> AlertRule:
    """Create a rule (``rule`` None) or change one; audited with before and after."""
    if not alert_rules_may_edit(actor):
        raise NotPermitted("Only ops managers and admins change alert rules.")
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise ValueError(f"not alert rule fields: {sorted(unknown)}")
    for span in ("window", "baseline"):
        if span in fields and not timedelta(0) < fields[span] <= MAX_RULE_SPAN:
            raise ApplicationError(f"The {span} is longer than 0 and at most {MAX_RULE_SPAN.days} days.", field=span)
    before = None if rule is None else _rule_snapshot(rule)
    rule = rule or AlertRule(created_by=actor)
    for name, value in fields.items():
        setattr(rule, name, value)
    rule.full_clean(exclude=["created_by"])
    rule.save()
    audit_record(
        actor=actor,
        action="alert_rule.create" if before is None else "alert_rule.update",
        target=rule,
        before=before,
        after=_rule_snapshot(rule),
        reason=reason,
    )
    return rule


@transaction.atomic
def alert_acknowledge(*, alert: Alert, actor: User) -> Alert:
    """Someone is on it: the alert stays until the condition clears, but no longer counts as unseen."""
    if not actor.has_perm("core.view_analytics"):
        raise NotPermitted("Only people who see the dashboards acknowledge alerts.")
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.state != AlertState.OPEN:
        raise Conflict(f"Alert {alert.pk} is {alert.state}; only an open alert is acknowledged.")
    alert.state, alert.acknowledged_by, alert.acknowledged_at = AlertState.ACKNOWLEDGED, actor, timezone.now()
    alert.save(update_fields=["state", "acknowledged_by", "acknowledged_at"])
    audit_record(actor=actor, action="alert.acknowledge", target=alert, after={"state": alert.state})
    return alert


@transaction.atomic
def alert_resolve(*, alert: Alert, actor: User, reason: str = "") -> Alert:
    """Close an alert by hand; if the condition still holds, the next evaluation opens a new one."""
    if not actor.has_perm("core.view_analytics"):
        raise NotPermitted("Only people who see the dashboards resolve alerts.")
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.state == AlertState.RESOLVED:
        raise Conflict(f"Alert {alert.pk} is already resolved.")
    before = {"state": alert.state}
    alert.state, alert.resolved_by, alert.resolved_at = AlertState.RESOLVED, actor, timezone.now()
    alert.save(update_fields=["state", "resolved_by", "resolved_at"])
    audit_record(
        actor=actor, action="alert.resolve", target=alert, before=before, after={"state": alert.state}, reason=reason
    )
    return alert
