"""Alert pages: an alert's causes (escaped), acknowledging and resolving it (audited); alert rules created and
changed by ops managers only, through a form that names bad values."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from analytics.models import Alert, AlertMetric, AlertRule, AlertState
from ops_platform.core.models import AuditLog, User
from tests.conftest import PASSWORD

HOSTILE = '<script>alert("x")</script>'


def signed_in(user: User) -> Client:
    client = Client(enforce_csrf_checks=False)
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


@pytest.fixture
def alert(db: None) -> Alert:
    rule = AlertRule.objects.create(name="FP spike", metric=AlertMetric.FALSE_POSITIVE_RATE)
    now = timezone.now()
    causes = [
        {
            "slice": {"surface": HOSTILE, "vendor": "vendor-a"},
            "dimension": "surface+vendor",
            "value": "x",
            "window_rate": 0.4,
            "baseline_rate": 0.02,
            "window_volume": 20,
            "share_of_change": 0.81,
        },
        {
            "slice": {"queue": "general"},
            "dimension": "queue",
            "value": "general",
            "window_rate": 0.05,
            "baseline_rate": 0.02,
            "window_volume": 200,
            "share_of_change": 0.1,
        },
    ]
    return Alert.objects.create(
        rule=rule,
        metric=rule.metric,
        opened_at=now,
        evaluated_at=now,
        window_start=now - timedelta(days=1),
        window_end=now,
        value=0.08,
        baseline=0.02,
        peak_value=0.08,
        volume=320,
        causes=causes,
    )


def test_the_alert_page_lists_its_causes_escaped(ops_manager: User, alert: Alert) -> None:
    html = signed_in(ops_manager).get(f"/analytics/alert/{alert.pk}/").content.decode()
    assert HOSTILE not in html
    assert "&lt;script&gt;" in html
    assert "81.0%" in html  # the first cause explains 81% of the change
    assert html.index("vendor vendor-a") < html.index("queue general")  # slices in words, in the causes' order
    # The alerts panel links each alert to this page.
    panel = signed_in(ops_manager).get("/analytics/alerts/").content.decode()
    assert f'href="/analytics/alert/{alert.pk}/"' in panel


def test_acknowledge_then_resolve_with_a_reason_is_audited(ops_manager: User, alert: Alert) -> None:
    client = signed_in(ops_manager)
    assert client.post(f"/analytics/alert/{alert.pk}/acknowledge").status_code == 302
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by) == (AlertState.ACKNOWLEDGED, ops_manager)
    # Acknowledging twice is refused with the reason on the page, not an error page.
    page = client.post(f"/analytics/alert/{alert.pk}/acknowledge", follow=True).content.decode()
    assert "only an open alert is acknowledged" in page
    client.post(f"/analytics/alert/{alert.pk}/resolve", {"reason": "vendor retrained"})
    alert.refresh_from_db()
    assert (alert.state, alert.resolved_by) == (AlertState.RESOLVED, ops_manager)
    actions = list(
        AuditLog.objects.filter(target_id=str(alert.pk), action__startswith="alert.")
        .order_by("at")
        .values_list("action", "reason")
    )
    assert actions == [("alert.acknowledge", ""), ("alert.resolve", "vendor retrained")]
    assert client.get(f"/analytics/alert/{alert.pk}/acknowledge").status_code == 405  # POST only


def test_people_without_the_dashboards_cannot_see_or_act_on_alerts(reviewer: User, alert: Alert) -> None:
    client = signed_in(reviewer)
    assert client.get(f"/analytics/alert/{alert.pk}/").status_code == 403
    assert client.post(f"/analytics/alert/{alert.pk}/resolve").status_code == 403
    assert client.get("/analytics/alert-rules/").status_code == 403
    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN


def test_ops_managers_create_and_change_rules_and_bad_values_are_named(ops_manager: User) -> None:
    client = signed_in(ops_manager)
    form = {
        "name": "Backlog",
        "metric": "backlog_growth",
        "queue": "",
        "window_hours": "6",
        "baseline_hours": "24",
        "relative_threshold": "0.5",
        "absolute_threshold": "100",
        "min_volume": "50",
        "is_active": "on",
        "reason": "night shift cover",
    }
    assert client.post("/analytics/alert-rules/new", form).status_code == 302
    rule = AlertRule.objects.get(name="Backlog")
    assert (rule.window, rule.baseline, rule.absolute_threshold) == (timedelta(hours=6), timedelta(hours=24), 100)
    page = client.post(f"/analytics/alert-rules/{rule.pk}/", {**form, "window_hours": "0"})
    assert page.status_code == 400
    assert "Ensure this value is greater than or equal to 0.01" in page.content.decode()
    client.post(f"/analytics/alert-rules/{rule.pk}/", {**form, "relative_threshold": "0.8", "reason": "too noisy"})
    rule.refresh_from_db()
    assert rule.relative_threshold == 0.8
    audit = AuditLog.objects.filter(target_id=str(rule.pk), action__startswith="alert_rule.").order_by("at")
    assert [(a.action, a.reason) for a in audit] == [
        ("alert_rule.create", "night shift cover"),
        ("alert_rule.update", "too noisy"),
    ]
    assert audit.last().before["relative_threshold"] == 0.5  # type: ignore[union-attr,index]
    listing = client.get("/analytics/alert-rules/").content.decode()
    assert f'href="/analytics/alert-rules/{rule.pk}/"' in listing


def test_rule_editing_is_for_ops_managers_and_admins_only(policy_staff: User, admin_user: User) -> None:
    assert signed_in(policy_staff).get("/analytics/alert-rules/new").status_code == 403
    assert signed_in(admin_user).get("/analytics/alert-rules/new").status_code == 200
