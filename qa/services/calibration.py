"""Calibration sessions: every participant decides the same items independently, then the group goes through
a per-item, per-person agreement report together (``qa.selectors.session_report_page``). Nobody sees another's
answers before the session closes; closing computes the report's figures once, since ratings are final then."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict, NotPermitted
from ops_platform.core.models import Policy, User
from ops_platform.core.params import MAX_ID
from ops_platform.core.services import audit_record
from qa.models import CalibrationItem, CalibrationRating, CalibrationSession
from qa.selectors import session_figures
from queues.models import ReviewItem


@transaction.atomic
def session_create(
    *, actor: User, name: str, item_ids: Sequence[int], participants: Sequence[User]
) -> CalibrationSession:
    if not actor.has_perm("core.perform_qa"):
        raise NotPermitted("Calibration sessions are run by QA.")
    if not name.strip():
        raise ApplicationError("Name the session.", field="name")
    if not all(1 <= pk <= MAX_ID for pk in item_ids):
        raise ApplicationError("Item ids are ids of items.", field="item_ids")
    items = list(ReviewItem.objects.filter(pk__in=item_ids, is_golden=False).order_by("pk"))
    if len(items) < 2:
        raise ApplicationError("A calibration session needs at least two items.", field="items")
    if len(set(participants)) < 2:
        raise ApplicationError("A calibration session needs at least two participants.", field="participants")
    session = CalibrationSession.objects.create(name=name.strip()[:200], created_by=actor)
    session.participants.set(participants)
    order = {pk: i for i, pk in enumerate(dict.fromkeys(item_ids))}
    CalibrationItem.objects.bulk_create(
        CalibrationItem(session=session, item=item, position=order[item.pk] + 1) for item in items
    )
    after = {"items": [i.pk for i in items], "participants": sorted(p.pk for p in participants)}
    audit_record(actor=actor, action="qa.calibration_create", target=session, after=after)
    return session


@transaction.atomic
def rating_submit(
    *,
    session_item: CalibrationItem,
    actor: User,
    is_violation: bool,
    policy: Policy | None,
    rationale: str = "",
    at: datetime | None = None,
) -> CalibrationRating:
    session = session_item.session
    # Locked against session_close: the figures it stores must count every rating, so none lands after it.
    closed_at = CalibrationSession.objects.select_for_update().values_list("closed_at", flat=True).get(pk=session.pk)
    if closed_at is not None:
        raise Conflict("This session is closed.", field="session")
    if not session.participants.filter(pk=actor.pk).exists():
        raise NotPermitted("You are not a participant of this session.")
    if is_violation and policy is None:
        raise ApplicationError("A violation needs the policy it violates.", field="policy")
    try:
        with transaction.atomic():
            return CalibrationRating.objects.create(
                session_item=session_item,
                participant=actor,
                is_violation=is_violation,
                policy=policy if is_violation else None,
                rationale=rationale[:5000],
                rated_at=at or timezone.now(),
            )
    except IntegrityError:
        raise Conflict("You already rated this item; ratings are final.", field="item") from None


MAX_RATINGS = 5_000


@dataclass(frozen=True)
class RatingRow:
    """One rating of a batch: the session's item (by the review item's id) and the participant's answer."""

    item_id: int
    is_violation: bool
    policy: Policy | None
    rationale: str = ""


@transaction.atomic
def ratings_submit(
    *, session: CalibrationSession, actor: User, ratings: Sequence[RatingRow], at: datetime | None = None
) -> list[CalibrationRating]:
    """A participant's ratings of many items at once, with every check ``rating_submit`` makes, all or nothing: the
    whole batch is checked before anything is written and the first bad row is refused by its index
    (``ratings[7].item``): an item outside the session (400), a violation without a policy (400), an item this
    participant rated before or earlier in the batch (409)."""
    closed_at = CalibrationSession.objects.select_for_update().values_list("closed_at", flat=True).get(pk=session.pk)
    if closed_at is not None:
        raise Conflict("This session is closed.", field="session")
    if not session.participants.filter(pk=actor.pk).exists():
        raise NotPermitted("You are not a participant of this session.")
    if not ratings:
        raise ApplicationError("Send at least one rating.", field="ratings")
    if len(ratings) > MAX_RATINGS:
        raise ApplicationError(f"At most {MAX_RATINGS} ratings per call.", field="ratings")
    wanted = {r.item_id for r in ratings}
    session_items = dict(
        CalibrationItem.objects.filter(session=session, item_id__in=wanted).values_list("item_id", "pk")
    )
    rated = set(
        CalibrationRating.objects.filter(session_item_id__in=session_items.values(), participant=actor).values_list(
            "session_item_id", flat=True
        )
    )
    for i, row in enumerate(ratings):
        session_item = session_items.get(row.item_id)
        if session_item is None:
            raise ApplicationError(
                f"Rating {i}: item {row.item_id} is not in this session.", field=f"ratings[{i}].item"
            )
        if row.is_violation and row.policy is None:
            raise ApplicationError(
                f"Rating {i}: a violation needs the policy it violates.", field=f"ratings[{i}].policy"
            )
        if session_item in rated:
            raise Conflict(
                f"Rating {i}: you already rated item {row.item_id}; ratings are final.", field=f"ratings[{i}].item"
            )
        rated.add(session_item)
    now = at or timezone.now()
    try:
        with transaction.atomic():
            return CalibrationRating.objects.bulk_create(
                CalibrationRating(
                    session_item_id=session_items[row.item_id],
                    participant=actor,
                    is_violation=row.is_violation,
                    policy=row.policy if row.is_violation else None,
                    rationale=row.rationale[:5000],
                    rated_at=now,
                )
                for row in ratings
            )
    except IntegrityError:  # a single rating of one of these items landed meanwhile
        raise Conflict("One of these items was rated meanwhile; ratings are final.", field="ratings") from None


@transaction.atomic
def session_close(*, session: CalibrationSession, actor: User) -> CalibrationSession:
    if not actor.has_perm("core.perform_qa"):
        raise NotPermitted("Calibration sessions are closed by QA.")
    session = CalibrationSession.objects.select_for_update().get(pk=session.pk)
    if session.closed_at is None:
        session.closed_at = timezone.now()
        session.save(update_fields=["closed_at"])
        session.figures = session_figures(session)
        session.save(update_fields=["figures"])
        audit_record(actor=actor, action="qa.calibration_close", target=session)
    return session
