"""Account actions for a time (docs/accounts.md, "Actions for a time"): a restriction or suspension with a duration
is lifted by the periodic job once it ends, counted from when it took effect, audited, in the account's history
and told to the service by an ``account.action`` webhook (``state: "expired"``); only restrictions and suspensions
take one, and a bad duration is a 400 naming the field."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import AuditLog, Policy, Role, User, WebhookEvent
from ops_platform.core.services import user_create
from queues import tasks
from queues.accounts.actions import (
    account_action_approve,
    account_action_request,
    account_action_reverse,
    account_actions_bulk,
    account_actions_expire,
)
from queues.accounts.models import AccountAction, AccountEvent, ActionState, PolicyStrikes
from queues.accounts.services import accounts_ensure
from queues.models import Queue
from tests.conftest import PASSWORD
from tests.core.test_webhooks import client_for
from tests.queues.test_accounts import SOURCE, account

pytestmark = pytest.mark.django_db
WEEK = timedelta(days=7)


@pytest.fixture
def hate(intake_queue: Queue) -> Policy:
    policy = Policy.objects.create(slug="hate", name="Hate", guidelines="No attacks on protected groups.")
    PolicyStrikes.objects.create(policy=policy, family="abuse", weight=1, expires_after=timedelta(days=30))
    intake_queue.policies.add(policy)
    return policy


@pytest.fixture
def author() -> None:
    accounts_ensure(rows=[{"source": SOURCE, "author_ref": "u-1"}])
    client_for("http://127.0.0.1:9/hook", source=SOURCE)


def _suspend(actor: User, policy: Policy, duration: timedelta | None = WEEK, kind: str = "suspend") -> AccountAction:
    return account_action_request(
        account=account(), actor=actor, kind=kind, policy=policy, reason="spree", duration=duration
    )


def test_a_suspension_for_a_week_is_lifted_when_the_week_ends(author, qa_lead, hate) -> None:
    action = _suspend(qa_lead, hate)
    assert action.expires_at == action.effective_at + WEEK
    assert account().status == "suspended"
    assert account_actions_expire(at=action.expires_at - timedelta(seconds=1)) == 0
    assert account().status == "suspended"

    assert account_actions_expire(at=action.expires_at) == 1
    action.refresh_from_db()
    assert (action.state, action.reversed_at, action.reversed_by) == (ActionState.EXPIRED, action.expires_at, None)
    assert account().status == "active"
    audit = AuditLog.objects.get(action="account.action_expired")
    assert (audit.actor_label, audit.target_id) == ("system:action-expiry", str(account().pk))
    assert AccountEvent.objects.filter(account=account(), event="action_expired").count() == 1
    hooks = [e.payload for e in WebhookEvent.objects.filter(event_type="account.action").order_by("pk")]
    assert [(h["state"], h["expires_at"]) for h in hooks] == [
        ("in_force", action.expires_at.isoformat()),
        ("expired", action.expires_at.isoformat()),
    ]
    assert hooks[-1]["reversal_reason"] == "Its duration ended."
    assert account_actions_expire(at=action.expires_at + WEEK) == 0  # lifted once


def test_the_time_counts_from_the_second_persons_approval(author, qa_lead, hate) -> None:
    PolicyStrikes.objects.filter(policy=hate).update(suspension_needs_approval=True)
    second = user_create(actor="test", username="sam", password=PASSWORD, roles=[Role.SENIOR_REVIEWER])
    action = _suspend(qa_lead, hate)
    assert (action.state, action.expires_at) == (ActionState.PENDING, None)
    approved_at = timezone.now() + timedelta(days=2)
    account_action_approve(action=action, actor=second, at=approved_at)
    action.refresh_from_db()
    assert action.expires_at == approved_at + WEEK
    assert account_actions_expire(at=approved_at + WEEK - timedelta(minutes=1)) == 0
    assert account_actions_expire(at=approved_at + WEEK) == 1


def test_a_reversed_action_is_not_lifted_again_and_the_stronger_one_left_decides_the_status(
    author, qa_lead, hate
) -> None:
    short = _suspend(qa_lead, hate, timedelta(days=1))
    reversed_one = _suspend(qa_lead, hate, timedelta(days=1), kind="restrict")
    lasting = _suspend(qa_lead, hate, None, kind="restrict")
    account_action_reverse(action=reversed_one, actor=qa_lead, reason="too harsh")
    assert account_actions_expire(at=timezone.now() + timedelta(days=2)) == 1
    short.refresh_from_db()
    reversed_one.refresh_from_db()
    lasting.refresh_from_db()
    assert (short.state, reversed_one.state, lasting.state) == ("expired", "reversed", "in_force")
    assert account().status == "restricted"


def test_the_periodic_task_lifts_what_is_due(author, qa_lead, hate) -> None:
    action = _suspend(qa_lead, hate)
    AccountAction.objects.filter(pk=action.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert tasks.account_actions_expire_task() == 1
    assert account().status == "active"


@pytest.mark.parametrize(
    ("kind", "duration"),
    [("warn", WEEK), ("custom", WEEK), ("suspend", timedelta(0)), ("restrict", timedelta(days=3651))],
)
def test_only_a_restriction_or_suspension_takes_a_duration_in_range(author, qa_lead, hate, kind, duration) -> None:
    with pytest.raises(ApplicationError) as refused:
        account_action_request(
            account=account(),
            actor=qa_lead,
            kind=kind,
            policy=hate,
            reason="x",
            custom_action="mute",
            duration=duration,
        )
    assert refused.value.field == "duration"
    assert not AccountAction.objects.exists()


def test_bulk_actions_carry_the_duration(author, qa_lead, hate) -> None:
    accounts_ensure(rows=[{"source": SOURCE, "author_ref": "u-2"}])
    ids = [a.pk for a in [account("u-1"), account("u-2")]]
    account_actions_bulk(actor=qa_lead, account_ids=ids, kind="restrict", policy=hate, reason="ring", duration=WEEK)
    assert {a.expires_at - a.effective_at for a in AccountAction.objects.all()} == {WEEK}


def test_the_account_page_form_takes_days_and_refuses_anything_else(author, qa_lead, hate) -> None:
    browser = Client()
    browser.login(username=qa_lead.username, password=PASSWORD)
    url = reverse("accounts:act", args=[account().pk])
    form = {"kind": "restrict", "policy": str(hate.pk), "reason": "spam"}
    for bad in ["abc", "-1", "1.5", "999999"]:
        refused = browser.post(url, {**form, "duration_days": bad})
        assert refused.status_code == 400, bad
        assert 'data-field="duration"' in refused.content.decode()
    assert not AccountAction.objects.exists()
    assert browser.post(url, {**form, "duration_days": "3"}).status_code == 302
    action = AccountAction.objects.get()
    assert action.expires_at == action.effective_at + timedelta(days=3)
    page = browser.get(reverse("accounts:detail", args=[account().pk])).content.decode()
    assert 'data-testid="action-until"' in page
