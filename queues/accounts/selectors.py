"""Account reads: who may see which account, an account's summary, page and timeline, and what rules read."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from ops_platform.core.models import DecisionLabel, Policy, ReviewerProfile, User
from queues.accounts.models import (
    Account,
    AccountAction,
    AccountEvent,
    AccountLabel,
    AccountReport,
    ActionState,
    LabelStrikes,
    PolicyStrikes,
    Strike,
    StrikeThreshold,
)
from queues.accounts.terms import StrikeTerms, terms_from
from queues.models import Decision, ItemKind, Queue, ReviewItem


def _vendor_queues(user: User) -> QuerySet[Queue] | None:
    """The queues a vendor's reviewer may work; None for anyone not on a vendor's team (in-house staff)."""
    profile = ReviewerProfile.objects.filter(user=user).select_related("team").first()
    if profile is None or profile.team is None or profile.team.vendor_id is None:
        return None
    return Queue.objects.filter(Q(allowed_vendors=profile.team.vendor_id) | Q(allowed_teams=profile.team_id))


def accounts_visible_to(user: User) -> QuerySet[Account]:
    """Every account for in-house staff; for a vendor's reviewer, only accounts with an item in a queue their
    vendor (or team) may work."""
    accounts = Account.objects.all()
    queues = _vendor_queues(user)
    if queues is None:
        return accounts
    in_scope = ReviewItem.objects.filter(
        source=OuterRef("source"), author_ref=OuterRef("ref"), queue__in=queues.values("pk"), is_golden=False
    )
    return accounts.filter(Exists(in_scope))


def items_visible_to(user: User, items: QuerySet[ReviewItem]) -> QuerySet[ReviewItem]:
    """``items`` narrowed to those a vendor's reviewer may see (their queues); all of them for in-house staff."""
    queues = _vendor_queues(user)
    return items if queues is None else items.filter(queue__in=queues.values("pk"))


def account_of_item(item: ReviewItem) -> Account | None:
    if not item.author_ref:
        return None
    return Account.objects.filter(source=item.source, ref=item.author_ref).first()


def labels_current(account_ids: Iterable[int], *, at: datetime | None = None) -> dict[int, list[AccountLabel]]:
    now = at or timezone.now()
    found: dict[int, list[AccountLabel]] = defaultdict(list)
    rows = AccountLabel.objects.filter(account_id__in=list(account_ids), removed_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    for row in rows.order_by("label"):
        found[row.account_id].append(row)
    return found


def strike_totals(account_ids: Iterable[int], *, at: datetime | None = None) -> dict[int, dict[str, int]]:
    """account id -> {family: active strikes}."""
    now = at or timezone.now()
    totals: dict[int, dict[str, int]] = defaultdict(dict)
    rows = (
        Strike.objects.filter(account_id__in=list(account_ids), removed_at__isnull=True, expires_at__gt=now)
        .values("account_id", "family")
        .annotate(n=Sum("weight"))
    )
    for row in rows:
        totals[row["account_id"]][row["family"]] = int(row["n"])
    return totals


@dataclass
class AccountSummary:
    account: Account
    strikes: dict[str, int]
    labels: list[AccountLabel]
    actions_in_force: list[AccountAction]
    pending: list[AccountAction] = field(default_factory=list)

    @property
    def strike_total(self) -> int:
        return sum(self.strikes.values())


def account_summary(account: Account, *, at: datetime | None = None) -> AccountSummary:
    now = at or timezone.now()
    actions = list(
        account.actions.filter(state__in=[ActionState.IN_FORCE, ActionState.PENDING])
        .select_related("policy")
        .order_by("-requested_at")
    )
    return AccountSummary(
        account=account,
        strikes=strike_totals([account.pk], at=now).get(account.pk, {}),
        labels=labels_current([account.pk], at=now).get(account.pk, []),
        actions_in_force=[a for a in actions if a.state == ActionState.IN_FORCE],
        pending=[a for a in actions if a.state == ActionState.PENDING],
    )


@dataclass
class AccountPage:
    summary: AccountSummary
    items: list[ReviewItem]  # one page of the account's items, newest first
    items_before: int | None  # the ``before`` of the next (older) page of items; None on the last
    decisions: list[Decision]
    appeals: list[ReviewItem]
    strikes: list[Strike]
    actions: list[AccountAction]
    labels_history: list[AccountLabel]
    events: list[AccountEvent]
    reported: list[tuple[Account, int]]  # accounts this one reported, with how many reports
    reporters: list[tuple[Account, int]]  # accounts that reported this one


# What the page shows of an item (its text only to those who may read content): not the whole row, whose metadata,
# media and report reasons each page's items would read and decode for nothing.
ITEM_PAGE_FIELDS = ("pk", "source", "external_id", "kind", "state", "queue", "received_at", "appeal_of", "author_ref")
REPORTING_ACCOUNTS = 50  # the most frequent reporters (and reported) the page lists
DECISION_ROUND_MAX = 10_000  # item ids per round of the decisions' walk (SQLite takes at most 32,766 parameters)


def account_page(
    account: Account, *, viewer: User, limit: int = 50, before: int | None = None, content: bool = True
) -> AccountPage:
    """What the account page shows ``viewer``: one page of its items (only from queues they may see, for a
    vendor's reviewer), newest first by id, and the final decisions on its items, newest item first; ``before``
    (an item id) pages back to older items and their decisions. ``content``: load the items' text.

    Every read is bounded by the account's own rows, never by the size of the items table: items and decisions walk
    the index of (author_ref, source, id) from ``before`` down and stop at ``limit`` (``item_author_id_idx``); the
    other lists are the account's newest ``limit`` rows by their per-account indexes. See docs/accounts.md
    ("The account page at scale")."""
    queues = _vendor_queues(viewer)
    items_qs = ReviewItem.objects.filter(source=account.source, author_ref=account.ref, is_golden=False)
    if queues is not None:
        items_qs = items_qs.filter(queue__in=queues.values("pk"))
    if before is not None:
        items_qs = items_qs.filter(pk__lt=before)
    fields = (*ITEM_PAGE_FIELDS, "text") if content else ITEM_PAGE_FIELDS
    items = list(
        items_qs.select_related("queue").only(*fields, "queue__slug", "queue__name").order_by("-pk")[: limit + 1]
    )
    items_before = items[limit - 1].pk if len(items) > limit else None
    items = items[:limit]
    decisions = _decisions_newest_items_first(items_qs, limit)
    return AccountPage(
        summary=account_summary(account),
        items=items,
        items_before=items_before,
        decisions=decisions,
        appeals=[i for i in items if i.kind == ItemKind.APPEAL],
        strikes=list(
            account.strikes.select_related("policy")
            .annotate(item_id=F("decision__item_id"))
            .order_by("-issued_at", "-pk")[:limit]
        ),
        actions=list(
            account.actions.select_related("policy", "requested_by", "approved_by", "reversed_by").order_by(
                "-requested_at", "-pk"
            )[:limit]
        ),
        labels_history=list(account.labels.order_by("-set_at", "-pk")[:limit]),
        events=list(account.events.order_by("-at", "-pk")[:limit]),
        reported=_count_accounts(AccountReport.objects.filter(reporter=account, subject__isnull=False), "subject"),
        reporters=_count_accounts(AccountReport.objects.filter(subject=account, reporter__isnull=False), "reporter"),
    )


def _decisions_newest_items_first(items: QuerySet[ReviewItem], limit: int) -> list[Decision]:
    """The final decisions on ``items`` (one account's), the newest item first, at most ``limit``.

    Walked in rounds from the account's newest items down: a round takes the next ids from the author index (a few
    times as many as still wanted, growing) and their decisions by the decisions' item index, and stops once it has
    ``limit``. One join of the two was left to the planner before: for a busy account it merged with the decisions'
    item index read from the newest decision of the whole table down, so the work grew with the table, not the
    account (and ordering by decision time read every decision of the account to sort them)."""
    ids = items.order_by("-pk").values_list("pk", flat=True)
    found: list[Decision] = []
    chunk, before = limit * 4, None
    while len(found) < limit:
        page = list((ids if before is None else ids.filter(pk__lt=before))[:chunk])
        if page:
            found += (
                Decision.objects.filter(item_id__any=page, is_final=True)
                .select_related("policy", "action")
                .defer("rationale")
                .order_by("-item_id", "-pk")[: limit - len(found)]
            )
        if len(page) < chunk:
            break
        chunk, before = min(chunk * 4, DECISION_ROUND_MAX), page[-1]
    return found


def _count_accounts(reports: QuerySet[AccountReport], side: str) -> list[tuple[Account, int]]:
    """The accounts on ``side`` of ``reports`` with how many, the most first (counted in the database), at most
    REPORTING_ACCOUNTS."""
    counted = reports.values(side).annotate(n=Count("pk")).order_by("-n", side)
    ranked: list[tuple[int, int]] = list(counted.values_list(side, "n")[:REPORTING_ACCOUNTS])
    accounts = Account.objects.in_bulk([pk for pk, _ in ranked])
    return [(accounts[pk], n) for pk, n in ranked if pk in accounts]


def account_features(
    pairs: Iterable[tuple[str, str]], *, at: datetime | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """(source, author_ref) -> what rules read of the author's account: ``author.strikes`` (active strikes, every
    family), ``author.labels`` (current labels, comma-joined, '' for none) and ``author.account_age_days`` (NaN
    when the service never sent the account's creation time). Authors with no account are left out."""
    now = at or timezone.now()
    pairs = {p for p in pairs if p[1]}
    if not pairs:
        return {}
    found = _features_postgresql(pairs, now) if connection.vendor == "postgresql" else _features_orm(pairs, now)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, (created, strikes, labels) in found.items():
        age = (now - created).total_seconds() / 86400 if created else math.nan
        out[key] = {"author.strikes": float(strikes or 0), "author.labels": labels, "author.account_age_days": age}
    return out


# Triage asks this for every batch, so on PostgreSQL it is one statement with the pairs as two array parameters
# (no ORM compilation, no parameter per value): bench/accounts.py measures what it adds to triage's CPU.
_FEATURES_SQL = """SELECT a.source, a.ref, a.external_created_at,
  (SELECT sum(s.weight) FROM queues_strike s
   WHERE s.account_id = a.id AND s.removed_at IS NULL AND s.expires_at > %(now)s),
  (SELECT string_agg(l.label, ',' ORDER BY l.label) FROM queues_accountlabel l
   WHERE l.account_id = a.id AND l.removed_at IS NULL AND (l.expires_at IS NULL OR l.expires_at > %(now)s))
FROM queues_account a JOIN unnest(%(sources)s::text[], %(refs)s::text[]) AS wanted(source, ref)
  ON a.source = wanted.source AND a.ref = wanted.ref"""


def _features_postgresql(
    pairs: set[tuple[str, str]], now: datetime
) -> dict[tuple[str, str], tuple[datetime | None, int | None, str]]:
    ordered = sorted(pairs)
    params: dict[str, Any] = {"now": now, "sources": [s for s, _ in ordered], "refs": [r for _, r in ordered]}
    with connection.cursor() as cursor:
        cursor.execute(_FEATURES_SQL, params)
        return {(source, ref): (created, strikes, labels or "") for source, ref, created, strikes, labels in cursor}


def _features_orm(
    pairs: set[tuple[str, str]], now: datetime
) -> dict[tuple[str, str], tuple[datetime | None, int | None, str]]:
    refs, sources = {r for _, r in pairs}, {s for s, _ in pairs}
    active = Strike.objects.filter(account=OuterRef("pk"), removed_at__isnull=True, expires_at__gt=now)
    total = active.order_by().values("account").annotate(n=Sum("weight")).values("n")
    accounts = {
        (source, ref): (pk, created, strikes)
        for pk, source, ref, created, strikes in Account.objects.filter(source__any=sources, ref__any=refs)
        .annotate(strike_total=Subquery(total))
        .values_list("pk", "source", "ref", "external_created_at", "strike_total")
        if (source, ref) in pairs
    }
    if not accounts:
        return {}
    labels: dict[int, list[str]] = defaultdict(list)
    for account_id, label in (
        AccountLabel.objects.filter(account_id__any=[pk for pk, _, _ in accounts.values()], removed_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by("label")
        .values_list("account_id", "label")
    ):
        labels[account_id].append(label)
    return {key: (created, strikes, ",".join(labels.get(pk, []))) for key, (pk, created, strikes) in accounts.items()}


ACCOUNT_FEATURE_DEFAULTS: dict[str, Any] = {
    "author.strikes": 0.0,
    "author.labels": "",
    "author.account_age_days": math.nan,
}


@dataclass
class PolicyStrikeRow:
    policy: Policy
    terms: StrikeTerms
    is_set: bool  # False: the default terms (no row yet)
    labels: list[tuple[DecisionLabel, int | None]]  # a label's own weight, None: its policy's


@dataclass
class StrikeSettings:
    policies: list[PolicyStrikeRow]
    # family -> its thresholds, each annotated with ``actions_taken``
    thresholds: dict[str, list[StrikeThreshold]]


def strike_settings() -> StrikeSettings:
    """What the strike settings page shows: every policy with its terms and its labels' weights, and the
    thresholds of each family with how many actions each has taken. Four queries, whatever the counts."""
    set_rows = {row.policy_id: row for row in PolicyStrikes.objects.all()}
    label_weights = dict(LabelStrikes.objects.values_list("label_id", "weight"))
    labels_by_policy: dict[int, list[tuple[DecisionLabel, int | None]]] = defaultdict(list)
    for label in DecisionLabel.objects.order_by("policy_id", "slug"):
        labels_by_policy[label.policy_id].append((label, label_weights.get(label.pk)))
    policies = []
    for policy in Policy.objects.order_by("slug"):
        row = set_rows.get(policy.pk)
        terms = terms_from(policy, row)
        policies.append(PolicyStrikeRow(policy, terms, row is not None, labels_by_policy.get(policy.pk, [])))
    thresholds: dict[str, list[StrikeThreshold]] = defaultdict(list)
    for threshold in StrikeThreshold.objects.annotate(actions_taken=Count("actions")).order_by("family", "strikes"):
        thresholds[threshold.family].append(threshold)
    return StrikeSettings(policies, dict(thresholds))
