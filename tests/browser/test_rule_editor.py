"""Policy staff change routing in a real browser: a draft with live validation, a second person's approval,
activation, a backtest with its chart, and a rollback; rule text stays inert."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from queues.models import ItemState, Queue, ReviewItem
from routing.models import ClassifierScore, RuleSet, RuleSetStatus
from tests.browser.conftest import SCREENSHOTS, off_machine_requests
from tests.browser.test_scoring_pages import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def sign_out(page: Page) -> None:
    page.click("text=Sign out")


def stored_items(queue: Queue, hate: list[float]) -> None:
    now = timezone.now()
    for i, score in enumerate(hate):
        item = ReviewItem.objects.create(
            source="web",
            external_id=f"e{i}",
            text=f"post {i}",
            received_at=now - timedelta(hours=i + 1),
            state=ItemState.QUEUED,
            queue=queue,
        )
        ClassifierScore.objects.create(item=item, backend="local", model_version="t", scores={"hate": score})


def test_a_draft_is_validated_live_approved_by_someone_else_backtested_and_rolled_back(
    page: Page, live_server, policy_staff, admin_user, intake_queue
):
    hate_queue = Queue.objects.create(slug="hate", name="Hate specialists")
    stored_items(intake_queue, [0.1, 0.2, 0.7, 0.9, 0.95])
    outside = off_machine_requests(page, live_server.url)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    sign_in(page, live_server.url, "pat")
    page.click("text=Routing rules")
    page.locator("#kind-intake").get_by_role("button", name="New draft").click()
    expect(page.locator("h1")).to_contain_text("Intake routing v1")

    # Live validation while typing: a misspelt score is named with its line and column.
    page.wait_for_function("() => window.htmx !== undefined")  # live validation needs htmx loaded
    page.get_by_test_id("add-rule").click()
    form = page.get_by_test_id("add-rule-form")
    form.locator("input[name=new-name]").fill("hate-to-specialists")
    form.locator("textarea[name=new-condition]").fill("score.hat >= 0.6")
    expect(page.get_by_test_id("check")).to_contain_text("line 1, column 1: unknown score 'hat'; did you mean hate?")
    form.locator("textarea[name=new-condition]").fill("score.hate >= 0.6")
    expect(page.get_by_test_id("check")).to_contain_text("Valid condition.")
    form.locator("select[name=new-action]").select_option("route")
    form.locator("select[name=new-queue]").select_option(str(hate_queue.pk))
    form.locator("input[name=new-description]").fill("<script>alert('rule')</script>")
    form.get_by_role("button", name="Add rule").click()
    expect(page.locator("ul.flash")).to_contain_text("Rule 'hate-to-specialists' saved.")
    expect(page.get_by_test_id("rules")).to_contain_text("<script>alert('rule')</script>")

    page.locator("details.edit-meta summary").click()
    page.locator("select[name=default_queue]").select_option(str(intake_queue.pk))
    page.locator("details.edit-meta").get_by_role("button", name="Save").click()
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("status")).to_have_text("Submitted for approval")
    # The author cannot approve their own version.
    expect(page.get_by_test_id("approve")).to_have_count(0)
    expect(page.get_by_text("Waiting for a second policy-staff member")).to_be_visible()
    sign_out(page)

    sign_in(page, live_server.url, "ada")
    page.goto(f"{live_server.url}/rules/")
    page.click("text=v1")
    page.get_by_test_id("backtest").click()
    expect(page.locator("h2").first).to_contain_text("5 items")
    expect(page.locator("figure.chart")).to_contain_text("queue:hate")
    expect(page.locator("figure.chart rect.bar-draft")).to_have_count(2)
    expect(page.locator("table.matrix")).to_contain_text("queue:general")
    page.click("text=← Intake routing v1")
    # No backend produces score.hate in this world: going live asks for an acknowledgement.
    expect(page.get_by_test_id("unproduced")).to_contain_text("score.hate")
    page.get_by_test_id("acknowledge").locator("input").check()
    page.get_by_test_id("approve").click()
    expect(page.get_by_test_id("status")).to_have_text("Approved, not active")
    page.get_by_test_id("acknowledge").locator("input").check()
    page.get_by_test_id("activate").click()
    expect(page.get_by_test_id("status")).to_have_text("Active")

    # v2 changes the threshold; the diff shows the change; then it goes live and is rolled back.
    page.get_by_role("button", name="New draft from this version").click()
    expect(page.locator("h1")).to_contain_text("Intake routing v2")
    v2 = RuleSet.objects.get(version=2)
    rule = v2.rules.get()
    page.locator(f"#rule-{rule.pk} summary").click()
    page.locator(f"textarea[name=r{rule.pk}-condition]").fill("score.hate >= 0.8")
    page.locator(f"#rule-{rule.pk}").get_by_role("button", name="Save rule").click()
    page.click("text=Diff")
    expect(page.get_by_test_id("diff")).to_contain_text("-   when score.hate >= 0.6")
    expect(page.get_by_test_id("diff")).to_contain_text("+   when score.hate >= 0.8")
    page.screenshot(path=str(SCREENSHOTS / "rule-editor-diff.png"), full_page=True)
    RuleSet.objects.filter(pk=v2.pk).update(
        status=RuleSetStatus.APPROVED, submitted_by=policy_staff, approved_by=admin_user, created_by=policy_staff
    )
    page.goto(f"{live_server.url}/rules/{v2.pk}/")
    page.get_by_test_id("acknowledge").locator("input").check()
    page.get_by_test_id("activate").click()
    expect(page.get_by_test_id("status")).to_have_text("Active")
    page.goto(f"{live_server.url}/rules/")
    page.locator("#kind-intake").get_by_role("button", name="Roll back to v1…").click()
    expect(page.get_by_test_id("rollback")).to_contain_text("makes v1 live again and retires v2")
    assert RuleSet.objects.get(version=2).status == RuleSetStatus.ACTIVE  # nothing happens before the confirmation
    page.get_by_label("Why roll back").fill("v2 sends too much to the hate queue")
    page.get_by_test_id("acknowledge").locator("input").check()
    page.get_by_test_id("rollback-confirm").click()
    expect(page.locator("ul.flash")).to_contain_text("Intake routing v1 is active again")
    assert RuleSet.objects.get(version=1).status == RuleSetStatus.ACTIVE
    assert RuleSet.objects.get(version=2).status == RuleSetStatus.RETIRED
    assert dialogs == []
    assert outside == []
