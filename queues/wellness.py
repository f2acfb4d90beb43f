"""Reviewer wellness: daily exposure caps per sensitive category, break reminders, display preferences.

Exposure is counted in items *opened* (claimed) and not skipped: skipping is how a reviewer steps away from
an item, and counting it would teach them to push through instead. A stretch of review is continuous while the
reviewer's acts (claims, decisions, skips) are less than ``BREAK_GAP`` apart; a longer pause is a break and
starts a new stretch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.localday import today_start
from ops_platform.core.models import ReviewerProfile, User
from ops_platform.core.services import audit_record
from queues.models import ExposureCategory, ItemEvent, Queue

# A pause this long counts as a break: the next act starts a new stretch of continuous review.
BREAK_GAP = timedelta(minutes=10)
# The longest stretch the reminder looks back over; nobody reviews twelve hours without a ten-minute pause.
STRETCH_LOOKBACK = timedelta(hours=12)


class ExposureCapReached(ApplicationError):
    status_code = 409
    code = "exposure_cap_reached"

    def __init__(self, category: ExposureCategory, opened: int):
        super().__init__(
            f"You have opened {opened} {category.name} items today, the daily cap of {category.daily_cap}. "
            "Other queues are open to you; this one opens again tomorrow.",
            field="queue",
        )
        self.category = category


def exposure_opened(*, since: datetime) -> QuerySet[ItemEvent]:
    """Claims in capped queues since ``since`` that count toward exposure: those the reviewer did not skip."""
    skipped = ItemEvent.objects.filter(
        item=OuterRef("item"), actor=OuterRef("actor"), event="released", at__gte=OuterRef("at")
    )
    return ItemEvent.objects.filter(event="claimed", at__gte=since, queue__exposure_category__isnull=False).exclude(
        Exists(skipped)
    )


def exposure_today(user: User, *, now: datetime | None = None) -> dict[int, int]:
    """Items this reviewer opened today and did not skip, per exposure category id."""
    now = now or timezone.now()
    rows = (
        exposure_opened(since=today_start(now))
        .filter(actor=user)
        .values_list("queue__exposure_category")
        .annotate(n=Count("pk"))
        .values_list("queue__exposure_category", "n")
    )
    return {category_id: n for category_id, n in rows}


def exposure_guard(queue: Queue, actor: User, *, now: datetime | None = None) -> None:
    """Refuse a new item from a capped queue once the reviewer reached the day's cap for its category."""
    if queue.exposure_category_id is None:
        return
    # Read afresh: a cap raised a minute ago applies to the next claim, whatever the caller holds.
    category = ExposureCategory.objects.get(pk=queue.exposure_category_id)
    opened = exposure_today(actor, now=now).get(category.pk, 0)
    if opened >= category.daily_cap:
        raise ExposureCapReached(category, opened)


@dataclass(frozen=True)
class Stretch:
    started_at: datetime
    length: timedelta
    remind_after: timedelta | None  # None: the reviewer turned the reminder off

    @property
    def break_due(self) -> bool:
        return self.remind_after is not None and self.length >= self.remind_after

    @property
    def minutes(self) -> int:
        return int(self.length.total_seconds() // 60)


def review_stretch(user: User, *, now: datetime | None = None) -> Stretch | None:
    """The reviewer's current stretch of continuous review, or None when they are rested."""
    now = now or timezone.now()
    times = list(
        ItemEvent.objects.filter(actor=user, at__gte=now - STRETCH_LOOKBACK, at__lte=now)
        .order_by("-at")
        .values_list("at", flat=True)[:2_000]
    )
    if not times or now - times[0] >= BREAK_GAP:
        return None
    started = times[0]
    for earlier in times[1:]:
        if started - earlier >= BREAK_GAP:
            break
        started = earlier
    profile = ReviewerProfile.objects.filter(user=user).first()
    minutes = profile.break_reminder_minutes if profile else 50
    return Stretch(started, now - started, timedelta(minutes=minutes) if minutes else None)


# --- settings people change ---------------------------------------------------------------------------

# Far above what anyone opens in a day; a cap beyond it is a typo, not a policy.
MAX_DAILY_CAP = 10_000


@transaction.atomic
def exposure_category_save(*, actor: User, slug: str, name: str, daily_cap: int, reason: str = "") -> ExposureCategory:
    """Create a category or change its cap (ops managers); audited with the cap before and after."""
    if daily_cap < 1:
        raise ApplicationError("A daily cap is at least 1 item; retire the category instead.", field="daily_cap")
    if daily_cap > MAX_DAILY_CAP:
        raise ApplicationError(f"A daily cap is at most {MAX_DAILY_CAP} items.", field="daily_cap")
    if not name.strip():
        raise ApplicationError("Name the category.", field="name")
    category = ExposureCategory.objects.select_for_update().filter(slug=slug).first()
    before = {"name": category.name, "daily_cap": category.daily_cap} if category else None
    if category is None:
        category = ExposureCategory.objects.create(slug=slug, name=name.strip(), daily_cap=daily_cap)
    else:
        category.name, category.daily_cap = name.strip(), daily_cap
        category.save(update_fields=["name", "daily_cap"])
    audit_record(
        actor=actor,
        action="exposure_category.save",
        target=category,
        before=before,
        after={"name": category.name, "daily_cap": category.daily_cap},
        reason=reason,
    )
    return category


@transaction.atomic
def queue_exposure_set(*, actor: User, queue: Queue, category: ExposureCategory | None) -> Queue:
    """Put a queue under a category's cap (which also marks it sensitive), or take it out."""
    before = {"exposure_category": queue.exposure_category.slug if queue.exposure_category else None}
    queue.exposure_category = category
    if category is not None:
        queue.is_sensitive = True
    queue.save(update_fields=["exposure_category", "is_sensitive"])
    audit_record(
        actor=actor,
        action="queue.exposure_set",
        target=queue,
        before=before,
        after={"exposure_category": category.slug if category else None, "is_sensitive": queue.is_sensitive},
    )
    return queue


MAX_BREAK_MINUTES = 8 * 60


@transaction.atomic
def preferences_save(
    *, actor: User, blur_media: bool, greyscale_media: bool, break_reminder_minutes: int
) -> ReviewerProfile:
    """A reviewer's own display and break preferences (0 minutes turns the reminder off)."""
    if not 0 <= break_reminder_minutes <= MAX_BREAK_MINUTES:
        raise ApplicationError(
            f"A break reminder is between 0 (off) and {MAX_BREAK_MINUTES} minutes.", field="break_reminder_minutes"
        )
    profile, _ = ReviewerProfile.objects.select_for_update().get_or_create(user=actor)
    fields = ("blur_media", "greyscale_media", "break_reminder_minutes")
    before = {f: getattr(profile, f) for f in fields}
    profile.blur_media, profile.greyscale_media = blur_media, greyscale_media
    profile.break_reminder_minutes = break_reminder_minutes
    profile.save(update_fields=list(fields))
    audit_record(
        actor=actor,
        action="reviewer.preferences",
        target=profile,
        before=before,
        after={f: getattr(profile, f) for f in fields},
    )
    return profile
