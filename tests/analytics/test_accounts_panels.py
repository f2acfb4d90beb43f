"""The account panels: the repeat-offender rate, strikes issued/expired/removed and account actions by policy with
their appeal overturn rate, judged ("too few to judge" under 30) and drilling down to the strikes, accounts and
actions behind them."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from analytics import panels
from analytics.filters import MetricFilter
from analytics.selectors.accounts import account_actions_by_policy, repeat_offenders, strikes_by_day
from analytics.tables import cell_text
from ops_platform.core.models import Policy, User
from queues.accounts.models import PolicyStrikes, StrikeThreshold
from queues.models import ItemKind, ItemState, Queue, ReviewItem, Strike
from queues.services import appeal_decide, item_claim
from tests.conftest import PASSWORD
from tests.queues.test_accounts import SOURCE, decide

pytestmark = pytest.mark.django_db


@pytest.fixture
def spam(intake_queue: Queue) -> Policy:
    policy = Policy.objects.create(slug="spam", name="Spam", guidelines="-")
    PolicyStrikes.objects.create(policy=policy, family="spam", weight=1, expires_after=timedelta(days=1))
    intake_queue.policies.add(policy)
    StrikeThreshold.objects.create(family="spam", strikes=1, action="warn")
    return policy


def _overturn(decision, queue: Queue, actor: User) -> None:
    appeal = ReviewItem.objects.create(
        source=SOURCE,
        external_id=f"appeal-{decision.pk}",
        kind=ItemKind.APPEAL,
        text="no",
        author_ref=decision.item.author_ref,
        appeal_of=decision.item,
        received_at=timezone.now(),
        state=ItemState.QUEUED,
        queue=queue,
    )
    item_claim(item=appeal, actor=actor)
    appeal.refresh_from_db()
    appeal_decide(item=appeal, actor=actor, uphold=False, rationale="wrong")


def test_account_panels_count_strikes_actions_and_overturns(intake_queue, reviewer, qa_lead, spam) -> None:
    now = timezone.now()
    decide(intake_queue, reviewer, spam, author="a", at=now - timedelta(days=3))  # expired two days ago
    decide(intake_queue, reviewer, spam, author="a")  # crosses the threshold again: the first strike expired
    third = decide(intake_queue, reviewer, spam, author="b")
    _overturn(third, intake_queue, qa_lead)
    f = MetricFilter.last_days(7)

    table = repeat_offenders(f)
    [family] = table.rows
    assert (family["family"], family["accounts"], family["repeat"]) == ("spam", 1, 1)  # b's strike was taken back
    assert cell_text(family, table.column("repeat_rate")).startswith("too few to judge (1 item)")

    days = strikes_by_day(f).rows
    assert sum(r["issued"] for r in days) == 3
    assert sum(r["removed"] for r in days) == 1  # the overturned one
    assert sum(r["expired"] for r in days) == 1  # a's first, while it still stood
    assert Strike.objects.filter(removed_at__isnull=True).count() == 2

    actions = account_actions_by_policy(f)
    [row] = actions.rows
    assert (row["policy"], row["action"], row["actions"], row["overturned"]) == ("spam", "warn", 3, 1)
    assert row["overturn_rate"] == pytest.approx(1 / 3)
    assert "too few to judge" in cell_text(row, actions.column("overturn_rate"))
    drill = actions.drill(row) if actions.drill else None
    assert drill is not None
    query = parse_qs(urlsplit(drill).query)
    assert (query["metric"], query["cell_policy"], query["cell_action"]) == (
        ["account_actions"],
        [str(spam.pk)],
        ["warn"],
    )


def test_the_accounts_dashboard_renders_for_ops(intake_queue, reviewer, ops_manager, spam) -> None:
    decide(intake_queue, reviewer, spam, author="a")
    assert {p.name for p in panels.panels_for("accounts")} == {
        "repeat_offenders",
        "strikes_by_day",
        "account_actions_by_policy",
    }
    browser = Client()
    browser.login(username=ops_manager.username, password=PASSWORD)
    page = browser.get("/analytics/accounts/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Repeat-offender rate" in html
    assert "too few to judge" in html
    assert "/analytics/account-rows?" in html  # the figures drill down to their strikes, accounts and actions
    csv = browser.get("/analytics/accounts/strikes_by_day/?format=csv")
    assert csv.status_code == 200
