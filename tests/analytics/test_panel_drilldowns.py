"""One definition per number: every operations and vendor panel's figure equals the count (or the ratio) of the
rows its drill-down page lists, after late-arriving rows, corrections and appeals, with the rollups kept by the
periodic job the embedded mode's in-process beat runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from analytics import panels
from analytics.adapters import from_ops
from analytics.filters import MetricFilter
from analytics.selectors.accounts import account_actions_by_policy, repeat_offenders, strikes_by_day
from analytics.selectors.operations import backlog
from analytics.tasks import rollups_refresh_task
from ops_platform.core.models import Policy, User, Vendor
from queues.accounts.actions import account_action_request, account_action_reverse
from queues.accounts.models import PolicyStrikes, StrikeThreshold
from queues.models import Decision, Queue
from tests.analytics.opsworld import World, items_add, world_create
from tests.analytics.test_accounts_panels import _overturn
from tests.queues.test_accounts import account, decide

pytestmark = pytest.mark.django_db

START = datetime(2025, 3, 3, tzinfo=timezone.get_fixed_timezone(0))
PERIOD = MetricFilter(start=START.date() - timedelta(days=1), end=START.date() + timedelta(days=12))
# The column that holds each drill-down metric's count, where it is not named after the metric.
COUNT_COLUMN = {"backlog": "items", "reviewer_decisions": "decisions"}
# Rates and the drill-down metrics of their numerator and denominator (None: the denominator is the figure's
# own decided items that have a due time).
RATIOS = {
    "sla_attainment": ("within_sla", None),
    "escalation_rate": ("escalated", "decided"),
    "automation_rate": ("auto_actioned", "received"),
    "appeal_rate": ("appeals_received", "decided"),
    "decisions_appealed_rate": ("decisions_appealed", "decided"),
}


@pytest.fixture
def world(vendor_a: Vendor, vendor_b: Vendor, settings: Any) -> World:
    settings.TIME_ZONE = "America/New_York"  # local days differ from UTC days
    w = world_create(vendors=[vendor_a, vendor_b], start=START)
    items_add(w, 160)
    return w


def _late_rows_arrive(w: World) -> None:
    """Items received days ago that arrive only now, and a correction of the first decided item's policy."""
    items_add(w, 40, days=3, offset=timedelta(days=2))
    old = min(w.decided, key=lambda r: r["decided_at"])
    in_force = Decision.objects.get(item_id=old["pk"], is_final=True, superseded_by__isnull=True)
    Decision.objects.create(
        item_id=old["pk"],
        reviewer=w.reviewers[1],
        queue_id=old["queue"],
        policy=next(p for p in w.policies if p.pk != in_force.policy_id),
        is_violation=True,
        decided_at=START + timedelta(days=5),
        supersedes=in_force,
    )


def _with_metric(url: str, metric: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return f"{parts.path}?{urlencode({**query, 'metric': metric})}"


def _listed(http: Client, url: str) -> Any:
    """The queryset of the rows the drill-down page lists (all pages)."""
    response = http.get(url)
    assert response.status_code == 200, url
    return response.context["listed"]


def test_every_panel_figure_equals_the_rows_of_its_drill_down(world: World, ops_manager: User) -> None:
    rollups_refresh_task()
    _late_rows_arrive(world)
    assert world.appeals, "the world holds appeals"
    rollups_refresh_task()  # the periodic job picks the late rows and the correction up
    http = Client()
    http.force_login(ops_manager, backend="django.contrib.auth.backends.ModelBackend")

    checked, problems = 0, []
    for panel in [*panels.panels_for("operations"), *panels.panels_for("vendors")]:
        table = panel.table(PERIOD)
        assert table.drill is not None, panel.name
        for row in table.rows:
            url = table.drill(row)
            assert url is not None
            metric = parse_qs(urlsplit(url).query)["metric"][0]
            column = COUNT_COLUMN.get(metric, metric if metric in row else "volume")
            listed = _listed(http, url)
            if listed.count() != row[column]:
                problems.append(f"{panel.name} {row}: {column} {row[column]} but the drill-down lists {listed.count()}")
            checked += 1
            for rate, (numerator, denominator) in RATIOS.items():
                if row.get(rate) is None:
                    continue
                top = _listed(http, _with_metric(url, numerator)).count()
                if denominator is None:
                    bottom = _listed(http, _with_metric(url, "decided")).filter(due_at__isnull=False).count()
                else:
                    bottom = _listed(http, _with_metric(url, denominator)).count()
                if row[rate] != pytest.approx(top / bottom):
                    problems.append(f"{panel.name} {row}: {rate} {row[rate]} but the drill-downs give {top}/{bottom}")
            if row.get("overturn_rate") is not None:
                overturned = _listed(http, _with_metric(url, "overturned")).count()
                upheld = _listed(http, _with_metric(url, "upheld")).count()
                if row["overturn_rate"] != pytest.approx(overturned / (overturned + upheld)):
                    problems.append(f"{panel.name} {row}: overturn rate {row['overturn_rate']}, {overturned}/{upheld}")
    assert not problems, "\n".join(problems[:20])
    assert checked > 100


def test_the_backlog_drill_down_lists_its_items_at_the_moment_the_panel_counted(
    world: World, ops_manager: User
) -> None:
    http = Client()
    http.force_login(ops_manager, backend="django.contrib.auth.backends.ModelBackend")
    shown = from_ops(backlog(PERIOD, at=START + timedelta(days=3)), PERIOD)
    assert shown.rows
    assert shown.drill is not None
    for row in shown.rows:
        url = shown.drill(row)
        assert url is not None
        assert "cell_at=" in url
        assert _listed(http, url).count() == row["items"]
    refused = http.get(str(shown.drill(shown.rows[0])).replace("cell_at=", "cell_at=yesterday&was="))
    assert refused.status_code == 400
    assert "cell_at" in refused.content.decode()


def test_every_account_panel_figure_equals_the_rows_of_its_drill_down(
    intake_queue: Queue, reviewer: User, qa_lead: User, ops_manager: User, settings: Any
) -> None:
    """The account panels (strikes issued, expired and removed per day, the repeat-offender rate, account actions
    by policy and their appeal overturn rate): every linked cell lists exactly the strikes, accounts or actions it
    counts, and each rate is the ratio of its two drill-downs."""
    settings.TIME_ZONE = "America/New_York"  # local days differ from UTC days
    spam = Policy.objects.create(slug="spam", name="Spam", guidelines="-")
    PolicyStrikes.objects.create(policy=spam, family="spam", weight=1, expires_after=timedelta(days=1))
    intake_queue.policies.add(spam)
    StrikeThreshold.objects.create(family="spam", strikes=1, action="warn")
    now = timezone.now()
    decide(intake_queue, reviewer, spam, author="a", at=now - timedelta(days=3))  # expired two days ago
    decide(intake_queue, reviewer, spam, author="a")
    for n in range(3):
        decide(intake_queue, reviewer, spam, author="c", at=now - timedelta(hours=n))
    _overturn(decide(intake_queue, reviewer, spam, author="b"), intake_queue, qa_lead)
    suspended = account_action_request(account=account("c"), actor=qa_lead, kind="suspend", policy=spam, reason="x")
    account_action_reverse(action=suspended, actor=qa_lead, reason="too harsh")
    f = MetricFilter.last_days(7)
    http = Client()
    http.force_login(ops_manager, backend="django.contrib.auth.backends.ModelBackend")

    checked, problems = 0, []
    for panel in panels.panels_for("accounts"):
        table = panel.table(f)
        for row, html in zip(table.rows, table.html_rows(), strict=True):
            for column, cell in zip(table.shown_columns, html["cells"], strict=True):
                if not column.drill:
                    continue
                assert cell["url"], (panel.name, column.key)
                listed = _listed(http, cell["url"]).count()
                if listed != row[column.key]:
                    problems.append(f"{panel.name} {column.key} {row}: drill-down lists {listed}")
                checked += 1
            for rate, (top, bottom) in {
                "repeat_rate": ("repeat", "accounts"),
                "overturn_rate": ("overturned", "actions"),
            }.items():
                if rate in row and row[rate] != pytest.approx(row[top] / row[bottom]):
                    problems.append(f"{panel.name} {rate} {row}")
    assert not problems, "\n".join(problems)
    assert checked >= 7 * 3 + 2 + 2 * 3  # a week of three strike cells, a family's two, two action rows' three
    days = strikes_by_day(f).rows
    assert [sum(r[k] for r in days) for k in ("issued", "removed")] == [6, 1]
    assert sum(r["expired"] for r in days) >= 1  # a's first; c's may expire before the period's end too
    [family] = repeat_offenders(f).rows
    assert (family["accounts"], family["repeat"]) == (2, 2)  # a and c (b's strike was taken back)
    by_action = {r["action"]: r for r in account_actions_by_policy(f).rows}
    assert (by_action["warn"]["actions"], by_action["warn"]["overturned"]) == (4, 1)  # a twice (expired), b, c
    assert (by_action["suspend"]["actions"], by_action["suspend"]["reversed"]) == (1, 1)


def test_an_account_drill_down_without_its_cell_is_a_400_naming_it(ops_manager: User) -> None:
    http = Client()
    http.force_login(ops_manager, backend="django.contrib.auth.backends.ModelBackend")
    url = reverse("analytics-account-rows")
    for query, field in [
        ({"metric": "struck_accounts"}, "cell_family"),
        ({"metric": "account_actions", "cell_action": "warn", "cell_policy": "x"}, "cell_policy"),
        ({"metric": "nope"}, "metric"),
    ]:
        response = http.get(url, query)
        assert response.status_code == 400
        assert f'data-field="{field}"' in response.content.decode()
