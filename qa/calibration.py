"""Calibration sessions: every participant decides the same items independently, then the group goes through
a per-item, per-person agreement report together. Nobody sees another's answers before the session closes."""

from __future__ import annotations

from collections import Counter
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
from qa.statistics import Estimate, krippendorff_alpha, percent_agreement, rating_matrix
from queues.models import ReviewItem

NO_VIOLATION = "no violation"


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
    if session.closed_at is not None:
        raise Conflict("This session is closed.", field="session")
    if not session.participants.filter(pk=actor.pk).exists():
        raise NotPermitted("You are not a participant of this session.")
    if is_violation and policy is None:
        raise ApplicationError("A violation needs the policy it violates.", field="policy")
    try:
        with transaction.atomic():
            return CalibrationRating.objects.create(
                session_item=session_item, participant=actor, is_violation=is_violation,
                policy=policy if is_violation else None, rationale=rationale[:5000], rated_at=at or timezone.now(),
            )  # fmt: skip
    except IntegrityError:
        raise Conflict("You already rated this item; ratings are final.", field="item") from None


@transaction.atomic
def session_close(*, session: CalibrationSession, actor: User) -> CalibrationSession:
    if not actor.has_perm("core.perform_qa"):
        raise NotPermitted("Calibration sessions are closed by QA.")
    if session.closed_at is None:
        session.closed_at = timezone.now()
        session.save(update_fields=["closed_at"])
        audit_record(actor=actor, action="qa.calibration_close", target=session)
    return session


def rating_label(rating: CalibrationRating) -> str:
    return rating.policy.slug if rating.is_violation and rating.policy else NO_VIOLATION


@dataclass(frozen=True)
class ItemRow:
    session_item: CalibrationItem
    labels: dict[int, str]  # participant id -> label
    majority: str | None  # None on a tie
    agreement: float | None  # share of rater pairs on this item that agree


@dataclass(frozen=True)
class PersonRow:
    participant: User
    rated: int
    with_majority: int

    @property
    def share(self) -> float | None:
        return self.with_majority / self.rated if self.rated else None


@dataclass(frozen=True)
class SessionReport:
    items: list[ItemRow]
    people: list[PersonRow]
    alpha: Estimate | None
    agreement: Estimate | None


def session_report(session: CalibrationSession) -> SessionReport:
    """Per item: everyone's label, the majority, pairwise agreement; per person: agreement with the majority;
    overall: Krippendorff's alpha (missing ratings allowed) and percent agreement, with intervals."""
    participants = list(session.participants.order_by("username"))
    session_items = list(session.session_items.select_related("item").prefetch_related("ratings__policy"))
    rows: list[ItemRow] = []
    triples: list[tuple[int, int, str]] = []
    tally = {p.pk: [0, 0] for p in participants}
    for si in session_items:
        labels = {r.participant_id: rating_label(r) for r in si.ratings.all()}
        counts = Counter(labels.values()).most_common()
        majority = counts[0][0] if counts and (len(counts) == 1 or counts[0][1] > counts[1][1]) else None
        n = len(labels)
        pairs = n * (n - 1) / 2
        agreeing = sum(c * (c - 1) / 2 for _, c in counts)
        rows.append(ItemRow(si, labels, majority, agreeing / pairs if pairs else None))
        for person, label in labels.items():
            triples.append((si.pk, person, label))
            if person in tally and majority is not None:
                tally[person][0] += 1
                tally[person][1] += label == majority
    people = [PersonRow(p, tally[p.pk][0], tally[p.pk][1]) for p in participants]
    alpha = agreement = None
    pairable = sum(1 for row in rows if len(row.labels) >= 2)
    if pairable >= 2:
        matrix, _ = rating_matrix(triples)
        alpha = krippendorff_alpha(matrix, n_resamples=500)
        agreement = percent_agreement(matrix, n_resamples=500)
    return SessionReport(rows, people, alpha, agreement)
