"""Accounts (docs/accounts.md): created at intake once per author, strikes that follow the decision in force and
expire, thresholds that act exactly once (also under parallel decisions on PostgreSQL), two-person suspensions,
reversal, vendor scoping, reports about accounts, what rules read, and the signed, retried account.action
webhook."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ops_platform.core.errors import NotFound, NotPermitted
from ops_platform.core.models import AuditLog, DecisionLabel, Policy, Role, Team, User, WebhookEvent
from ops_platform.core.services import user_create
from queues.accounts.actions import (
    account_action_approve,
    account_action_request,
    account_action_reverse,
    account_actions_bulk,
    account_actions_preview,
)
from queues.accounts.models import (
    Account,
    AccountAction,
    AccountLabel,
    AccountReport,
    ActionState,
    LabelStrikes,
    PolicyStrikes,
    Strike,
    StrikeThreshold,
)
from queues.accounts.selectors import account_features, accounts_visible_to
from queues.accounts.services import account_label_set, accounts_ensure
from queues.accounts.strikes import family_total
from queues.models import ItemKind, ItemState, Queue, ReviewItem
from queues.services import appeal_decide, decision_record, item_claim
from routing.rules.apply import items_route
from routing.rules.columns import account_columns
from routing.rules.features import item_rows
from routing.rules.lifecycle import RuleData
from routing.rules.models import RuleAction, RuleSetKind
from tests.conftest import PASSWORD
from tests.core.test_webhooks import SECRET, Receiver, client_for, eager_retries  # noqa: F401 - a fixture
from tests.queues.factories import item_queued
from tests.routing.rules_setup import ruleset_live

pytestmark = pytest.mark.django_db

SOURCE = "social-app"


@pytest.fixture
def hate(intake_queue: Queue) -> Policy:
    policy = Policy.objects.create(slug="hate", name="Hate", guidelines="No attacks on protected groups.")
    PolicyStrikes.objects.create(policy=policy, family="abuse", weight=1, expires_after=timedelta(days=30))
    intake_queue.policies.add(policy)
    return policy


def decide(queue: Queue, actor: User, policy: Policy | None, *, author: str = "u-1", at: Any = None, **kw: Any):
    item = item_queued(queue, source=SOURCE, author_ref=author)
    item_claim(item=item, actor=actor)
    item.refresh_from_db()
    labels = kw.pop("labels", [])
    return decision_record(
        item=item, actor=actor, is_violation=policy is not None, policy=policy, labels=labels, at=at, **kw
    ).decision


def account(ref: str = "u-1") -> Account:
    return Account.objects.get(source=SOURCE, ref=ref)


# --- accounts at intake --------------------------------------------------------------------------------


def test_intake_makes_one_account_per_source_and_author(api: Any) -> None:
    body = [
        {
            "external_id": "a1",
            "text": "hi",
            "author_ref": "u-1",
            "metadata": {"author_created_at": "2026-01-02T00:00Z"},
        },
        {"external_id": "a2", "text": "hi", "author_ref": "u-1"},
        {"external_id": "a3", "text": "hi", "author_ref": "u-2"},
        {"external_id": "a4", "text": "hi"},
    ]
    assert api.post("/api/v1/items", body).status_code < 300
    assert api.post("/api/v1/items", {"external_id": "a5", "text": "x", "author_ref": "u-1"}).status_code == 201
    accounts = {a.ref: a for a in Account.objects.all()}
    assert set(accounts) == {"u-1", "u-2"}
    assert accounts["u-1"].external_created_at is not None
    assert accounts["u-2"].external_created_at is None
    assert accounts["u-1"].events.filter(event="created").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_intake_of_one_author_makes_one_account() -> None:
    start = threading.Barrier(6)

    def ensure(n: int) -> int:
        try:
            start.wait(timeout=30)
            return accounts_ensure(
                rows=[{"source": SOURCE, "author_ref": "same"}, {"source": SOURCE, "author_ref": f"o{n}"}]
            )
        finally:
            connection.close()

    with ThreadPoolExecutor(6) as pool:
        created = sum(pool.map(ensure, range(6)))
    assert created == 7
    assert Account.objects.filter(ref="same").count() == 1


def test_a_report_about_an_account_routes_as_a_user_report_and_links_reporter_and_subject(api: Any) -> None:
    report = {
        "external_id": "r1",
        "kind": "user_report",
        "subject": "account",
        "author_ref": "troll",
        "reporter_ref": "victim",
        "report_reasons": ["harassment"],
    }
    response = api.post("/api/v1/items", report)
    assert response.status_code == 201, response.content
    item = ReviewItem.objects.get(external_id="r1")
    assert (item.kind, item.text) == (ItemKind.USER_REPORT, "")
    link = AccountReport.objects.get(item=item)
    assert (link.subject.ref, link.reporter.ref, link.about_account) == ("troll", "victim", True)
    bad = api.post("/api/v1/items", {**report, "external_id": "r2", "kind": "content"})
    assert bad.status_code == 400
    assert "subject" in json.dumps(bad.json())


# --- strikes -------------------------------------------------------------------------------------------


def test_a_final_violation_adds_its_policy_weight_and_a_label_overrides_it(intake_queue, reviewer, hate) -> None:
    slur = DecisionLabel.objects.create(policy=hate, slug="slur", name="Slur")
    LabelStrikes.objects.create(label=slur, weight=3)
    decide(intake_queue, reviewer, hate)
    decide(intake_queue, reviewer, hate, labels=[slur])
    decide(intake_queue, reviewer, None)  # no violation: no strike
    assert sorted(Strike.objects.values_list("weight", flat=True)) == [1, 3]
    assert family_total(account().pk, "abuse", at=timezone.now()) == 4
    assert AuditLog.objects.filter(action="account.strike_added").count() == 2


def test_strikes_expire_after_the_policy_window(intake_queue, reviewer, hate) -> None:
    decided_at = timezone.now()
    decide(intake_queue, reviewer, hate, at=decided_at)
    strike = Strike.objects.get()
    assert strike.expires_at == decided_at + timedelta(days=30)
    pair = (SOURCE, "u-1")
    assert account_features([pair], at=decided_at + timedelta(days=29))[pair]["author.strikes"] == 1
    assert account_features([pair], at=decided_at + timedelta(days=31))[pair]["author.strikes"] == 0


def test_an_overturned_appeal_removes_the_strike(intake_queue, reviewer, qa_lead, hate) -> None:
    decision = decide(intake_queue, reviewer, hate)
    appeal = ReviewItem.objects.create(
        source=SOURCE,
        external_id="appeal-1",
        kind=ItemKind.APPEAL,
        text="I did nothing",
        author_ref="u-1",
        appeal_of=decision.item,
        received_at=timezone.now(),
        state=ItemState.QUEUED,
        queue=intake_queue,
    )
    item_claim(item=appeal, actor=qa_lead)
    appeal.refresh_from_db()
    appeal_decide(item=appeal, actor=qa_lead, uphold=False, rationale="Quoting, not attacking.")
    strike = Strike.objects.get()
    assert strike.removed_at is not None
    assert "overturned" in strike.removed_reason
    assert family_total(account().pk, "abuse", at=timezone.now()) == 0
    assert account().events.filter(event="strike_removed").exists()


def test_an_upheld_appeal_keeps_the_one_strike(intake_queue, reviewer, qa_lead, hate) -> None:
    decision = decide(intake_queue, reviewer, hate)
    appeal = ReviewItem.objects.create(
        source=SOURCE,
        external_id="appeal-2",
        kind=ItemKind.APPEAL,
        text="please",
        author_ref="u-1",
        appeal_of=decision.item,
        received_at=timezone.now(),
        state=ItemState.QUEUED,
        queue=intake_queue,
    )
    item_claim(item=appeal, actor=qa_lead)
    appeal.refresh_from_db()
    appeal_decide(item=appeal, actor=qa_lead, uphold=True, rationale="It is an attack.")
    assert list(Strike.objects.values_list("weight", "removed_at")) == [(1, None)]


# --- thresholds and actions ----------------------------------------------------------------------------


def test_crossing_a_threshold_acts_once_with_the_decisions_behind_it(intake_queue, reviewer, hate) -> None:
    StrikeThreshold.objects.create(family="abuse", strikes=2, action="warn")
    StrikeThreshold.objects.create(family="abuse", strikes=3, action="custom", custom_action="mute-7d")
    first = decide(intake_queue, reviewer, hate)
    assert not AccountAction.objects.exists()
    second = decide(intake_queue, reviewer, hate)
    [warn] = AccountAction.objects.all()
    assert (warn.kind, warn.state, warn.origin) == ("warn", ActionState.IN_FORCE, "threshold")
    assert warn.decision_ids == sorted([first.pk, second.pk])
    assert account().status == "warned"
    decide(intake_queue, reviewer, hate)
    assert sorted(AccountAction.objects.values_list("kind", "custom_action")) == [("custom", "mute-7d"), ("warn", "")]
    decide(intake_queue, reviewer, hate)  # past every threshold: nothing more
    assert AccountAction.objects.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_decisions_crossing_a_threshold_in_parallel_act_exactly_once() -> None:
    team = Team.objects.create(slug="in-house", name="In-house")
    queue = Queue.objects.create(slug="general", name="General")
    policy = Policy.objects.create(slug="spam", name="Spam", guidelines="-")
    queue.policies.add(policy)
    StrikeThreshold.objects.create(family="spam", strikes=2, action="restrict")
    reviewers = [
        user_create(actor="test", username=f"r{n}", password=PASSWORD, roles=[Role.REVIEWER], team=team)
        for n in range(4)
    ]
    items = [item_queued(queue, source=SOURCE, author_ref="twin") for _ in reviewers]
    for item, person in zip(items, reviewers, strict=True):
        item_claim(item=item, actor=person)
    start = threading.Barrier(len(reviewers))

    def decide_one(pair: tuple[ReviewItem, User]) -> None:
        item, person = pair
        try:
            start.wait(timeout=30)
            decision_record(item=item, actor=person, is_violation=True, policy=policy)
        finally:
            connection.close()

    with ThreadPoolExecutor(len(reviewers)) as pool:
        list(pool.map(decide_one, zip(items, reviewers, strict=True)))

    assert Strike.objects.filter(account__ref="twin").count() == 4
    [action] = AccountAction.objects.all()
    assert action.kind == "restrict"
    assert len(action.decision_ids) >= 2
    assert Account.objects.get(ref="twin").status == "restricted"


def test_a_suspension_the_policy_guards_waits_for_a_second_person(intake_queue, reviewer, qa_lead, hate) -> None:
    PolicyStrikes.objects.filter(policy=hate).update(suspension_needs_approval=True)
    second = user_create(actor="test", username="sam", password=PASSWORD, roles=[Role.SENIOR_REVIEWER])
    decide(intake_queue, reviewer, hate)
    with pytest.raises(NotPermitted):
        account_action_request(account=account(), actor=reviewer, kind="suspend", policy=hate, reason="spree")
    action = account_action_request(account=account(), actor=qa_lead, kind="suspend", policy=hate, reason="spree")
    assert action.state == ActionState.PENDING
    assert account().status == "active"
    with pytest.raises(NotPermitted):
        account_action_approve(action=action, actor=qa_lead)
    account_action_approve(action=action, actor=second)
    action.refresh_from_db()
    assert (action.state, action.approved_by) == (ActionState.IN_FORCE, second)
    assert account().status == "suspended"
    account_action_reverse(action=action, actor=qa_lead, reason="Mistaken identity.")
    assert account().status == "active"
    actions = set(AuditLog.objects.filter(target_type="queues.account").values_list("action", flat=True))
    assert {"account.action_requested", "account.action_in_force", "account.action_reversed"} <= actions


def test_bulk_account_actions_preview_then_apply_for_seniors_only(intake_queue, reviewer, qa_lead, hate) -> None:
    accounts_ensure(rows=[{"source": SOURCE, "author_ref": f"b{n}"} for n in range(3)])
    ids = list(Account.objects.values_list("pk", flat=True))
    with pytest.raises(NotPermitted):
        account_actions_preview(actor=reviewer, account_ids=ids)
    preview = account_actions_preview(actor=qa_lead, account_ids=[*ids, 999_999])
    assert ([a.pk for a in preview.accounts], preview.missing) == (sorted(ids), [999_999])
    with pytest.raises(NotFound):
        account_actions_bulk(actor=qa_lead, account_ids=[*ids, 999_999], kind="warn", policy=hate, reason="raid")
    batch = account_actions_bulk(actor=qa_lead, account_ids=ids, kind="warn", policy=hate, reason="raid")
    assert AccountAction.objects.filter(batch_id=batch, state=ActionState.IN_FORCE).count() == 3


# --- vendor scoping --------------------------------------------------------------------------------------


def test_vendor_reviewers_see_only_accounts_with_items_in_their_queues(
    intake_queue, vendor_reviewer, vendor_a, hate
) -> None:
    vendor_queue = Queue.objects.create(slug="vendor-q", name="Vendor queue")
    vendor_queue.allowed_vendors.add(vendor_a)
    item_queued(vendor_queue, source=SOURCE, author_ref="theirs")
    item_queued(intake_queue, source=SOURCE, author_ref="ours")
    accounts_ensure(rows=ReviewItem.objects.all())
    assert [a.ref for a in accounts_visible_to(vendor_reviewer)] == ["theirs"]
    browser = Client()
    browser.login(username=vendor_reviewer.username, password=PASSWORD)
    assert browser.get(reverse("accounts:detail", args=[account("ours").pk])).status_code == 404
    assert browser.get(reverse("accounts:detail", args=[account("theirs").pk])).status_code == 200
    with pytest.raises(NotPermitted):
        account_label_set(account=account("theirs"), label="under-investigation", actor=vendor_reviewer)


def test_the_account_page_shows_strikes_labels_and_actions_to_staff(intake_queue, reviewer, qa_lead, hate) -> None:
    StrikeThreshold.objects.create(family="abuse", strikes=1, action="warn")
    decide(intake_queue, reviewer, hate)
    account_label_set(account=account(), label="under-investigation", actor=qa_lead, reason="raid")
    browser = Client()
    browser.login(username=qa_lead.username, password=PASSWORD)
    page = browser.get(reverse("accounts:detail", args=[account().pk]))
    assert page.status_code == 200
    html = page.content.decode()
    for text in ("u-1", "under-investigation", "warn", "abuse", "something someone posted"):
        assert text in html


# --- what rules read -------------------------------------------------------------------------------------


def test_rules_read_the_authors_strikes_labels_and_account_age(intake_queue, reviewer, qa_lead, hate) -> None:
    decide(intake_queue, reviewer, hate)
    account_label_set(account=account(), label="trusted-flagger", actor=qa_lead)
    account_label_set(
        account=account(), label="new-account", actor="rule:intake", expires_at=timezone.now() + timedelta(hours=1)
    )
    Account.objects.filter(pk=account().pk).update(external_created_at=timezone.now() - timedelta(days=10))
    item = item_queued(intake_queue, source=SOURCE, author_ref="u-1")
    nobody = item_queued(intake_queue, source=SOURCE, author_ref="nobody")
    rows = item_rows([item, nobody])
    assert rows[item.pk]["author.strikes"] == 1
    assert rows[item.pk]["author.labels"] == "new-account,trusted-flagger"
    assert 9.9 < rows[item.pk]["author.account_age_days"] < 10.1
    assert (rows[nobody.pk]["author.strikes"], rows[nobody.pk]["author.labels"]) == (0, "")


# --- the account.action webhook --------------------------------------------------------------------------


@pytest.mark.usefixtures("eager_retries")
def test_the_account_action_webhook_is_signed_and_retried(
    intake_queue, reviewer, hate, django_capture_on_commit_callbacks
) -> None:
    StrikeThreshold.objects.create(family="abuse", strikes=1, action="suspend")
    with Receiver(SECRET, fail_first=2) as receiver:
        client_for(receiver.url, source=SOURCE)
        with django_capture_on_commit_callbacks(execute=True):
            decision = decide(intake_queue, reviewer, hate)
        event = WebhookEvent.objects.get(event_type="account.action")
        hooked = [r for r in receiver.requests if r.event_type == "account.action"]
    assert [r.status for r in hooked] == [500, 500, 204]
    assert all(r.verified for r in hooked)
    assert {r.event_id for r in hooked} == {str(event.event_id)}
    data = json.loads(hooked[-1].body)["data"]
    assert data["action"] == "suspend"
    assert data["state"] == "in_force"
    assert (data["source"], data["account_ref"], data["policy"], data["family"]) == (SOURCE, "u-1", "hate", "abuse")
    assert "reached the threshold of 1" in data["reason"]
    assert data["decisions"] == [
        {
            "decision_id": decision.pk,
            "item_id": decision.item_id,
            "external_id": decision.item.external_id,
            "policy": "hate",
        }
    ]
    assert "something someone posted" not in hooked[-1].body.decode()
    event.refresh_from_db()
    assert (event.state, event.attempts) == ("delivered", 3)


def test_a_rule_tag_labels_the_authors_account_with_an_expiry(intake_queue, policy_staff, admin_user) -> None:
    rule = RuleData(
        name="raid-watch",
        condition='text contains "raid"',
        action=RuleAction.TAG,
        tags=["account:under-investigation:7d", "watch"],
    )
    ruleset_live(RuleSetKind.INTAKE, [rule], author=policy_staff, approver=admin_user, default_queue=intake_queue)
    raid = [
        ReviewItem.objects.create(
            source=SOURCE,
            external_id=f"raid-{n}",
            text="join the raid",
            author_ref="raider",
            received_at=timezone.now(),
        )
        for n in range(2)
    ]
    calm = ReviewItem.objects.create(
        source=SOURCE, external_id="calm", text="hello", author_ref="calm", received_at=timezone.now()
    )
    items_route(item_ids=[*(i.pk for i in raid), calm.pk])
    [label] = AccountLabel.objects.filter(account__ref="raider")
    assert label.label == "under-investigation"
    assert label.set_by_label.startswith("rules:")  # the rules, as the item's placement names them
    assert label.expires_at is not None
    assert timedelta(days=6) < label.expires_at - timezone.now() <= timedelta(days=7)
    assert not AccountLabel.objects.filter(account__ref="calm").exists()


def test_a_backtest_reads_the_account_columns_in_item_order(intake_queue, reviewer, qa_lead, hate) -> None:
    decide(intake_queue, reviewer, hate, author="struck")
    account_label_set(account=account("struck"), label="trusted-flagger", actor=qa_lead)
    later = item_queued(intake_queue, source=SOURCE, author_ref="struck")
    stranger = item_queued(intake_queue, source=SOURCE, author_ref="stranger")
    anonymous = item_queued(intake_queue, source=SOURCE)
    ids = np.array(sorted([later.pk, stranger.pk, anonymous.pk]), dtype=np.int64)
    columns = account_columns(ReviewItem.objects.filter(pk__in=ids.tolist()), ids)
    assert columns["author.strikes"].tolist() == [1.0, 0.0, 0.0]
    labels = columns["author.labels"]
    assert [labels.values[c] for c in labels.codes.tolist()] == ["trusted-flagger", "", ""]


def test_the_bulk_page_previews_then_acts_once_the_count_is_typed(qa_lead, reviewer, hate) -> None:
    accounts_ensure(rows=[{"source": SOURCE, "author_ref": f"b{n}"} for n in range(2)])
    ids = ",".join(str(pk) for pk in Account.objects.values_list("pk", flat=True))
    form = {"accounts": ids, "kind": "restrict", "policy": str(hate.pk), "reason": "spam ring"}
    browser = Client()
    browser.login(username=reviewer.username, password=PASSWORD)
    assert browser.post(reverse("accounts:bulk"), form).status_code == 403
    browser.login(username=qa_lead.username, password=PASSWORD)
    preview = browser.post(reverse("accounts:bulk"), form)
    assert preview.status_code == 200
    assert {"social-app/b0", "social-app/b1"} <= set(re.findall(r"social-app/b\d", preview.content.decode()))
    assert not AccountAction.objects.exists()
    wrong = browser.post(reverse("accounts:bulk"), {**form, "confirm": "yes", "confirmed_count": "3"})
    assert wrong.status_code == 400
    assert "confirmed_count" in wrong.content.decode()
    done = browser.post(reverse("accounts:bulk"), {**form, "confirm": "yes", "confirmed_count": "2"})
    assert done.status_code == 302
    assert AccountAction.objects.filter(kind="restrict", origin="bulk").count() == 2
    assert set(Account.objects.values_list("status", flat=True)) == {"restricted"}
