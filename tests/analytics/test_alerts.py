"""Alerts: injected spikes are found with the slice that caused them, alerts are kept one per rule and scope,
SLA risk and backlog growth name their queues and vendors, and opened alerts go out by webhook."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import pytest
from django.utils import timezone

from analytics.alerts import (
    DIMENSIONS,
    alert_acknowledge,
    alert_resolve,
    alert_rule_save,
    alerts_evaluate,
    alerts_open,
    alerts_recent,
    qa_observations,
    rate_change_causes,
    slice_contributions,
)
from analytics.alerts.evaluation import _projected_breaches
from analytics.filters import MetricFilter
from analytics.models import Alert, AlertMetric, AlertRule, AlertState
from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import ApiScope, AuditLog, Role, Team, User, Vendor, WebhookEvent, WebhookEventType
from ops_platform.core.services import api_client_create, user_create
from qa.models import ErrorType, QaSample, SampleReason, SampleState
from queues.models import AppealOutcome, Decision, ItemKind, ItemState, Queue, ReviewItem
from routing.models import Backend, ClassifierScore, RoutingDecision
from tests.conftest import PASSWORD

SURFACES = ("posts", "comments", "profiles")
_ids = itertools.count()


@dataclass
class World:
    now: datetime
    queue: Queue
    reviewers: dict[str, User]  # vendor slug -> a reviewer of that vendor


@pytest.fixture
def world(vendor_a: Vendor, vendor_b: Vendor) -> World:
    reviewers = {}
    for vendor in (vendor_a, vendor_b):
        team = Team.objects.create(slug=f"{vendor.slug}-team", name=vendor.name, vendor=vendor)
        reviewers[vendor.slug] = user_create(
            actor="test", username=f"r-{vendor.slug}", password=PASSWORD, roles=[Role.REVIEWER], team=team
        )
    now = timezone.now().replace(microsecond=0)
    return World(now=now, queue=Queue.objects.create(slug="general", name="General"), reviewers=reviewers)


def _items(n: int, *, at: datetime, queue: Queue | None, **fields: object) -> list[ReviewItem]:
    return ReviewItem.objects.bulk_create(
        ReviewItem(source="t", external_id=f"a-{next(_ids)}", received_at=at, queue=queue, **fields) for _ in range(n)
    )


def qa_closed(w: World, *, vendor: str, surface: str, at: datetime, n: int, fps: int, p: float = 0.2) -> None:
    """``n`` decisions of one vendor on one surface, decided an hour before ``at`` and sampled, their QA
    samples closed at ``at``: the first ``fps`` found false positives, the rest right."""
    decided_at = at - timedelta(hours=1)
    items = _items(n, at=decided_at, queue=w.queue, surface=surface, language="en", state=ItemState.DECIDED)
    reviewer = w.reviewers[vendor]
    vendor_id = reviewer.reviewer_profile.team.vendor_id if reviewer.reviewer_profile.team else None
    decisions = Decision.objects.bulk_create(
        Decision(item=i, reviewer=reviewer, queue=w.queue, is_violation=True, decided_at=decided_at) for i in items
    )
    RoutingDecision.objects.bulk_create(
        RoutingDecision(item=i, matched="default", action="route", destination="queue:general", at=decided_at)
        for i in items
    )
    ClassifierScore.objects.bulk_create(
        ClassifierScore(item=i, backend=Backend.LOCAL, model_version="v1", created_at=decided_at) for i in items
    )
    QaSample.objects.bulk_create(
        QaSample(
            item=d.item,
            decision=d,
            reason=SampleReason.RANDOM,
            inclusion_probability=p,
            sampled_at=decided_at,
            original_is_violation=True,
            original_reviewer=reviewer,
            original_vendor_id=vendor_id,
            original_queue=w.queue,
            original_decided_at=decided_at,
            state=SampleState.CLOSED,
            closed_at=at,
            agreed=k >= fps,
            error_type=ErrorType.FALSE_POSITIVE if k < fps else ErrorType.NONE,
        )
        for k, d in enumerate(decisions)
    )


def qa_week(w: World, *, days: int = 8) -> None:
    """Every vendor and surface, 10 samples a day, one false positive in 50 (the baseline rate, 2 %)."""
    for day in range(days):
        at = w.now - timedelta(hours=12) - timedelta(days=day)
        for vendor, surface in itertools.product(w.reviewers, SURFACES):
            # Two surfaces of one vendor carry a false positive on alternating days: 6 in 300 a week.
            fp = 1 if (SURFACES.index(surface) + day + (vendor == "vendor-b")) % 5 == 0 else 0
            qa_closed(w, vendor=vendor, surface=surface, at=at, n=10, fps=fp)


def fp_rule(**fields: object) -> AlertRule:
    return AlertRule.objects.create(
        name="False positives up",
        metric=AlertMetric.FALSE_POSITIVE_RATE,
        relative_threshold=0.5,
        absolute_threshold=0.05,
        min_volume=30,
        **fields,
    )


# --- false-positive rate --------------------------------------------------------------------------------


def test_injected_false_positive_spike_is_found_with_its_slice(world: World) -> None:
    qa_week(world)
    # The last day: vendor A's decisions on comments go wrong, 8 of 20 re-reviews find a false positive.
    qa_closed(world, vendor="vendor-a", surface="comments", at=world.now - timedelta(hours=3), n=20, fps=8)
    rule = fp_rule()

    run = alerts_evaluate(now=world.now)

    assert len(run.opened) == 1
    alert = Alert.objects.get()
    assert (alert.rule, alert.state, alert.metric) == (rule, AlertState.OPEN, AlertMetric.FALSE_POSITIVE_RATE)
    assert alert.value > 0.1
    assert alert.baseline is not None
    assert alert.baseline < 0.03
    top = alert.causes[0]
    assert top["slice"] == {"surface": "comments", "vendor": "vendor-a"}
    assert top["dimension"] == "surface+vendor"
    assert top["window_rate"] > 0.2
    assert top["baseline_rate"] < 0.1
    assert top["share_of_change"] > 0.8
    # The slice's own rise, not a shift of volume towards it, is what moved the rate.
    assert top["rate_effect"] > top["mix_effect"]


def test_re_evaluating_updates_the_open_alert_instead_of_duplicating(world: World) -> None:
    qa_week(world)
    qa_closed(world, vendor="vendor-a", surface="comments", at=world.now - timedelta(hours=3), n=20, fps=8)
    fp_rule()
    first = alerts_evaluate(now=world.now)
    qa_closed(world, vendor="vendor-a", surface="comments", at=world.now + timedelta(minutes=10), n=10, fps=6)

    second = alerts_evaluate(now=world.now + timedelta(minutes=15))

    assert second.opened == []
    assert second.updated == first.opened
    alert = Alert.objects.get()
    assert alert.opened_at == world.now
    assert alert.evaluated_at == world.now + timedelta(minutes=15)
    assert alert.peak_value == alert.value > 0.15


def test_alert_resolves_when_the_rate_is_back_to_normal(world: World) -> None:
    qa_week(world)
    qa_closed(world, vendor="vendor-a", surface="comments", at=world.now - timedelta(hours=3), n=20, fps=8)
    fp_rule()
    alerts_evaluate(now=world.now)
    # A QA lead's adjudication clears most of them after all.
    QaSample.objects.filter(error_type=ErrorType.FALSE_POSITIVE, closed_at=world.now - timedelta(hours=3)).update(
        error_type=ErrorType.NONE
    )

    run = alerts_evaluate(now=world.now + timedelta(minutes=5))

    assert len(run.resolved) == 1
    assert Alert.objects.get().state == AlertState.RESOLVED
    assert not alerts_open().exists()


def test_switching_a_rule_off_or_moving_its_scope_resolves_its_alert(world: World) -> None:
    qa_week(world)
    qa_closed(world, vendor="vendor-a", surface="comments", at=world.now - timedelta(hours=3), n=20, fps=8)
    rule = fp_rule()
    alerts_evaluate(now=world.now)
    rule.queue = Queue.objects.create(slug="elsewhere", name="Elsewhere")
    rule.save()

    run = alerts_evaluate(now=world.now + timedelta(minutes=5))

    assert len(run.resolved) == 1
    assert Alert.objects.get().state == AlertState.RESOLVED
    rule.queue = None
    rule.save()
    alerts_evaluate(now=world.now + timedelta(minutes=10))
    rule.is_active = False
    rule.save()
    alerts_evaluate(now=world.now + timedelta(minutes=15))
    assert not alerts_open().exists()
    assert Alert.objects.count() == 2


def test_a_quiet_week_opens_nothing(world: World) -> None:
    qa_week(world)
    fp_rule()
    AlertRule.objects.create(name="Overturns", metric=AlertMetric.OVERTURN_RATE, min_volume=5)

    run = alerts_evaluate(now=world.now)

    assert run.opened == []
    assert not Alert.objects.exists()


def test_too_little_volume_is_not_judged(world: World) -> None:
    qa_week(world, days=1)
    qa_closed(world, vendor="vendor-a", surface="comments", at=world.now - timedelta(hours=3), n=20, fps=8)
    fp_rule()  # a baseline of 0 samples is below the 30 the rule wants

    assert alerts_evaluate(now=world.now).opened == []


def test_false_positive_rate_is_weighted_by_inclusion_probability(world: World) -> None:
    at = world.now - timedelta(hours=1)
    qa_closed(world, vendor="vendor-a", surface="posts", at=at, n=10, fps=5, p=1.0)
    qa_closed(world, vendor="vendor-b", surface="posts", at=at, n=10, fps=0, p=0.1)

    frame = qa_observations(world.now - timedelta(days=1), world.now)

    # 5 false positives standing for 5 decisions, 15 right ones standing for 5 + 100: 5 / 110.
    rate = (frame["weight"] * frame["hit"]).sum() / frame["weight"].sum()
    assert rate == pytest.approx(5 / 110)
    assert set(frame["rule"]) == {"default"}
    assert set(frame["model_version"]) == {"local:v1"}
    assert set(frame["vendor"]) == {"vendor-a", "vendor-b"}


def test_contributions_add_up_to_the_change_in_every_dimension() -> None:
    window = pd.DataFrame(
        {"weight": [1.0, 2, 1, 5, 1], "hit": [1.0, 0, 1, 0, 1]} | {d: ["all"] * 5 for d in DIMENSIONS}
    ).assign(surface=["x", "y", "x", "z", "y"])
    baseline = pd.DataFrame(
        {"weight": [1.0, 1, 3, 1], "hit": [0.0, 1, 0, 0]} | {d: ["all"] * 4 for d in DIMENSIONS}
    ).assign(surface=["x", "y", "y", "w"])
    change = 3 / 10 - 1 / 6
    frame = slice_contributions(window, baseline, "surface")
    assert frame["contribution"].sum() == pytest.approx(change)
    # By the definition, share times rate in each period: y is 3/10 of the window at 1/3, 4/6 of the baseline at 1/4.
    assert frame.loc["y", "contribution"] == pytest.approx(3 / 10 * 1 / 3 - 4 / 6 * 1 / 4)
    assert frame.loc["w", "contribution"] == 0
    assert frame.loc["z", "contribution"] == 0

    causes = rate_change_causes(window, baseline, top=50)
    x = next(c for c in causes if c["slice"] == {"surface": "x"})
    assert x["contribution"] == pytest.approx(2 / 10, abs=1e-6)
    assert x["excess_contribution"] == pytest.approx(2 / 10 - 2 / 10 * change, abs=1e-6)
    assert x["rate_effect"] + x["mix_effect"] == pytest.approx(x["contribution"], abs=1e-5)
    assert x["share_of_change"] == pytest.approx(0.2 / change, abs=1e-5)


def test_a_slice_that_is_everything_explains_nothing() -> None:
    window = pd.DataFrame({"weight": [1.0] * 4, "hit": [1.0, 1, 0, 0]} | {d: ["all"] * 4 for d in DIMENSIONS})
    window["surface"] = ["comments", "comments", "posts", "posts"]
    baseline = window.assign(hit=[0.0, 0, 0, 0])

    causes = rate_change_causes(window, baseline)

    assert [c["slice"] for c in causes] == [{"surface": "comments"}]


# --- overturn rate ---------------------------------------------------------------------------------------


def appeals(w: World, *, at: datetime, n: int, overturned: int, language: str = "en", vendor: str = "vendor-b") -> None:
    decided_at = at - timedelta(days=1)
    originals = _items(n, at=decided_at, queue=w.queue, surface="posts", language=language, state=ItemState.DECIDED)
    reviewer = w.reviewers[vendor]
    Decision.objects.bulk_create(
        Decision(item=i, reviewer=reviewer, queue=w.queue, is_violation=True, decided_at=decided_at) for i in originals
    )
    appeal_items = ReviewItem.objects.bulk_create(
        ReviewItem(
            source="t",
            external_id=f"ap-{next(_ids)}",
            kind=ItemKind.APPEAL,
            appeal_of=o,
            queue=w.queue,
            received_at=at - timedelta(hours=2),
            state=ItemState.DECIDED,
        )
        for o in originals
    )
    Decision.objects.bulk_create(
        Decision(
            item=a,
            reviewer=w.reviewers["vendor-a"],
            queue=w.queue,
            is_violation=k >= overturned,
            decided_at=at,
            appeal_outcome=AppealOutcome.OVERTURNED if k < overturned else AppealOutcome.UPHELD,
        )
        for k, a in enumerate(appeal_items)
    )


def test_overturn_spike_from_appeals_names_the_language(world: World) -> None:
    for day in range(1, 8):
        appeals(world, at=world.now - timedelta(days=day, hours=1), n=10, overturned=1)
        appeals(world, at=world.now - timedelta(days=day, hours=2), n=4, overturned=0, language="de")
    appeals(world, at=world.now - timedelta(hours=2), n=10, overturned=1)
    appeals(world, at=world.now - timedelta(hours=3), n=12, overturned=9, language="de")
    AlertRule.objects.create(
        name="Overturns up",
        metric=AlertMetric.OVERTURN_RATE,
        relative_threshold=1.0,
        absolute_threshold=0.1,
        min_volume=20,
    )

    alerts_evaluate(now=world.now)

    alert = Alert.objects.get()
    assert alert.value == pytest.approx(10 / 22)
    assert alert.baseline == pytest.approx(7 / 98)
    assert alert.causes[0]["slice"] == {"language": "de"}
    assert alert.causes[0]["window_rate"] == pytest.approx(9 / 12, abs=1e-6)
    # The contested decisions were vendor B's: the appeal reviewer's vendor is not a slice.
    vendors = {c["slice"].get("vendor") for c in alert.causes} - {None}
    assert vendors <= {"vendor-b"}


# --- SLA at risk and backlog growth ------------------------------------------------------------------------


def test_projected_breaches_work_the_queue_in_due_order() -> None:
    now = timezone.now()
    due = pd.Series([now + timedelta(minutes=m) for m in (-1, 10, 20, 90)])
    # One item every 15 minutes: done at +15, +30, +45, +60; the first three miss their due time.
    assert _projected_breaches(due, now=now, per_second=1 / 900) == 3
    assert _projected_breaches(due, now=now, per_second=0) == 4


def test_sla_at_risk_names_the_queue_and_the_vendor_that_slowed(world: World) -> None:
    fast = Queue.objects.create(slug="fast", name="Fast", sla=timedelta(hours=1))
    calm = world.queue
    now = world.now
    for m in range(30):
        _items(1, at=now, queue=fast, state=ItemState.QUEUED, queued_at=now, due_at=now + timedelta(minutes=10 + m))
    _items(5, at=now, queue=calm, state=ItemState.QUEUED, queued_at=now, due_at=now + timedelta(minutes=50))
    done = _items(260, at=now - timedelta(days=2), queue=None, state=ItemState.DECIDED)

    def decide(items: list[ReviewItem], queue: Queue, vendor: str, start: datetime, span: timedelta) -> None:
        step = span / len(items)
        Decision.objects.bulk_create(
            Decision(
                item=i, reviewer=world.reviewers[vendor], queue=queue, is_violation=False, decided_at=start + k * step
            )
            for k, i in enumerate(items)
        )

    decide(done[:6], fast, "vendor-a", now - timedelta(hours=3), timedelta(hours=3))  # 2 an hour now
    decide(done[6:206], fast, "vendor-b", now - timedelta(days=7, hours=3), timedelta(days=7))  # usually 1.2 an hour
    decide(done[206:], calm, "vendor-a", now - timedelta(hours=3), timedelta(hours=3))  # 18 an hour
    AlertRule.objects.create(
        name="SLA at risk",
        metric=AlertMetric.SLA_AT_RISK,
        window=timedelta(hours=1),
        baseline=timedelta(hours=3),
        absolute_threshold=5,
        relative_threshold=0.0,
        min_volume=5,
    )

    alerts_evaluate(now=now)

    alert = Alert.objects.get()
    queue_causes = [c for c in alert.causes if c["dimension"] == "queue"]
    vendor_causes = [c for c in alert.causes if c["dimension"] == "vendor"]
    assert [c["value"] for c in queue_causes] == ["fast"]
    # Two an hour finish the first item at +30 minutes, after every one of the 30 is due; "calm" keeps up.
    assert alert.value == queue_causes[0]["at_risk"] == 30
    assert queue_causes[0]["throughput_per_hour"] == 2
    assert alert.volume == 35
    assert [c["value"] for c in vendor_causes] == ["vendor-b"]
    assert vendor_causes[0]["throughput_per_hour"] == 0


def test_backlog_growth_names_the_growing_queue(world: World) -> None:
    now = world.now
    growing = Queue.objects.create(slug="growing", name="Growing")
    steady = world.queue
    _items(10, at=now - timedelta(hours=10), queue=growing, state=ItemState.QUEUED, queued_at=now - timedelta(hours=10))
    _items(40, at=now - timedelta(hours=2), queue=growing, state=ItemState.QUEUED, queued_at=now - timedelta(hours=2))
    _items(10, at=now - timedelta(hours=10), queue=steady, state=ItemState.QUEUED, queued_at=now - timedelta(hours=10))
    _items(
        10,
        at=now - timedelta(hours=10),
        queue=steady,
        state=ItemState.DECIDED,
        queued_at=now - timedelta(hours=10),
        decided_at=now - timedelta(hours=3),
    )
    _items(10, at=now - timedelta(hours=1), queue=steady, state=ItemState.QUEUED, queued_at=now - timedelta(hours=1))
    AlertRule.objects.create(
        name="Backlog growing",
        metric=AlertMetric.BACKLOG_GROWTH,
        window=timedelta(hours=6),
        relative_threshold=0.5,
        absolute_threshold=20,
        min_volume=10,
    )

    alerts_evaluate(now=now)

    alert = Alert.objects.get()
    assert (alert.value, alert.baseline) == (70, 30)
    top = alert.causes[0]
    assert top["slice"] == {"queue": "growing"}
    assert (top["backlog_then"], top["backlog_now"], top["arrivals"]) == (10, 50, 40)
    assert top["share_of_change"] == 1.0


def test_a_queue_scoped_rule_sees_only_its_queue(world: World) -> None:
    now = world.now
    other = Queue.objects.create(slug="other", name="Other")
    _items(40, at=now - timedelta(hours=2), queue=other, state=ItemState.QUEUED, queued_at=now - timedelta(hours=2))
    AlertRule.objects.create(
        name="General backlog",
        metric=AlertMetric.BACKLOG_GROWTH,
        window=timedelta(hours=6),
        queue=world.queue,
        min_volume=1,
    )

    assert alerts_evaluate(now=now).opened == []


# --- delivery ----------------------------------------------------------------------------------------------


def test_opening_sends_a_signed_event_to_alerts_read_clients_only(world: World) -> None:
    subscribed, _ = api_client_create(
        actor="test", name="Ops bot", source="ops-bot", scopes=[ApiScope.ALERTS_READ], callback_url="https://bot.test/h"
    )
    other, _ = api_client_create(
        actor="test", name="App", source="app", scopes=[ApiScope.ITEMS_READ], callback_url="https://app.test/h"
    )
    retired, _ = api_client_create(
        actor="test", name="Old", source="old", scopes=[ApiScope.ALERTS_READ], callback_url="https://old.test/h"
    )
    retired.is_active = False
    retired.save()
    qa_week(world)
    qa_closed(world, vendor="vendor-a", surface="comments", at=world.now - timedelta(hours=3), n=20, fps=8)
    rule = fp_rule()

    alerts_evaluate(now=world.now)
    alerts_evaluate(now=world.now + timedelta(minutes=5))  # an update sends nothing

    event = WebhookEvent.objects.get()
    assert event.client == subscribed
    assert event.event_type == WebhookEventType.ALERT_OPENED
    assert subscribed.webhook_secret  # delivery signs with it
    payload = event.payload
    assert payload["rule"] == {"id": rule.pk, "name": rule.name}
    assert payload["metric"] == "false_positive_rate"
    assert payload["causes"][0]["slice"] == {"surface": "comments", "vendor": "vendor-a"}
    assert len(payload["causes"]) <= 3
    assert "text" not in str(payload)
    assert not WebhookEvent.objects.filter(client__in=[other, retired]).exists()


# --- people ------------------------------------------------------------------------------------------------


def test_ops_managers_and_admins_edit_rules_with_an_audit_trail(
    ops_manager: User, admin_user: User, reviewer: User
) -> None:
    rule = alert_rule_save(actor=ops_manager, name="Overturns", metric=AlertMetric.OVERTURN_RATE, min_volume=20)
    alert_rule_save(actor=admin_user, rule=rule, relative_threshold=1.0, reason="too noisy")

    rule.refresh_from_db()
    assert rule.relative_threshold == 1.0
    assert rule.created_by == ops_manager
    entries = list(AuditLog.objects.filter(action__startswith="alert_rule.").order_by("id"))
    assert [e.action for e in entries] == ["alert_rule.create", "alert_rule.update"]
    assert entries[1].before["relative_threshold"] == 0.5
    assert entries[1].after["relative_threshold"] == 1.0
    with pytest.raises(NotPermitted):
        alert_rule_save(actor=reviewer, rule=rule, is_active=False)


def test_acknowledged_alert_stays_listed_until_resolved(world: World, ops_manager: User) -> None:
    qa_week(world)
    qa_closed(world, vendor="vendor-a", surface="comments", at=world.now - timedelta(hours=3), n=20, fps=8)
    fp_rule()
    alerts_evaluate(now=world.now)
    alert = Alert.objects.get()

    alert_acknowledge(alert=alert, actor=ops_manager)
    assert list(alerts_open()) == [alert]
    alerts_evaluate(now=world.now + timedelta(minutes=5))
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED
    assert alert.acknowledged_by == ops_manager

    alert_resolve(alert=alert, actor=ops_manager, reason="vendor retrained")
    assert not alerts_open().exists()
    today = MetricFilter.last_days(1, today=timezone.localdate(world.now))
    assert list(alerts_recent(today, state=AlertState.RESOLVED)) == [alert]
    assert not alerts_recent(MetricFilter.last_days(1, today=today.start - timedelta(days=3))).exists()


@pytest.mark.parametrize("span", ["window", "baseline"])
@pytest.mark.parametrize("length", [timedelta(0), timedelta(days=401), timedelta(days=10**6)])
def test_a_rule_refuses_a_window_or_baseline_out_of_bounds(ops_manager: User, span: str, length: timedelta) -> None:
    with pytest.raises(ApplicationError) as refused:
        alert_rule_save(actor=ops_manager, name="Backlog", metric=AlertMetric.BACKLOG_GROWTH, **{span: length})

    assert refused.value.field == span
    assert not AlertRule.objects.exists()
