"""Intake writes: items and appeals stored once each (by source and external id), the one way an item enters and
is handed to triage, triage itself (score, then route), the un-triaged sweeper, and dead letters. Domain results and
errors only: HTTP statuses and ``Idempotency-Key`` replays belong to the API (``routing/intake/api.py``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import KombuError

from ops_platform.core.errors import ApplicationError, Conflict, NotFound
from ops_platform.core.models import ApiClient, User
from ops_platform.core.services import audit_record
from ops_platform.core.tracing import tracer
from queues.accounts.services import account_reports_record, accounts_ensure
from queues.models import ItemKind, ItemState, ReviewItem
from queues.selectors import items_load
from routing.intake.models import DeadLetter
from routing.intake.sql import items_insert_new
from routing.rules.apply import items_route
from routing.rules.features import TRIAGE_FIELDS
from routing.scoring.guards import incident_raise
from routing.scoring.models import IncidentKind
from routing.scoring.pipeline import items_score

logger = logging.getLogger(__name__)

TRIAGE_TASK = "routing.tasks.items_triage_task"

# How far ahead of this server's clock a client's created_at may be: their clocks drift a little.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class IngestResult:
    index: int
    id: int
    external_id: str
    created: bool
    state: str


def created_at_problem(value: datetime, *, now: datetime) -> str | None:
    """Why a client's content-creation time is implausible (None: it is kept). Bounded because a client once
    could put an item first in every queue with ``0001-01-01``; it no longer orders anything, but stays sane."""
    if value > now + CLOCK_SKEW:
        return "Is in the future."
    oldest = settings.INTAKE_CREATED_AT_MAX_AGE
    if value < now - oldest:
        return f"Is more than {oldest.days} days ago (INTAKE_CREATED_AT_MAX_AGE_DAYS)."
    return None


def items_ingest(
    *, client: ApiClient, items: Sequence[dict[str, Any]], at: datetime | None = None
) -> list[IngestResult]:
    """Store validated items once each; an item already held (same source and external id) is returned.

    One ``INSERT … ON CONFLICT DO NOTHING RETURNING`` makes this exact under concurrent duplicates:
    the rows it returns are the ones this call created, every other row already existed. The triage
    hand-off is sent only after commit, so a worker never sees an item that is not there yet.

    ``received_at`` is always this server's clock (``at``, default now): queue order and due times follow
    it, so no client timestamp can move an item ahead. The client's ``created_at`` is kept, bounded.
    """
    now = at or timezone.now()
    # Field values, not ReviewItem instances: the bulk insert fills in the defaults (ops_platform.core.bulk).
    rows: list[dict[str, Any]] = []
    # The plausible window once per batch: the per-item check reads settings only for a time outside it.
    earliest, latest = now - settings.INTAKE_CREATED_AT_MAX_AGE, now + CLOCK_SKEW
    for index, data in enumerate(items):
        reasons = data.get("report_reasons", [])
        created_at = data.get("created_at")
        if created_at is not None and not earliest <= created_at <= latest:
            problem = created_at_problem(created_at, now=now)
            if problem:
                raise ApplicationError(
                    f"Item {index}: created_at {problem[0].lower()}{problem[1:]}", field="created_at"
                )
        rows.append(
            {
                "source": client.source,
                "external_id": data["external_id"],
                "kind": data.get("kind", ItemKind.CONTENT),
                "text": data.get("text", ""),
                "media_urls": data.get("media_urls", []),
                "author_ref": data.get("author_ref", ""),
                "surface": data.get("surface", ""),
                "language": data.get("language", ""),
                "metadata": data.get("metadata", {}),
                "report_reasons": reasons,
                "report_count": len(reasons),
                "received_at": now,
                "created_at": created_at,
            }
        )
    reports = {
        data["external_id"]: data
        for data in items
        if data.get("kind") == ItemKind.USER_REPORT and (data.get("subject") == "account" or data.get("reporter_ref"))
    }
    with transaction.atomic():
        created = items_receive(rows=rows)
        if reports:
            account_reports_record(
                reports=[
                    {
                        "item_id": created[external_id],
                        "source": client.source,
                        "subject_ref": data.get("author_ref", ""),
                        "reporter_ref": data.get("reporter_ref", ""),
                        "about_account": data.get("subject") == "account",
                    }
                    for external_id, data in reports.items()
                    if external_id in created
                ],
                at=now,
            )
        # Rows this call created are 'received' (triage starts after commit); look up only the rest.
        known: dict[str, tuple[int, str]] = {ext_id: (pk, ItemState.RECEIVED) for ext_id, pk in created.items()}
        already_held = {r["external_id"] for r in rows} - created.keys()
        if already_held:
            known.update(
                (external_id, (pk, state))
                for external_id, pk, state in ReviewItem.objects.filter(
                    source=client.source, external_id__in=already_held
                ).values_list("external_id", "pk", "state")
            )
    results = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        external_id = row["external_id"]
        pk, state = known[external_id]
        # A batch may name the same external id twice: only its first mention is the one created.
        was_created = external_id in created and external_id not in seen
        seen.add(external_id)
        results.append(IngestResult(index, pk, external_id, was_created, state))
    return results


class AppealRefused(Conflict):
    code = "appeal_refused"


def appeal_ingest(*, client: ApiClient, data: dict[str, Any]) -> IngestResult:
    """Store an appeal of a decided item as an item of kind 'appeal', triaged like any other (the appeals
    rule set routes it). Idempotent by (source, external_id), like items; received now, by this server's clock."""
    now = timezone.now()
    created_at = data.get("created_at")
    problem = created_at_problem(created_at, now=now) if created_at is not None else None
    if problem:
        raise ApplicationError(f"created_at {problem[0].lower()}{problem[1:]}", field="created_at")
    # A golden copy carries a client's source but is no item of theirs: it cannot be appealed.
    original = ReviewItem.objects.filter(
        source=client.source, external_id=data["item_external_id"], is_golden=False
    ).first()
    if original is None:
        raise NotFound(f"No item '{data['item_external_id']}' from your source.", field="item_external_id")
    if original.kind == ItemKind.APPEAL:
        raise AppealRefused("An appeal cannot itself be appealed.", field="item_external_id")
    if original.state not in (ItemState.DECIDED, ItemState.AUTO_ACTIONED):
        raise AppealRefused(f"Item '{original.external_id}' has no decision to appeal yet.", field="item_external_id")
    open_appeal = original.appeals.exclude(state=ItemState.DECIDED).exclude(external_id=data["external_id"]).first()
    if open_appeal is not None:
        raise AppealRefused(f"Appeal '{open_appeal.external_id}' of this item is still open.", field="item_external_id")
    row = ReviewItem(
        source=client.source,
        external_id=data["external_id"],
        kind=ItemKind.APPEAL,
        text=data.get("statement", ""),
        author_ref=original.author_ref,
        surface=original.surface,
        language=data.get("language") or original.language,
        appeal_of=original,
        received_at=now,
        created_at=created_at,
    )
    with transaction.atomic():
        created = items_receive(rows=[row])
        if created:
            return IngestResult(0, created[row.external_id], row.external_id, True, ItemState.RECEIVED)
    held = ReviewItem.objects.get(source=client.source, external_id=row.external_id)
    if held.appeal_of_id != original.pk:
        raise Conflict(f"'{row.external_id}' is already used by another item of yours.", field="external_id")
    return IngestResult(0, held.pk, held.external_id, False, held.state)


def items_receive(*, rows: Sequence[ReviewItem] | Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Store new items as 'received' and hand them to triage once committed: the one way an item enters (intake,
    appeals, QA's golden copies). Rows are unsaved items or field values (attnames; defaults fill the rest); a row
    whose (source, external_id) is already held is skipped. Returns external_id -> id of the items created.

    In the caller's transaction when there is one: triage is sent after its commit, so a worker never sees an item
    that is not there yet (nor one rolled back).
    """
    created = items_insert_new(rows)
    if created:
        # Each new item's author has an account (docs/accounts.md): one INSERT … ON CONFLICT DO NOTHING.
        accounts_ensure(rows=rows)
        ids = sorted(created.values())
        transaction.on_commit(lambda: triage_enqueue(ids))
    return created


def triage_enqueue(item_ids: Sequence[int]) -> int:
    """Send items to triage in batches; with the broker unreachable, leave them for the sweeper."""
    sent = 0
    for start in range(0, len(item_ids), settings.TRIAGE_BATCH_SIZE):
        batch = list(item_ids[start : start + settings.TRIAGE_BATCH_SIZE])
        try:
            # By name: tasks.py imports this module, so this module does not import it back.
            current_app.tasks[TRIAGE_TASK].delay(batch)
        except (KombuError, OSError) as exc:
            logger.warning(
                "broker unreachable (%s): %d items left for the un-triaged sweeper",
                type(exc).__name__,
                len(item_ids) - sent,
            )
            break
        sent += len(batch)
    return sent


def items_triage(*, item_ids: Sequence[int]) -> list[int]:
    """Score received items, then route them by the active rule sets (``routing.rules.apply``);
    items already triaged are left as they are (and are not scored again)."""
    # Loaded once for both steps, by id alone and the state checked here (see queues.services.received_locked on
    # the partial index); routing checks the state again under its lock.
    received = [item for item in items_load(item_ids, fields=TRIAGE_FIELDS) if item.state == ItemState.RECEIVED]
    if not received:
        return []
    with tracer.start_as_current_span("triage.score") as span:
        span.set_attribute("ops.items", len(received))
        items_score(items=received)
    with tracer.start_as_current_span("triage.route") as span:
        routed = items_route(items=received)
        span.set_attribute("ops.items_routed", len(routed))
    return routed


def items_sweep_untriaged(*, older_than: timedelta | None = None, limit: int = 50_000) -> int:
    """Re-send items still 'received' after ``older_than`` (broker outage, killed worker).

    Marks each one with ``triage_requested_at`` so a slow worker's backlog is not re-sent every pass.
    """
    cutoff = timezone.now() - (settings.TRIAGE_SWEEP_AFTER if older_than is None else older_than)
    with transaction.atomic():
        stale = (
            ReviewItem.objects.filter(state=ItemState.RECEIVED, received_at__lt=cutoff)
            .filter(Q(triage_requested_at__isnull=True) | Q(triage_requested_at__lt=cutoff))
            .order_by("received_at")
            .values_list("pk", flat=True)[:limit]
        )
        ids = list(stale)
        if not ids:
            return 0
        ReviewItem.objects.filter(pk__in=ids).update(triage_requested_at=timezone.now())
        transaction.on_commit(lambda: triage_enqueue(ids))
    logger.info("sweeper re-sent %d un-triaged items", len(ids))
    return len(ids)


# --- dead letters ----------------------------------------------------------------------------------


def dead_letter_record(*, task: str, args: list[Any], exc: BaseException, retries: int) -> DeadLetter:
    """Keep a task that failed for good, with its arguments (ids only), so ops can re-drive it."""
    letter = DeadLetter.objects.create(
        task=task, args=args, error_type=type(exc).__name__, error=str(exc)[:500], retries=retries
    )
    incident_raise(IncidentKind.DEAD_LETTER, backend="", message=f"{task} failed after {retries} retries.")
    logger.error("dead letter %s: %s failed after %d retries (%s)", letter.pk, task, retries, type(exc).__name__)
    return letter


def dead_letter_redrive(*, letter: DeadLetter, actor: User | str) -> DeadLetter:
    """Send a dead-lettered task again. Tasks are idempotent, so a re-drive of work done twice is harmless."""
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().get(pk=letter.pk)
        if letter.redriven_at is not None:
            raise Conflict(f"Dead letter {letter.pk} was already re-driven.")
        letter.redriven_at = timezone.now()
        letter.redriven_by = actor.get_username() if isinstance(actor, User) else str(actor)
        letter.save(update_fields=["redriven_at", "redriven_by"])
        audit_record(actor=actor, action="dead_letter.redrive", target=letter, after={"task": letter.task})
        task = current_app.tasks[letter.task]
        transaction.on_commit(lambda: task.apply_async(args=letter.args))
    return letter
