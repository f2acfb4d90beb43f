"""The account page at scale (docs/accounts.md, "The account page at scale"): one page of the account's items
newest first with a keyset to older ones, the decisions on its items following the same keyset, a vendor's
reviewer seeing only their queues' items and decisions, reporting accounts counted in the database, and a number
of queries that does not grow with the account's items."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ops_platform.core.models import Policy, User, Vendor
from queues.accounts.models import AccountReport, PolicyStrikes
from queues.accounts.selectors import account_page
from queues.accounts.services import accounts_ensure
from queues.models import ItemKind, Queue, ReviewItem
from tests.conftest import PASSWORD
from tests.queues.factories import item_queued
from tests.queues.test_accounts import SOURCE, account, decide

pytestmark = pytest.mark.django_db


@pytest.fixture
def hate(intake_queue: Queue) -> Policy:
    policy = Policy.objects.create(slug="hate", name="Hate", guidelines="No attacks on protected groups.")
    PolicyStrikes.objects.create(policy=policy, family="abuse", weight=1, expires_after=timedelta(days=30))
    intake_queue.policies.add(policy)
    return policy


def items_of(queue: Queue, reviewer: User, policy: Policy, n: int, *, author: str = "u-1") -> list[int]:
    """``n`` items of ``author``, oldest first; every third one decided (a violation of ``policy``)."""
    ids = []
    for k in range(n):
        if k % 3 == 0:
            ids.append(decide(queue, reviewer, policy, author=author).item_id)
        else:
            ids.append(item_queued(queue, source=SOURCE, author_ref=author).pk)
    accounts_ensure(rows=ReviewItem.objects.all())
    return ids


def test_the_items_page_back_by_id_and_the_decisions_follow(intake_queue, reviewer, qa_lead, hate) -> None:
    ids = items_of(intake_queue, reviewer, hate, 7)
    newest = list(reversed(ids))
    decided = [pk for k, pk in enumerate(ids) if k % 3 == 0][::-1]

    first = account_page(account(), viewer=qa_lead, limit=3)
    assert [i.pk for i in first.items] == newest[:3]
    assert first.items_before == newest[2]
    assert [d.item_id for d in first.decisions] == decided[:3]

    second = account_page(account(), viewer=qa_lead, limit=3, before=first.items_before)
    assert [i.pk for i in second.items] == newest[3:6]
    assert [d.item_id for d in second.decisions] == [pk for pk in decided if pk < newest[2]]

    last = account_page(account(), viewer=qa_lead, limit=3, before=second.items_before)
    assert ([i.pk for i in last.items], last.items_before) == (newest[6:], None)


def test_the_page_links_older_items_and_takes_only_a_whole_number(intake_queue, reviewer, qa_lead, hate) -> None:
    ids = items_of(intake_queue, reviewer, hate, 55)
    browser = Client()
    browser.login(username=qa_lead.username, password=PASSWORD)
    url = reverse("accounts:detail", args=[account().pk])
    html = browser.get(url).content.decode()
    assert f'href="?before={ids[5]}" data-testid="older-items"' in html  # 50 newest shown: ids[54] .. ids[5]
    older = browser.get(url, {"before": ids[5]}).content.decode()
    assert f"older than item {ids[5]}" in older
    assert 'data-testid="older-items"' not in older
    for hostile in ("1 OR 1=1", "-3", "<b>", "9" * 40):
        page = browser.get(url, {"before": hostile})
        assert page.status_code == 200
        assert "older than item" not in page.content.decode()


def test_a_vendor_reviewer_sees_only_their_queues_items_and_decisions(
    intake_queue, reviewer, vendor_reviewer, vendor_a: Vendor, hate
) -> None:
    theirs = Queue.objects.create(slug="vendor-q", name="Vendor queue")
    theirs.allowed_vendors.add(vendor_a)
    theirs.policies.add(hate)
    ours = items_of(intake_queue, reviewer, hate, 3)
    visible = items_of(theirs, reviewer, hate, 3)
    page = account_page(account(), viewer=vendor_reviewer)
    assert {i.pk for i in page.items} == set(visible)
    assert {d.item_id for d in page.decisions} == {visible[0]}
    assert not {d.item_id for d in page.decisions} & set(ours)


def test_reporting_accounts_are_counted_most_first(intake_queue, reviewer, qa_lead, hate) -> None:
    items_of(intake_queue, reviewer, hate, 1)
    for n, reporter in ((3, "r-a"), (1, "r-b"), (2, "r-c")):
        for _ in range(n):
            item_queued(intake_queue, source=SOURCE, author_ref=reporter)
    accounts_ensure(rows=ReviewItem.objects.all())
    subject = account()
    for reporter, n in (("r-a", 3), ("r-b", 1), ("r-c", 2)):
        for _ in range(n):
            report = item_queued(intake_queue, source=SOURCE, author_ref="u-1", kind=ItemKind.USER_REPORT)
            AccountReport.objects.create(item=report, subject=subject, reporter=account(reporter), about_account=True)
    page = account_page(subject, viewer=qa_lead)
    assert [(a.ref, n) for a, n in page.reporters] == [("r-a", 3), ("r-c", 2), ("r-b", 1)]
    assert [(a.ref, n) for a, n in account_page(account("r-c"), viewer=qa_lead).reported] == [("u-1", 2)]


def test_the_page_asks_as_many_queries_for_a_busy_account_as_for_a_quiet_one(
    intake_queue, reviewer, qa_lead, hate
) -> None:
    items_of(intake_queue, reviewer, hate, 2, author="quiet")
    items_of(intake_queue, reviewer, hate, 60, author="busy")
    browser = Client()
    browser.login(username=qa_lead.username, password=PASSWORD)
    counts = []
    for ref in ("quiet", "busy"):
        url = reverse("accounts:detail", args=[account(ref).pk])
        browser.get(url)  # sessions and caches warm
        with CaptureQueriesContext(connection) as queries:
            assert browser.get(url).status_code == 200
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1]
