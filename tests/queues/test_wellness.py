"""Reviewer wellness: daily exposure caps per sensitive category, the offer of other queues, break reminders
and each reviewer's own display preferences."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import AuditLog, User
from queues import wellness
from queues.models import ExposureCategory, ItemEvent, Queue
from queues.services import decision_record, item_claim_next, item_release
from queues.wellness import (
    BREAK_GAP,
    ExposureCapReached,
    exposure_category_save,
    exposure_today,
    preferences_save,
    queue_exposure_set,
    review_stretch,
)
from tests.conftest import PASSWORD
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db


@pytest.fixture
def gore(ops_manager: User) -> ExposureCategory:
    return exposure_category_save(actor=ops_manager, slug="graphic-violence", name="Graphic violence", daily_cap=2)


@pytest.fixture
def gore_queue(gore: ExposureCategory, ops_manager: User) -> Queue:
    queue = Queue.objects.create(slug="gore", name="Gore")
    return queue_exposure_set(actor=ops_manager, queue=queue, category=gore)


def test_a_queue_under_a_cap_is_marked_sensitive_and_the_change_is_audited(gore_queue: Queue, ops_manager: User):
    assert gore_queue.is_sensitive
    entry = AuditLog.objects.get(action="queue.exposure_set")
    assert (entry.actor, entry.before, entry.after["exposure_category"]) == (
        ops_manager,
        {"exposure_category": None},
        "graphic-violence",
    )


def test_claims_stop_at_the_daily_cap_and_skipped_items_do_not_count(gore_queue: Queue, reviewer: User):
    for _ in range(4):
        item_queued(gore_queue)
    first = item_claim_next(queue=gore_queue, actor=reviewer)
    assert first is not None
    item_release(item=first, actor=reviewer, reason="too much")  # stepping away is not counted against them
    for _ in range(2):
        item = item_claim_next(queue=gore_queue, actor=reviewer)
        assert item is not None
        decision_record(item=item, actor=reviewer, is_violation=False)

    with pytest.raises(ExposureCapReached) as refused:
        item_claim_next(queue=gore_queue, actor=reviewer)

    assert refused.value.status_code == 409
    assert "the daily cap of 2" in refused.value.message
    assert exposure_today(reviewer) == {gore_queue.exposure_category_id: 2}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_tabs_claiming_at_the_same_instant_do_not_pass_the_cap(
    gore: ExposureCategory, ops_manager: User, reviewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two queues of the category, so each tab gets a new item rather than the one the other holds.
    queues = [
        queue_exposure_set(
            actor=ops_manager, queue=Queue.objects.create(slug=f"gore-{n}", name=f"Gore {n}"), category=gore
        )
        for n in range(4)
    ]
    for queue in queues:
        item_queued(queue)
    first = item_claim_next(queue=queues[0], actor=reviewer)  # one under the cap of 2
    assert first is not None
    start = threading.Barrier(3)
    counted = wellness.exposure_today

    def slow_count(user: User, **kwargs: Any) -> dict[int, int]:
        # Every tab has read the count before any claims: the race, made certain.
        seen = counted(user, **kwargs)
        time.sleep(0.5)
        return seen

    monkeypatch.setattr(wellness, "exposure_today", slow_count)

    def tab(queue: Queue) -> str:
        try:
            start.wait(timeout=30)
            return "claimed" if item_claim_next(queue=queue, actor=reviewer) else "empty"
        except ExposureCapReached:
            return "refused"
        finally:
            connection.close()

    with ThreadPoolExecutor(3) as pool:
        outcomes = sorted(pool.map(tab, queues[1:]))

    assert outcomes == ["claimed", "refused", "refused"]
    assert exposure_today(reviewer) == {gore.pk: 2}


def test_the_cap_is_per_reviewer_per_day_and_counts_every_queue_of_the_category(
    gore: ExposureCategory, gore_queue: Queue, reviewer: User, qa_lead: User, ops_manager: User
):
    other = queue_exposure_set(
        actor=ops_manager, queue=Queue.objects.create(slug="gore-2", name="Gore 2"), category=gore
    )
    for queue in (gore_queue, gore_queue, other, other):
        item_queued(queue)
    for queue in (gore_queue, other):
        item = item_claim_next(queue=queue, actor=reviewer)
        assert item is not None
        decision_record(item=item, actor=reviewer, is_violation=False)

    with pytest.raises(ExposureCapReached):
        item_claim_next(queue=other, actor=reviewer)
    assert item_claim_next(queue=other, actor=qa_lead) is not None  # someone else's day is their own
    tomorrow = timezone.now() + timedelta(days=1)
    assert item_claim_next(queue=gore_queue, actor=reviewer, at=tomorrow) is not None


def test_raising_the_cap_lets_the_reviewer_go_on(
    gore: ExposureCategory, gore_queue: Queue, reviewer: User, ops_manager: User
):
    for _ in range(3):
        item_queued(gore_queue)
    for _ in range(2):
        item = item_claim_next(queue=gore_queue, actor=reviewer)
        assert item is not None
        decision_record(item=item, actor=reviewer, is_violation=False)

    exposure_category_save(actor=ops_manager, slug=gore.slug, name=gore.name, daily_cap=3, reason="short-staffed")

    assert item_claim_next(queue=gore_queue, actor=reviewer) is not None
    entry = AuditLog.objects.filter(action="exposure_category.save").order_by("-id").first()
    assert entry is not None
    assert (entry.before, entry.after, entry.reason) == (
        {"name": "Graphic violence", "daily_cap": 2},
        {"name": "Graphic violence", "daily_cap": 3},
        "short-staffed",
    )


def test_a_cap_below_one_is_refused(ops_manager: User):
    with pytest.raises(ApplicationError, match="at least 1"):
        exposure_category_save(actor=ops_manager, slug="x", name="X", daily_cap=0)


def test_at_the_cap_the_page_offers_the_reviewers_other_queues(gore_queue: Queue, intake_queue: Queue, reviewer: User):
    for _ in range(3):
        item_queued(gore_queue)
    item_queued(intake_queue)
    http = Client()
    http.login(username=reviewer.username, password=PASSWORD)
    for _ in range(2):
        item = item_claim_next(queue=gore_queue, actor=reviewer)
        assert item is not None
        decision_record(item=item, actor=reviewer, is_violation=False)

    response = http.post(reverse("review-next", args=["gore"]), follow=True)

    page = response.content.decode()
    assert "the daily cap of 2" in page
    assert "With work now: General (1 waiting)" in page
    assert 'data-testid="capped"' in page  # no start button on the capped queue
    assert "2 / 2 Graphic violence" in page


def test_a_stretch_of_review_continues_until_a_ten_minute_pause(reviewer: User, intake_queue: Queue):
    now = timezone.now()
    item = item_queued(intake_queue)
    for minutes_ago in (70, 60, 45, 28, 20, 12, 5):  # a 17-minute pause between 45 and 28 minutes ago
        ItemEvent.objects.create(
            item=item, at=now - timedelta(minutes=minutes_ago), actor=reviewer, actor_label="alice", event="claimed"
        )

    stretch = review_stretch(reviewer, now=now)

    assert stretch is not None
    assert stretch.started_at == now - timedelta(minutes=28)
    assert stretch.minutes == 28
    assert not stretch.break_due  # alice's reminder is at 50 minutes
    assert review_stretch(reviewer, now=now + BREAK_GAP) is None  # rested


def test_the_break_reminder_shows_on_the_item_page_after_the_reviewers_own_stretch(reviewer: User, intake_queue: Queue):
    preferences_save(actor=reviewer, blur_media=True, greyscale_media=True, break_reminder_minutes=20)
    earlier = item_queued(intake_queue)
    now = timezone.now()
    for minutes_ago in (25, 17, 9, 1):
        ItemEvent.objects.create(
            item=earlier, at=now - timedelta(minutes=minutes_ago), actor=reviewer, actor_label="alice", event="decided"
        )
    item_queued(intake_queue)
    http = Client()
    http.login(username=reviewer.username, password=PASSWORD)

    response = http.post(reverse("review-next", args=["general"]), follow=True)

    assert 'data-testid="break-reminder"' in response.content.decode()
    assert "reviewing for 25 minutes" in response.content.decode()


def test_reviewers_set_their_own_preferences_and_zero_turns_the_reminder_off(reviewer: User):
    http = Client()
    http.login(username=reviewer.username, password=PASSWORD)

    response = http.post(reverse("review-preferences"), {"greyscale_media": "on", "break_reminder_minutes": "0"})

    assert response.status_code == 302
    profile = User.objects.get(pk=reviewer.pk).reviewer_profile
    assert (profile.blur_media, profile.greyscale_media, profile.break_reminder_minutes) == (False, True, 0)
    assert AuditLog.objects.filter(action="reviewer.preferences", actor=reviewer).exists()
    bad = http.post(reverse("review-preferences"), {"break_reminder_minutes": "-5"})
    assert bad.status_code == 400
    assert "between 0 (off) and 480 minutes" in bad.content.decode()
    assert 'data-field="break_reminder_minutes"' in bad.content.decode()


def test_only_wellness_managers_reach_the_wellness_settings(reviewer: User, ops_manager: User, gore_queue: Queue):
    http = Client()
    http.login(username=reviewer.username, password=PASSWORD)
    assert http.get(reverse("review-wellness")).status_code == 403
    http.login(username=ops_manager.username, password=PASSWORD)
    page = http.get(reverse("review-wellness"))
    assert page.status_code == 200
    assert "Graphic violence" in page.content.decode()

    http.post(reverse("review-wellness"), {"form": "category", "name": "Self-harm", "daily_cap": "25"})

    assert ExposureCategory.objects.get(slug="self-harm").daily_cap == 25


@pytest.mark.parametrize("cap", [0, -1, 10_001, 10**30])
def test_a_cap_out_of_bounds_is_refused_by_the_service(ops_manager: User, cap: int):
    with pytest.raises(ApplicationError) as refused:
        exposure_category_save(actor=ops_manager, slug="gore", name="Gore", daily_cap=cap)

    assert refused.value.field == "daily_cap"
    assert not ExposureCategory.objects.filter(slug="gore").exists()
    assert not AuditLog.objects.filter(action="exposure_category.save").exists()
