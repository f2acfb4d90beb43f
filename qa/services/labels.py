"""Labels made outside the platform (a vendor's own tool, a crowd platform, a policy team's golden set), imported
in batches by QA as ground truth for items or as a calibration session's ratings, each kept with its provenance:
who labelled it (as the source system names them), when, and in which system.

A row names its item by the platform's id (``item_id``) or as the integrating service knows it (``item_source``
and ``external_id``, the pair intake was given), never both. A batch is all or nothing: every row is checked before
anything is written, and the first bad row is refused by its index (``labels[7].external_id``). Calibration ratings
go through ``rating_submit`` as the named participant, so they meet every check a rating from the page meets (open
session, a participant, one rating each, final).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict
from ops_platform.core.models import ApiClient, Policy, User
from ops_platform.core.services import audit_record
from qa.models import CalibrationItem, CalibrationSession, ImportedLabel, LabelImport, LabelTarget
from qa.services.calibration import rating_submit
from qa.services.review import require_qa
from queues.models import GroundTruth, GroundTruthOrigin, ReviewItem

MAX_LABELS = 5_000
# Clocks of other systems drift: a label up to this far in the future is taken as made now.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class ExternalLabel:
    """One label as the source system made it. The item: ``item_id``, or ``item_source`` and ``external_id``.
    ``participant``: for calibration, the session participant the rating is recorded for."""

    item_id: int | None
    rater: str
    labelled_at: datetime
    is_violation: bool
    policy: Policy | None
    participant: User | None = None
    rationale: str = ""
    item_source: str = ""
    external_id: str = ""


def _row_error(
    index: int, field: str, message: str, kind: type[ApplicationError] = ApplicationError
) -> ApplicationError:
    return kind(f"Label {index}: {message}", field=f"labels[{index}].{field}")


def _item_refs(labels: Sequence[ExternalLabel]) -> tuple[set[int], dict[tuple[str, str], int]]:
    """The real items the rows name: the ids that exist, and the id of each (source, external id) found."""
    by_ref: dict[str, set[str]] = {}
    for label in labels:
        if label.item_id is None and label.item_source and label.external_id:
            by_ref.setdefault(label.item_source, set()).add(label.external_id)
    real = ReviewItem.objects.filter(is_golden=False)
    refs: dict[tuple[str, str], int] = {}
    for source, external_ids in by_ref.items():
        found = real.filter(source=source, external_id__in=external_ids).values_list("external_id", "pk")
        refs.update(((source, external_id), pk) for external_id, pk in found)
    ids = set(real.filter(pk__in={x.item_id for x in labels if x.item_id}).values_list("pk", flat=True))
    return ids, refs


def _item_of(i: int, label: ExternalLabel, ids: set[int], refs: dict[tuple[str, str], int]) -> int:
    if label.item_id is not None:
        if label.item_source or label.external_id:
            raise _row_error(i, "item", "name the item by its id or by its source and external id, not both.")
        if label.item_id not in ids:
            raise _row_error(i, "item", f"no review item {label.item_id}.")
        return label.item_id
    for field, value in (("item_source", label.item_source), ("external_id", label.external_id)):
        if not value:
            raise _row_error(i, field, "name the item by its id, or by its source and external id.")
    pk = refs.get((label.item_source, label.external_id))
    if pk is None:
        # The row's own reference is named back (the caller's ids), never anything of the content.
        raise _row_error(i, "external_id", f"no item '{label.external_id}' from '{label.item_source}'.")
    return pk


def _rows_check(labels: Sequence[ExternalLabel], *, now: datetime) -> list[int]:
    """What every row needs whatever the target: an item that exists, a rater, a time, a policy for a violation;
    returns each row's item id."""
    ids, refs = _item_refs(labels)
    item_ids = []
    for i, label in enumerate(labels):
        item_ids.append(_item_of(i, label, ids, refs))
        if not label.rater.strip():
            raise _row_error(i, "rater", "say who made the label (the rater as the source system names them).")
        if label.labelled_at > now + CLOCK_SKEW:
            raise _row_error(i, "labelled_at", "a label cannot be made in the future.")
        if label.is_violation and label.policy is None:
            raise _row_error(i, "policy", "a violation needs the policy it violates.")
        if label.policy is not None and not label.policy.is_active:
            raise _row_error(i, "policy", f"policy '{label.policy.slug}' is retired.")
    return item_ids


def _calibration_rows(
    session: CalibrationSession, labels: Sequence[ExternalLabel], item_ids: Sequence[int]
) -> list[CalibrationItem]:
    """Each row's session item; refuses items outside the session, non-participants and a second rating."""
    if session.closed_at is not None:
        raise Conflict("This session is closed: its ratings are final.", field="session")
    session_items = {
        si.item_id: si
        for si in CalibrationItem.objects.select_related("session").filter(session=session, item_id__in=set(item_ids))
    }
    participants = set(session.participants.values_list("pk", flat=True))
    seen: set[tuple[int, int]] = set()
    out = []
    for i, (label, item_id) in enumerate(zip(labels, item_ids, strict=True)):
        session_item = session_items.get(item_id)
        if session_item is None:
            field = "item" if label.item_id is not None else "external_id"
            raise _row_error(i, field, f"item {item_id} is not in this session.")
        if label.participant is None:
            raise _row_error(i, "participant", "name the session participant the rating is recorded for.")
        if label.participant.pk not in participants:
            raise _row_error(i, "participant", f"'{label.participant.get_username()}' is not a participant.")
        if (session_item.pk, label.participant.pk) in seen:
            raise _row_error(i, "item", "a second rating of this item by this participant in the batch.", Conflict)
        seen.add((session_item.pk, label.participant.pk))
        out.append(session_item)
    return out


@transaction.atomic
def labels_import(
    *,
    actor: User,
    target: str,
    source: str,
    labels: Sequence[ExternalLabel],
    session: CalibrationSession | None = None,
    client: ApiClient | None = None,
    at: datetime | None = None,
) -> LabelImport:
    """Import a batch of external labels as ground truth (origin ``imported``) or as ``session``'s ratings."""
    require_qa(actor)
    now = at or timezone.now()
    if not source.strip():
        raise ApplicationError("Name the system the labels come from.", field="source")
    if not labels:
        raise ApplicationError("Send at least one label.", field="labels")
    if len(labels) > MAX_LABELS:
        raise ApplicationError(f"At most {MAX_LABELS} labels per batch.", field="labels")
    if target not in LabelTarget.values:
        raise ApplicationError(f"Labels are imported as {' or '.join(LabelTarget.values)}.", field="target")
    item_ids = _rows_check(labels, now=now)
    session_items: list[CalibrationItem] = []
    if target == LabelTarget.CALIBRATION:
        if session is None:
            raise ApplicationError("Calibration ratings belong to a session: name it.", field="session")
        session_items = _calibration_rows(session, labels, item_ids)
    elif session is not None:
        raise ApplicationError("Ground truth belongs to items, not to a session.", field="session")
    batch = LabelImport.objects.create(
        target=target,
        source=source.strip()[:100],
        session=session,
        imported_by=actor,
        client=client,
        imported_at=now,
        count=len(labels),
    )
    rows = [
        ImportedLabel(
            batch=batch,
            item_id=item_id,
            rater=label.rater.strip()[:200],
            labelled_at=min(label.labelled_at, now),
            is_violation=label.is_violation,
            policy=label.policy if label.is_violation else None,
        )
        for label, item_id in zip(labels, item_ids, strict=True)
    ]
    if target == LabelTarget.GROUND_TRUTH:
        truths = GroundTruth.objects.bulk_create(
            GroundTruth(
                item_id=row.item_id,
                origin=GroundTruthOrigin.IMPORTED,
                is_violation=row.is_violation,
                policy=row.policy,
                recorded_by=actor,
                recorded_at=now,
            )
            for row in rows
        )
        for row, truth in zip(rows, truths, strict=True):
            row.ground_truth = truth
    else:
        for i, (row, label, session_item) in enumerate(zip(rows, labels, session_items, strict=True)):
            assert label.participant is not None
            try:
                row.rating = rating_submit(
                    session_item=session_item,
                    actor=label.participant,
                    is_violation=label.is_violation,
                    policy=label.policy,
                    rationale=label.rationale,
                    at=row.labelled_at,
                )
            except ApplicationError as exc:
                raise _row_error(i, exc.field or "item", exc.message, type(exc)) from None
    ImportedLabel.objects.bulk_create(rows)
    audit_record(
        actor=actor,
        action="qa.labels_import",
        target=batch,
        after={
            "target": target,
            "source": batch.source,
            "count": len(rows),
            "session": session.pk if session else None,
        },
    )
    return batch
