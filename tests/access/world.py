"""A small world with one real object behind every URL argument, for the access tests.

Two vendors: vendor A's reviewer is the ``vendor_reviewer`` persona (vic); vendor B's reviewer is vera, who
holds an item in vendor B's queue. Alice (``reviewer``, in-house) holds an item in the in-house queue; quinn
(``qa_lead``) holds one QA sample and disagreed with alice on another, now waiting for adjudication.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from axes.models import AccessAttempt, AccessFailureLog
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule
from PIL import Image

from analytics.models import Alert, AlertMetric, AlertRule
from analytics.panels import panels_all
from ops_platform.core.models import (
    ApiClient,
    Role,
    Skill,
    SsoIdentity,
    Team,
    User,
    Vendor,
    WebhookDelivery,
    WebhookEvent,
    WebhookEventType,
)
from ops_platform.core.services import api_client_create, user_create
from qa.models import CalibrationItem, CalibrationSession, QaSample, SamplingPlan
from qa.services import plan_save, qa_review_submit, sample_claim_next, session_create
from queues.accounts.models import AccountAction, Strike
from queues.accounts.services import account_for
from queues.models import Account, ExposureCategory, ItemState, Queue, ReviewItem
from queues.services import item_claim_next
from routing.models import (
    Backend,
    Backtest,
    CallOutcome,
    ClassifierCall,
    ClassifierScore,
    DeadLetter,
    IncidentKind,
    LabeledExample,
    ModelVersion,
    RoutingDecision,
    Rule,
    RuleAction,
    RuleIncident,
    RuleSet,
    RuleSetKind,
    ScoringIncident,
)
from routing.rules.lifecycle import RuleData, rule_save, ruleset_draft_create
from routing.scoring.media.pdq import pdq_hash
from routing.scoring.media.services import banks_import, image_record
from routing.scoring.media.store import media_token
from tests.conftest import PASSWORD
from tests.qa.factories import decided, policy_with_action, sample_of
from tests.queues.factories import item_queued
from tests.support.image_server import picture


@dataclass
class World:
    people: dict[str, User | None]
    vendor_b_reviewer: User
    general: Queue
    queue_a: Queue
    queue_b: Queue
    held: ReviewItem  # claimed by alice, in the in-house queue
    held_b: ReviewItem  # claimed by vera, in vendor B's queue
    waiting_b: ReviewItem  # waiting in vendor B's queue
    sample_held: QaSample  # claimed by quinn for blind re-review
    sample_disputed: QaSample  # quinn disagreed with alice: waiting for adjudication
    plan: SamplingPlan
    session: CalibrationSession
    session_item: CalibrationItem
    rule_set: RuleSet
    rule: Rule
    rule_incident: RuleIncident
    backtest: Backtest
    model: ModelVersion
    dead_letter: DeadLetter
    alert: Alert
    alert_rule: AlertRule
    panel_area: str
    panel_name: str
    media_token: str  # a signed link to the held item's stored image
    account: Account
    account_action: AccountAction
    strike: Strike

    def kwargs(self) -> dict[str, dict[str, Any]]:
        """URL name -> the arguments that point at a real object of this world."""
        return {
            "api-metric": {"name": self.panel_name},
            "api-item-detail": {"pk": self.held.pk},
            # Any id: both answer before looking (no API key: 401; a session's empty body: 415).
            "api-erasure-detail": {"pk": 1},
            "api-legal-hold-clear": {"pk": 1},
            "analytics-alert": {"pk": self.alert.pk},
            "analytics-item": {"pk": self.held.pk},
            "investigation-item": {"pk": self.held.pk},
            "analytics-alert-acknowledge": {"pk": self.alert.pk},
            "analytics-alert-resolve": {"pk": self.alert.pk},
            "analytics-alert-rule": {"pk": self.alert_rule.pk},
            "analytics-area": {"area": self.panel_area},
            "analytics-panel": {"area": self.panel_area, "name": self.panel_name},
            "scoring-model-card": {"pk": self.model.pk},
            "scoring-dead-letter-redrive": {"pk": self.dead_letter.pk},
            "rules-rollback": {"kind": RuleSetKind.INTAKE},
            "rules-backtest": {"pk": self.backtest.pk},
            "rules-detail": {"pk": self.rule_set.pk},
            "rules-incident-resolve": {"pk": self.rule_incident.pk},
            "rules-meta": {"pk": self.rule_set.pk},
            "rules-rule-add": {"pk": self.rule_set.pk},
            "rules-rule-edit": {"pk": self.rule_set.pk, "rule_pk": self.rule.pk},
            "rules-rule-delete": {"pk": self.rule_set.pk, "rule_pk": self.rule.pk},
            "rules-rule-move": {"pk": self.rule_set.pk, "rule_pk": self.rule.pk},
            "rules-diff": {"pk": self.rule_set.pk},
            "rules-backtest-new": {"pk": self.rule_set.pk},
            "rules-shadow": {"pk": self.rule_set.pk},
            "rules-transition": {"pk": self.rule_set.pk, "step": "submit"},
            "review-next": {"slug": self.general.slug},
            "review-item": {"pk": self.held.pk},
            "review-decide": {"pk": self.held.pk},
            "review-release": {"pk": self.held.pk},
            "review-appeal": {"pk": self.held.pk},
            "review-escalate": {"pk": self.held.pk},
            "review-lease": {"pk": self.held.pk},
            "review-reservation-release": {"pk": self.held.pk},
            "review-bulk": {"slug": self.general.slug},
            "accounts:detail": {"pk": self.account.pk},
            "accounts:act": {"pk": self.account.pk},
            "accounts:label": {"pk": self.account.pk},
            "accounts:action": {"pk": self.account.pk, "action_pk": self.account_action.pk},
            "accounts:strike-remove": {"pk": self.account.pk, "strike_pk": self.strike.pk},
            "qa-review": {"pk": self.sample_held.pk},
            "qa-review-skip": {"pk": self.sample_held.pk},
            "qa-compare": {"pk": self.sample_disputed.pk},
            "qa-adjudicate": {"pk": self.sample_disputed.pk},
            "qa-sample-golden": {"pk": self.sample_disputed.pk},
            "qa-plan-edit": {"pk": self.plan.pk},
            "qa-calibration-session": {"pk": self.session.pk},
            "qa-calibration-rate": {"pk": self.session.pk, "item_pk": self.session_item.pk},
            "qa-calibration-close": {"pk": self.session.pk},
            "qa-calibration-rate-next": {"pk": self.session.pk},
            "api-queue-claim-next": {"slug": self.general.slug},
            "api-review-item-decision": {"pk": self.held.pk},
            "api-review-item-release": {"pk": self.held.pk},
            "api-qa-sample-re-review": {"pk": self.sample_held.pk},
            "api-qa-sample-skip": {"pk": self.sample_held.pk},
            "api-qa-sample-adjudicate": {"pk": self.sample_disputed.pk},
            "api-calibration-rate": {"pk": self.session.pk},
            "api-calibration-rate-batch": {"pk": self.session.pk},
            "api-calibration-close": {"pk": self.session.pk},
            "api-calibration-report": {"pk": self.session.pk},
            "media-copy": {"token": self.media_token},
            "media-bank-active": {"slug": "partner-bank"},
            "media-bank-delete": {"slug": "partner-bank"},
        }


def _admin_objects(*, client: ApiClient, item: ReviewItem, rule_set: RuleSet, general: Queue, now: Any) -> None:
    """The models no other part of the world makes, so the admin's change, delete and history pages of every
    registered model answer on a real object."""
    every_minute = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(name="leases", task="queues.tasks.leases_expire_task", interval=every_minute)
    ClockedSchedule.objects.create(clocked_time=now)
    CrontabSchedule.objects.create(minute="30", hour="3")
    SolarSchedule.objects.create(event="sunrise", latitude=52.5, longitude=13.4)
    mallory = {"username": "mallory", "ip_address": "203.0.113.9", "user_agent": "curl"}
    AccessAttempt.objects.create(**mallory, failures_since_start=2)
    AccessFailureLog.objects.create(**mallory)
    event = WebhookEvent.objects.create(client=client, event_type=WebhookEventType.DECISION_FINAL, payload={"item": 1})
    WebhookDelivery.objects.create(event=event, attempt=1, status_code=503, duration_ms=12)
    ExposureCategory.objects.create(slug="graphic-violence", name="Graphic violence", daily_cap=40)
    call = ClassifierCall.objects.create(backend=Backend.LOCAL, outcome=CallOutcome.OK, items=1)
    ClassifierScore.objects.create(item=item, backend=Backend.LOCAL, model_version="1", scores={"hate": 0.1}, call=call)
    ScoringIncident.objects.create(
        kind=IncidentKind.CIRCUIT_OPEN, backend=Backend.OPENAI_MODERATION, day=now.date(), message="5 failures in a row"
    )
    LabeledExample.objects.create(dataset="public-set", external_ref="row-1", text="labeled text", labels={"hate": 0})
    RoutingDecision.objects.create(
        item=item,
        rule_set=rule_set,
        matched="default",
        action=RuleAction.ROUTE,
        destination=f"queue:{general.slug}",
        queue=general,
    )


def _media_objects(item: ReviewItem) -> str:
    """A hash bank, its entry, a stored image of the held item that matches it; a signed link to the image."""
    drawn = picture(2)
    value, _ = pdq_hash(Image.open(io.BytesIO(drawn)))
    banks_import(text=f"{value},partner-bank,known\n", actor="test")
    asset = image_record(item=item, position=0, host="images.example.test", data=drawn, content_type="image/png")
    assert asset.matches.exists()
    return media_token(asset.pk, "copy")


def world_create(
    *,
    reviewer: User,
    vendor_reviewer: User,
    qa_lead: User,
    policy_staff: User,
    ops_manager: User,
    admin_user: User,
    in_house_team: Team,
) -> World:
    vendor_b = Vendor.objects.create(slug="vendor-b", name="Vendor B", cost_per_decision="0.30")
    vera = user_create(
        actor="test",
        username="vera",
        password=PASSWORD,
        roles=[Role.REVIEWER],
        team=Team.objects.create(slug="vendor-b-team", name="B team", vendor=vendor_b),
    )
    vendor_a = vendor_reviewer.reviewer_profile.team.vendor  # type: ignore[union-attr]
    policy = policy_with_action("hate", "Hate speech", severity=3)
    general = Queue.objects.create(slug="general", name="General", is_default_intake=True)
    queue_a = Queue.objects.create(slug="vendor-a-work", name="Vendor A work")
    queue_b = Queue.objects.create(slug="vendor-b-work", name="Vendor B work")
    for queue in (general, queue_a, queue_b):
        queue.policies.add(policy)
    queue_a.allowed_vendors.add(vendor_a)
    queue_b.allowed_vendors.add(vendor_b)

    # QA: quinn disagrees with one of alice's decisions and holds a second one for blind re-review.
    first = decided(
        general, reviewer, text="alice's first decided post", policy=policy, action=policy.enforcement_actions.first()
    )
    disputed = sample_of(first)
    assert sample_claim_next(actor=qa_lead) == disputed
    qa_review_submit(sample=disputed, actor=qa_lead, is_violation=False, policy=None, action=None, rationale="no")
    second = decided(general, reviewer, text="alice's second decided post")
    held_sample = sample_of(second)
    assert sample_claim_next(actor=qa_lead) == held_sample
    plan = plan_save(actor=qa_lead, plan=SamplingPlan(name="everything", rate=0.1))
    session = session_create(
        actor=qa_lead, name="Week 48", item_ids=[first.item_id, second.item_id], participants=[reviewer, qa_lead]
    )

    # The items people hold now: alice in-house, vera at vendor B; one more waits in vendor B's queue.
    item_queued(general, text="in-house item alice holds")
    held = item_claim_next(queue=general, actor=reviewer)
    item_queued(queue_b, text="vendor B item vera holds")
    held_b = item_claim_next(queue=queue_b, actor=vera)
    waiting_b = item_queued(queue_b, text="vendor B item waiting")
    # Escalated by name to the admin: leads see it among the reserved items and may give it back to everyone.
    item_queued(
        general,
        text="escalated to the admin",
        reserved_for=admin_user,
        reserved_until=timezone.now() + timedelta(hours=4),
    )
    assert held is not None
    assert held_b is not None

    rule_set = ruleset_draft_create(actor=policy_staff, kind=RuleSetKind.INTAKE, default_queue=general)
    rule = rule_save(
        actor=policy_staff,
        rule_set=rule_set,
        data=RuleData(name="all", condition='kind == "content"', action=RuleAction.ROUTE, queue_id=general.pk),
    )
    now = timezone.now()
    backtest = Backtest.objects.create(
        rule_set=rule_set, period_start=now - timedelta(days=1), period_end=now, requested_by=policy_staff
    )
    model = ModelVersion.objects.create(
        version=1, artifact=b"", artifact_sha256="0" * 64, algorithm="test", trained_by="test"
    )
    rule_incident = RuleIncident.objects.create(rule_set=rule_set, rule=rule, error="ZeroDivisionError", items=3)
    dead_letter = DeadLetter.objects.create(task="routing.tasks.items_score_task", args=[[1]], error_type="X")
    alert_rule = AlertRule.objects.create(name="FP spike", metric=AlertMetric.FALSE_POSITIVE_RATE)
    alert = Alert.objects.create(
        rule=alert_rule,
        metric=alert_rule.metric,
        opened_at=now,
        evaluated_at=now,
        window_start=now - timedelta(days=1),
        window_end=now,
        value=0.08,
        baseline=0.02,
        peak_value=0.08,
        volume=320,
        causes=[],
    )
    # For the admin's object pages: one object of every model the admin shows.
    client, _ = api_client_create(actor=admin_user, name="Integrator", source="integrator", scopes=["items:write"])
    Skill.objects.create(slug="arabic", name="Arabic")
    _admin_objects(client=client, item=held, rule_set=rule_set, general=general, now=now)
    SsoIdentity.objects.create(user=vera, issuer="https://idp.example.test", subject="vera-at-the-provider")
    media_token = _media_objects(held)
    panel = panels_all()[0]
    # An account with a decided item in the in-house queue (so vendor reviewers may not see it), a strike and a
    # suspension waiting for approval.
    item_queued(general, text="decided post of acct-world", author_ref="acct-world", state=ItemState.DECIDED)
    account = account_for(source="claims", ref="acct-world")
    strike = Strike.objects.create(
        account=account,
        decision=first,
        policy=policy,
        family="hate",
        weight=1,
        issued_at=now,
        expires_at=now + timedelta(days=30),
    )
    account_action = AccountAction.objects.create(
        account=account,
        kind="suspend",
        policy=policy,
        origin="reviewer",
        reason="spree",
        state="pending_approval",
        requested_by=qa_lead,
        requested_at=now,
    )
    return World(
        people={
            "anonymous": None,
            "reviewer": reviewer,
            "vendor reviewer": vendor_reviewer,
            "QA lead": qa_lead,
            "policy staff": policy_staff,
            "ops manager": ops_manager,
            "admin": admin_user,
        },
        vendor_b_reviewer=vera,
        general=general,
        queue_a=queue_a,
        queue_b=queue_b,
        held=held,
        held_b=held_b,
        waiting_b=waiting_b,
        sample_held=held_sample,
        sample_disputed=disputed,
        plan=plan,
        session=session,
        session_item=session.session_items.order_by("position").first(),  # type: ignore[arg-type]
        rule_set=rule_set,
        rule=rule,
        rule_incident=rule_incident,
        backtest=backtest,
        model=model,
        dead_letter=dead_letter,
        alert=alert,
        alert_rule=alert_rule,
        panel_area=panel.area,
        panel_name=panel.name,
        media_token=media_token,
        account=account,
        account_action=account_action,
        strike=strike,
    )
