"""An ops manager checks classifier scoring in a real browser: spend, incidents, a dead letter re-driven,
and a model card; hostile text in an error stays text."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from routing.models import DeadLetter, IncidentKind
from routing.scoring.guards import incident_raise
from tests.browser.conftest import off_machine_requests
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_an_ops_manager_redrives_a_dead_letter_and_reads_the_model_card(
    page: Page, live_server, ops_manager, local_model
):
    outside = off_machine_requests(page, live_server.url)
    DeadLetter.objects.create(
        task="routing.tasks.items_score_task",
        args=[[101, 102, 103]],
        error_type="OperationalError",
        error="<img src=x onerror=alert(1)> server closed the connection",
        retries=8,
    )
    incident_raise(IncidentKind.BUDGET_SPENT, backend="openai_policy", message="openai_policy: today's budget is spent")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    sign_in(page, live_server.url, "olga")
    page.click("text=Classifier scoring")
    expect(page.locator("h1")).to_have_text("Classifier scoring")
    expect(page.get_by_text("today's budget is spent")).to_be_visible()
    row = page.locator("tr", has_text="routing.tasks.items_score_task")
    expect(row).to_contain_text("<img src=x onerror=alert(1)>")  # shown as text, not run
    row.get_by_role("button", name="Re-drive").click()
    expect(page.locator("ul.flash")).to_contain_text("sent again")
    expect(page.locator("tr", has_text="routing.tasks.items_score_task")).to_have_count(0)

    page.click(f"text={local_model.label}")
    expect(page.locator("h1")).to_contain_text("Model card: local-v1")
    expect(page.locator("dl.facts")).to_contain_text("openai-moderation-1680")
    expect(page.get_by_text("model.promote")).to_be_visible()
    assert dialogs == []
    assert outside == []
