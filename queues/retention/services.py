"""The retention purge, erasure requests and legal holds (docs/retention.md).

Both the purge and an erasure empty an item's content in its row (the row, its decisions and its times stay, so the
figures keep working) and hand each committed batch to the steps the apps registered
(``ops_platform.core.retention``): scores' details, stored media copies, idempotency replays, dead letters, QA's
golden copies, webhook payloads. Nothing here logs or audits content or an erased reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict, NotFound, NotPermitted
from ops_platform.core.models import ApiClient, Policy, User
from ops_platform.core.retention import ContentWipe, content_wipe_run
from ops_platform.core.services import audit_record
from queues.accounts.models import Account, AccountAction, AccountEvent, AccountLabel
from queues.models import ContentPurgeReason, Decision, ItemEvent, ItemState, ReviewItem
from queues.retention.models import Erasure, ErasureState, LegalHold

CLOSED_STATES = [ItemState.DECIDED, ItemState.AUTO_ACTIONED]
# The content fields and what each becomes.
EMPTY_CONTENT: dict[str, Any] = {"text": "", "media_urls": [], "metadata": {}, "report_reasons": []}
MAX_ERASURE_ITEM_IDS = 10_000


# --- legal holds --------------------------------------------------------------------------------------------------


def _hold_manager(actor: User) -> None:
    if not actor.has_perm("core.manage_platform"):
        raise NotPermitted("Only an admin (manage platform) may set or clear a legal hold.")


def legal_hold_set(*, actor: User, reason: str, item_id: int | None = None, account_id: int | None = None) -> LegalHold:
    """Hold an item, or every item of an account: no purge, no erasure, until cleared. Audited."""
    _hold_manager(actor)
    reason = reason.strip()
    if not reason:
        raise ApplicationError("Say what the hold is for.", field="reason")
    if len(reason) > 500:
        raise ApplicationError("At most 500 characters.", field="reason")
    if (item_id is None) == (account_id is None):
        raise ApplicationError("Hold either an item or an account.", field="item_id")
    with transaction.atomic():
        # Lock the held row: a purge or erasure batch that holds it finishes first, one that comes later sees the hold.
        if item_id is not None:
            locked = ReviewItem.objects.select_for_update().filter(pk=item_id).values_list("pk", flat=True)
            if not list(locked):
                raise NotFound(f"No item {item_id}.", field="item_id")
        else:
            account = Account.objects.select_for_update().filter(pk=account_id or 0).values_list("pk", flat=True)
            if not list(account):
                raise NotFound(f"No account {account_id}.", field="account_id")
        hold = LegalHold.objects.create(
            item_id=item_id, account_id=account_id, reason=reason, set_at=timezone.now(), set_by=actor
        )
        audit_record(
            actor=actor,
            action="legal_hold.set",
            target=hold,
            after={"item": item_id, "account": account_id},
            reason=reason,
        )
    return hold


def legal_hold_clear(*, actor: User, hold_id: int, reason: str = "") -> LegalHold:
    _hold_manager(actor)
    with transaction.atomic():
        hold = LegalHold.objects.select_for_update().filter(pk=hold_id).first()
        if hold is None:
            raise NotFound(f"No legal hold {hold_id}.", field="id")
        if hold.cleared_at is not None:
            return hold
        hold.cleared_at = timezone.now()
        hold.cleared_by = actor
        hold.save(update_fields=["cleared_at", "cleared_by"])
        audit_record(
            actor=actor,
            action="legal_hold.cleared",
            target=hold,
            before={"item": hold.item_id, "account": hold.account_id},
            reason=reason.strip()[:500],
        )
    return hold


def _holds_on(items: QuerySet[ReviewItem], account: Account | None) -> list[int]:
    """Ids of the holds in force on any of ``items`` or their authors' accounts, or on ``account``."""
    active = LegalHold.objects.filter(cleared_at__isnull=True)
    by_item = active.filter(item__in=items.values("pk"))
    authors = Account.objects.filter(
        Exists(items.filter(source=OuterRef("source"), author_ref=OuterRef("ref")).values("pk"))
    )
    by_account = active.filter(account__in=authors)
    if account is not None:
        by_account = by_account | active.filter(account=account)
    return sorted(set(by_item.values_list("pk", flat=True)) | set(by_account.values_list("pk", flat=True)))


def _not_held() -> Q:
    active = LegalHold.objects.filter(cleared_at__isnull=True)
    return ~Q(Exists(active.filter(item=OuterRef("pk")))) & ~Q(
        Exists(active.filter(account__source=OuterRef("source"), account__ref=OuterRef("author_ref")))
    )


# --- the retention purge ------------------------------------------------------------------------------------------


@dataclass
class PurgeResult:
    items: int = 0
    batches: int = 0
    rationales: int = 0
    wiped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "batches": self.batches, "rationales": self.rationales, "wiped": self.wiped}


def _retention_groups(attribute: str, default: int) -> list[tuple[int, list[int] | None, list[int]]]:
    """(days, the policies that keep them, policies to leave out): one group per distinct retention, the default
    group (policies None) taking every item whose final decision is under no policy with its own figure."""
    custom: dict[int, list[int]] = {}
    for pk, days in Policy.objects.filter(**{f"{attribute}__isnull": False}).values_list("pk", attribute):
        custom.setdefault(days, []).append(pk)
    own = [pk for pks in custom.values() for pk in pks]
    groups: list[tuple[int, list[int] | None, list[int]]] = [(default, None, own)]
    groups += [(days, pks, []) for days, pks in sorted(custom.items())]
    return groups


def _content_due(*, now: datetime) -> Iterable[QuerySet[ReviewItem]]:
    """One query per retention group: decided items past it, not held, with no appeal still open."""
    final = Decision.objects.filter(item=OuterRef("pk"), is_final=True, superseded_by__isnull=True)
    open_appeal = ReviewItem.objects.filter(appeal_of=OuterRef("pk")).exclude(state__in=CLOSED_STATES)
    for days, policies, leave_out in _retention_groups("content_retention_days", settings.CONTENT_RETENTION_DAYS):
        due = ReviewItem.objects.filter(
            state__in=CLOSED_STATES, content_purged_at__isnull=True, decided_at__lt=now - timedelta(days=days)
        )
        if policies is None:
            if leave_out:
                due = due.exclude(Exists(final.filter(policy_id__any=leave_out)))
        else:
            due = due.filter(Exists(final.filter(policy_id__any=policies)))
        yield due.filter(_not_held()).exclude(Exists(open_appeal)).order_by("decided_at")


def items_content_purge(
    *, now: datetime | None = None, batch_size: int | None = None, max_batches: int | None = None
) -> PurgeResult:
    """Empty the content of items past their policy's retention, one committed batch at a time (the periodic job).

    Intake never touches decided items, so the purge and intake do not wait for each other; locking the batch's
    rows before the UPDATE would write every row twice for nothing (the UPDATE locks them itself).
    """
    now = now or timezone.now()
    size = batch_size or settings.PURGE_BATCH_SIZE
    result = PurgeResult()
    for due in _content_due(now=now):
        while max_batches is None or result.batches < max_batches:
            with transaction.atomic():
                ids = list(due.values_list("pk", flat=True)[:size])
                if not ids:
                    break
                ReviewItem.objects.filter(pk__any=ids, content_purged_at__isnull=True).update(
                    **EMPTY_CONTENT, content_purged_at=now, content_purge_reason=ContentPurgeReason.RETENTION
                )
                for step, changed in content_wipe_run(ContentWipe(ids)).items():
                    result.wiped[step] = result.wiped.get(step, 0) + changed
            result.items += len(ids)
            result.batches += 1
    result.rationales = decision_rationales_purge(now=now, batch_size=size)
    return result


def decision_rationales_purge(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    """Past the (longer) record retention, decisions lose their free-text rationale, which may quote the content;
    the decision itself (who, when, labels, policy, action) stays for the figures."""
    now = now or timezone.now()
    size = batch_size or settings.PURGE_BATCH_SIZE
    emptied = 0
    for days, policies, leave_out in _retention_groups("record_retention_days", settings.RECORD_RETENTION_DAYS):
        due = Decision.objects.filter(decided_at__lt=now - timedelta(days=days)).exclude(rationale="")
        due = due.exclude(policy_id__any=leave_out) if policies is None else due.filter(policy_id__any=policies)
        due = due.exclude(Exists(LegalHold.objects.filter(cleared_at__isnull=True, item=OuterRef("item_id")))).order_by(
            "pk"
        )
        while True:
            with transaction.atomic():
                ids = list(due.values_list("pk", flat=True)[:size])
                if not ids:
                    break
                emptied += Decision.objects.filter(pk__any=ids).update(rationale="")
    return emptied


# --- erasure ------------------------------------------------------------------------------------------------------


class LegalHoldConflict(Conflict):
    code = "legal_hold"

    def __init__(self, holds: list[int], *, field: str):
        super().__init__(
            f"Refused: legal hold {', '.join(str(h) for h in holds[:20])} is in force on these items or their "
            "account. Nothing was erased; ask again once the hold is cleared.",
            field=field,
            extra={"legal_holds": holds},
        )


class IdempotencyKeyReused(ApplicationError):
    status_code = 422  # as intake answers the same mistake
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was used with a different request.", field="Idempotency-Key")


def erasure_request(
    *,
    client: ApiClient,
    account_ref: str | None = None,
    item_ids: list[int] | None = None,
    idempotency_key: str = "",
) -> tuple[Erasure, bool]:
    """Erase an account's items and personal data, or some items' content, of the client's own source.

    Returns the erasure and whether it was made now (False: the same Idempotency-Key came before). Without a key
    a repeat is harmless: what was erased is gone, so it erases nothing more. A legal hold on any item concerned
    or on the account refuses the whole request (409 naming the holds).
    """
    if (account_ref is None) == (item_ids is None):
        raise ApplicationError("Send either account_ref or item_ids.", field="account_ref")
    if idempotency_key:
        if len(idempotency_key) > 200:
            raise ApplicationError("Idempotency-Key must be 1 to 200 characters.", field="Idempotency-Key")
        earlier = Erasure.objects.filter(source=client.source, idempotency_key=idempotency_key).first()
        if earlier is not None:
            if earlier.by_account != (account_ref is not None) or (
                item_ids is not None and sorted(set(item_ids)) != earlier.item_ids
            ):
                raise IdempotencyKeyReused()
            return earlier, False
    account: Account | None = None
    if account_ref is not None:
        if not account_ref or len(account_ref) > 200:
            raise ApplicationError("account_ref must be 1 to 200 characters.", field="account_ref")
        account = Account.objects.filter(source=client.source, ref=account_ref).first()
        items = ReviewItem.objects.filter(source=client.source, author_ref=account_ref)
        field_name = "account_ref"
        wanted: list[int] = []
    else:
        assert item_ids is not None
        wanted = sorted(set(item_ids))
        if not wanted or len(wanted) > MAX_ERASURE_ITEM_IDS:
            raise ApplicationError(f"Send 1 to {MAX_ERASURE_ITEM_IDS} item ids.", field="item_ids")
        # Another source's item does not exist for this client.
        found = set(ReviewItem.objects.filter(source=client.source, pk__any=wanted).values_list("pk", flat=True))
        missing = [pk for pk in wanted if pk not in found]
        if missing:
            shown = ", ".join(str(pk) for pk in missing[:20])
            raise NotFound(f"No item {shown} from your source.", field="item_ids", extra={"missing": missing[:100]})
        # An appeal of an erased item is the author's own words about it: it goes too.
        items = ReviewItem.objects.filter(source=client.source).filter(Q(pk__any=wanted) | Q(appeal_of_id__any=wanted))
        field_name = "item_ids"
    holds = _holds_on(items, account)
    if holds:
        raise LegalHoldConflict(holds, field=field_name)
    try:
        with transaction.atomic():
            erasure = Erasure.objects.create(
                source=client.source,
                idempotency_key=idempotency_key,
                account=account,
                by_account=account_ref is not None,
                item_ids=wanted,
                requested_by=client.name,
                requested_at=timezone.now(),
            )
            audit_record(
                actor=client,
                action="erasure.requested",
                target=erasure,
                after={"by": field_name, "items": len(wanted), "account": account.pk if account else None},
            )
    except IntegrityError:  # the same key, concurrently: the other call's erasure
        return Erasure.objects.get(source=client.source, idempotency_key=idempotency_key), False
    erasure_run(erasure=erasure, items=items, account_ref=account_ref)
    return erasure, True


def erasure_run(*, erasure: Erasure, items: QuerySet[ReviewItem], account_ref: str | None) -> Erasure:
    """Erase in committed batches, then the account; a run cut short is finished by asking again."""
    pseudonym = f"erased-{erasure.pk}"
    refs = {account_ref: pseudonym} if account_ref is not None else {}
    now = timezone.now()
    wiped: dict[str, int] = {}
    erased = 0
    ids_all = list(items.order_by("pk").values_list("pk", flat=True))
    size = settings.PURGE_BATCH_SIZE
    for start in range(0, len(ids_all), size):
        ids = ids_all[start : start + size]
        with transaction.atomic():
            batch = ReviewItem.objects.filter(pk__any=ids)
            batch.filter(content_purged_at__isnull=True).update(content_purged_at=now)
            batch.update(**EMPTY_CONTENT, content_purge_reason=ContentPurgeReason.ERASURE)
            if account_ref is not None:
                batch.filter(author_ref=account_ref).update(author_ref=pseudonym)
            Decision.objects.filter(item_id__any=ids).exclude(rationale="").update(rationale="")
            for event in ItemEvent.objects.filter(item_id__any=ids, data__has_key="reason"):
                event.data = {k: v for k, v in event.data.items() if k != "reason"}
                event.save(update_fields=["data"])
            wipe = ContentWipe(ids, erasure=True, source=erasure.source, account_refs=refs)
            for step, changed in content_wipe_run(wipe).items():
                wiped[step] = wiped.get(step, 0) + changed
        erased += len(ids)
    with transaction.atomic():
        if account_ref is not None:
            _account_erase(source=erasure.source, ref=account_ref, pseudonym=pseudonym, wipe_steps=not ids_all)
        Erasure.objects.filter(pk=erasure.pk).update(
            state=ErasureState.DONE, items_erased=erased, wiped=wiped, completed_at=timezone.now()
        )
        erasure.refresh_from_db()
        audit_record(
            actor=erasure.requested_by,
            action="erasure.completed",
            target=erasure,
            after={"items": erased, "wiped": wiped},
        )
    return erasure


def _account_erase(*, source: str, ref: str, pseudonym: str, wipe_steps: bool) -> None:
    """The account keeps its strikes and actions (the figures), under a pseudonym and without free text."""
    account = Account.objects.select_for_update().filter(source=source, ref=ref).first()
    if wipe_steps:  # no item of theirs held: the steps still rewrite what names the account
        content_wipe_run(ContentWipe([], erasure=True, source=source, account_refs={ref: pseudonym}))
    if account is None:
        return
    Account.objects.filter(pk=account.pk).update(ref=pseudonym, external_created_at=None)
    AccountAction.objects.filter(account=account).update(reason="", reversal_reason="")
    AccountLabel.objects.filter(account=account).update(reason="")
    for event in AccountEvent.objects.filter(account=account, data__has_key="reason"):
        event.data = {k: v for k, v in event.data.items() if k != "reason"}
        event.save(update_fields=["data"])


def erasure_get_for_source(*, erasure_id: int, source: str) -> Erasure | None:
    return Erasure.objects.filter(pk=erasure_id, source=source).first()
