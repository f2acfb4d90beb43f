"""Account writes: creation at intake, entity labels, reports about accounts, the account's history.

Strikes are in ``queues.accounts.strikes``, actions in ``queues.accounts.actions``. Every write here is
audited (the kernel's audit log) and leaves an :class:`AccountEvent`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ops_platform.core.bulk import insert_ignoring_conflicts
from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import User
from ops_platform.core.services import actor_label, audit_record
from queues.accounts.models import Account, AccountEvent, AccountLabel, AccountReport

LABEL_MAX = 100
# Labels the platform knows the meaning of; people may set others too (any slug).
KNOWN_LABELS = ("trusted-flagger", "new-account", "under-investigation")


def event_record(
    account: Account | int, *, event: str, actor: User | str | None, at: datetime, data: dict[str, Any] | None = None
) -> AccountEvent:
    return AccountEvent.objects.create(
        account_id=account if isinstance(account, int) else account.pk,
        at=at,
        actor=actor if isinstance(actor, User) else None,
        actor_label=actor_label(actor),
        event=event,
        data=data or {},
    )


def _author_created_at(metadata: object) -> datetime | None:
    """``author_created_at`` from an item's metadata when it is an ISO 8601 time with a zone; else None."""
    if not isinstance(metadata, dict):
        return None
    value = metadata.get("author_created_at")
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return parsed


def accounts_ensure(*, rows: Iterable[Any], at: datetime | None = None) -> int:
    """Make sure each (source, author_ref) of ``rows`` (items, or their field values) has an account: one
    ``INSERT … ON CONFLICT DO NOTHING`` for the batch, exact under concurrent intake. Golden copies and rows with
    no author are skipped. Returns how many accounts this call created."""
    now = at or timezone.now()
    wanted: dict[tuple[str, str], datetime | None] = {}
    for row in rows:
        get = row.get if isinstance(row, Mapping) else lambda name, default=None, r=row: getattr(r, name, default)
        ref, source = get("author_ref", ""), get("source", "")
        if not ref or not source or get("is_golden", False):
            continue
        key = (source, ref)
        if wanted.get(key) is None:
            wanted[key] = _author_created_at(get("metadata", None))
    if not wanted:
        return 0
    new = [
        {"source": s, "ref": r, "first_seen_at": now, "external_created_at": created, "status": "active"}
        for (s, r), created in sorted(wanted.items())
    ]
    created_rows = insert_ignoring_conflicts(Account, new, conflict="source, ref", returning="id")
    if created_rows:
        AccountEvent.objects.bulk_create(
            AccountEvent(account_id=pk, at=now, actor_label="intake", event="created", data={})
            for (pk,) in created_rows
        )
    return len(created_rows)


def account_for(*, source: str, ref: str, at: datetime | None = None) -> Account:
    """The account of (source, ref), created if needed (race-free)."""
    accounts_ensure(rows=[{"source": source, "author_ref": ref}], at=at)
    return Account.objects.get(source=source, ref=ref)


def account_reports_record(*, reports: Sequence[Mapping[str, Any]], at: datetime | None = None) -> int:
    """Link user reports to accounts: each mapping has ``item_id``, ``source``, ``subject_ref`` (the reported
    account, may be blank), ``reporter_ref`` (may be blank) and ``about_account``. Accounts are created as needed.
    An item already linked is left as it is."""
    rows = [r for r in reports if r.get("subject_ref") or r.get("reporter_ref")]
    if not rows:
        return 0
    refs = [
        {"source": r["source"], "author_ref": ref}
        for r in rows
        for ref in (r.get("subject_ref"), r.get("reporter_ref"))
        if ref
    ]
    accounts_ensure(rows=refs, at=at)
    ids = {
        (a.source, a.ref): a.pk
        for a in Account.objects.filter(
            source__in={r["source"] for r in rows}, ref__in={x["author_ref"] for x in refs}
        ).only("pk", "source", "ref")
    }
    links = [
        {
            "item_id": r["item_id"],
            "subject_id": ids.get((r["source"], r.get("subject_ref") or "")),
            "reporter_id": ids.get((r["source"], r.get("reporter_ref") or "")),
            "about_account": bool(r.get("about_account")),
        }
        for r in rows
    ]
    return len(insert_ignoring_conflicts(AccountReport, links, conflict="item_id", returning="id"))


def _label_check(label: str) -> str:
    label = (label or "").strip().lower()
    if not label or len(label) > LABEL_MAX or not all(c.isalnum() or c in "-_" for c in label) or not label.isascii():
        raise ApplicationError("A label is a slug: letters, digits, '-' and '_', at most 100.", field="label")
    return label


def require_account_staff(actor: User) -> None:
    if not actor.has_perm("core.act_on_accounts"):
        raise NotPermitted("Acting on accounts needs the senior reviewer, policy staff or admin role.")


@transaction.atomic
def account_label_set(
    *,
    account: Account,
    label: str,
    actor: User | str,
    reason: str = "",
    expires_at: datetime | None = None,
    at: datetime | None = None,
) -> AccountLabel:
    """Put ``label`` on the account (a person with the right role, or the system/a rule by name). A label already
    on it is replaced (its expiry renewed). Audited."""
    now = at or timezone.now()
    if isinstance(actor, User):
        require_account_staff(actor)
    label = _label_check(label)
    if expires_at is not None and expires_at <= now:
        raise ApplicationError("The expiry must be in the future.", field="expires_at")
    Account.objects.select_for_update().filter(pk=account.pk).first()
    current = AccountLabel.objects.filter(account=account, label=label, removed_at__isnull=True).first()
    before = None
    if current is not None:
        before = {"label": label, "expires_at": current.expires_at.isoformat() if current.expires_at else None}
        current.removed_at = now
        current.removed_by = actor if isinstance(actor, User) else None
        current.save(update_fields=["removed_at", "removed_by"])
    row = AccountLabel.objects.create(
        account=account,
        label=label,
        set_at=now,
        set_by=actor if isinstance(actor, User) else None,
        set_by_label=actor_label(actor),
        reason=reason[:2000],
        expires_at=expires_at,
    )
    after = {"label": label, "expires_at": expires_at.isoformat() if expires_at else None}
    audit_record(actor=actor, action="account.label_set", target=account, before=before, after=after, reason=reason)
    event_record(account, event="label_set", actor=actor, at=now, data=after)
    return row


@transaction.atomic
def account_label_remove(
    *, account: Account, label: str, actor: User | str, reason: str = "", at: datetime | None = None
) -> None:
    now = at or timezone.now()
    if isinstance(actor, User):
        require_account_staff(actor)
    label = _label_check(label)
    current = (
        AccountLabel.objects.select_for_update().filter(account=account, label=label, removed_at__isnull=True).first()
    )
    if current is None:
        raise ApplicationError(f"The account has no label '{label}'.", field="label")
    current.removed_at = now
    current.removed_by = actor if isinstance(actor, User) else None
    current.save(update_fields=["removed_at", "removed_by"])
    audit_record(actor=actor, action="account.label_removed", target=account, before={"label": label}, reason=reason)
    event_record(account, event="label_removed", actor=actor, at=now, data={"label": label})


RULE_LABEL_PREFIX = "account:"


def rule_label_parse(tag: str) -> tuple[str, int | None] | None:
    """A rule's tag that labels the author's account: ``account:<label>`` or ``account:<label>:<days>d`` (the label
    then expires after that many days). None for any other tag, or one whose label or days are malformed."""
    if not tag.startswith(RULE_LABEL_PREFIX):
        return None
    label, _, days = tag[len(RULE_LABEL_PREFIX) :].partition(":")
    try:
        label = _label_check(label)
    except ApplicationError:
        return None
    if not days:
        return label, None
    if not days.endswith("d") or not (days[:-1].isascii() and days[:-1].isdigit()) or not 1 <= int(days[:-1]) <= 3650:
        return None
    return label, int(days[:-1])


def account_labels_from_rules(*, labels: Sequence[tuple[str, str, str, str]], at: datetime | None = None) -> int:
    """Labels routing rules put on authors' accounts: ``(source, author_ref, tag, rule name)`` each. A label the
    account already carries (current) is left as it is; a new one is set as the rule (audited). Returns how many
    labels were set."""
    from datetime import timedelta

    now = at or timezone.now()
    wanted = [(s, r, parsed, rule) for s, r, tag, rule in labels if r and (parsed := rule_label_parse(tag))]
    if not wanted:
        return 0
    accounts_ensure(rows=[{"source": s, "author_ref": r} for s, r, _, _ in wanted], at=now)
    ids = {
        (a.source, a.ref): a
        for a in Account.objects.filter(source__in={s for s, *_ in wanted}, ref__in={r for _, r, *_ in wanted})
    }
    current = set(
        AccountLabel.objects.filter(account__in=list(ids.values()), removed_at__isnull=True)
        .exclude(expires_at__lte=now)
        .values_list("account_id", "label")
    )
    done = 0
    for source, ref, (label, days), rule in wanted:
        account = ids[(source, ref)]
        if (account.pk, label) in current:
            continue
        expires_at = now + timedelta(days=days) if days else None
        account_label_set(account=account, label=label, actor=f"rules:{rule}", expires_at=expires_at, at=now)
        current.add((account.pk, label))
        done += 1
    return done
