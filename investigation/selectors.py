"""Reads for the investigation search: who may search and what they may see of the items, and the search itself.

Scope follows the item pages. A vendor's people (a reviewer profile whose team has a vendor) see only the items
of the queues that admit them, by the rule claim-next applies (``queues.selectors.queue_ids_admitting``), and
never a QA golden copy; everyone else who may search sees every item. Content (text, media, metadata, report
reasons, rationales) is shown only to the roles whose pages already show it: reviewers, senior reviewers and QA
(the review and QA pages) and ops managers and admins (the analytics item page). Policy staff search and see the
results without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Exists, FloatField, OuterRef, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.urls import reverse
from django.utils import timezone

from analytics.selectors.items import item_opened
from investigation.sql import newest_first, text_matching
from ops_platform.core.models import User
from ops_platform.core.permissions import has_any
from queues.models import Account, Decision, ReviewItem
from queues.selectors import queue_ids_admitting
from routing.models import ClassifierScore

PAGE_SIZE = 50
EXCERPT_CHARS = 200
# Who may search: senior reviewers and QA, policy staff, ops managers, admins (not plain reviewers).
SEARCH_PERMISSIONS = (
    "core.bulk_decide",
    "core.perform_qa",
    "core.edit_policies",
    "core.edit_rules",
    "core.view_analytics",
    "core.manage_platform",
)
# Who may read content: the roles whose pages already show it (see the module's docstring).
CONTENT_PERMISSIONS = ("core.review_items", "core.view_analytics", "core.manage_platform")
# Only what a result shows without content: never the text, media, metadata or report reasons.
FIELDS_WITHOUT_CONTENT = (
    "pk",
    "source",
    "external_id",
    "kind",
    "author_ref",
    "state",
    "queue",
    "received_at",
    "decided_at",
)


@dataclass(frozen=True)
class SearchScope:
    """What one person may find: ``queue_ids`` None means every item; otherwise items in those queues only."""

    user: User
    queue_ids: frozenset[int] | None
    content: bool

    def items(self) -> QuerySet[ReviewItem]:
        items = ReviewItem.objects.all()
        if self.queue_ids is not None:
            items = items.filter(queue_id__in=sorted(self.queue_ids), is_golden=False)
        return items


def may_search(user: object) -> bool:
    return has_any(user, *SEARCH_PERMISSIONS)


def may_see_content(user: object) -> bool:
    return has_any(user, *CONTENT_PERMISSIONS)


def search_scope_for(user: User) -> SearchScope:
    profile = getattr(user, "reviewer_profile", None)
    team = profile.team if profile is not None else None
    vendor_scoped = team is not None and team.vendor_id is not None and not user.is_superuser
    return SearchScope(
        user=user,
        queue_ids=queue_ids_admitting(user) if vendor_scoped else None,
        content=may_see_content(user),
    )


@dataclass(frozen=True)
class SearchFilter:
    text: str = ""
    item_id: int | None = None
    external_id: str = ""
    source: str = ""
    author: str = ""
    queue_id: int | None = None
    policy_id: int | None = None
    decision: str = ""  # "violation", "no_violation", "none" (no final decision), or "" (any)
    received_from: date | None = None
    received_to: date | None = None  # inclusive
    score_category: str = ""
    score_min: float | None = None
    score_max: float | None = None
    before: int | None = None  # keyset: items with a smaller id (newest first)
    limit: int = PAGE_SIZE

    def params(self) -> dict[str, str]:
        """The filter as the query string the form reads (and the audit log stores); empty values left out."""
        values: dict[str, Any] = {
            "q": self.text,
            "item": self.item_id,
            "external_id": self.external_id,
            "source": self.source,
            "author": self.author,
            "queue": self.queue_id,
            "policy": self.policy_id,
            "decision": self.decision,
            "received_from": self.received_from,
            "received_to": self.received_to,
            "score_category": self.score_category,
            "score_min": self.score_min,
            "score_max": self.score_max,
            "before": self.before,
        }
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


@dataclass(frozen=True)
class FoundItem:
    item: ReviewItem
    excerpt: str | None  # None: the searcher may not see content
    decision: Decision | None  # the final decision in force
    account_url: str


@dataclass(frozen=True)
class SearchResults:
    rows: list[FoundItem]
    next_before: int | None  # the ``before`` of the next page; None on the last
    content: bool
    params: dict[str, str] = field(default_factory=dict)


def account_links(pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Where each result's author (source, author reference) links: their account's page, in one query; an author
    with no account yet (items stored before accounts existed) links to this search filtered to their items."""
    accounts: dict[tuple[str, str], int] = {}
    if pairs:
        wanted = Q()
        for source, ref in pairs:
            wanted |= Q(source=source, ref=ref)
        accounts = {(a.source, a.ref): a.pk for a in Account.objects.filter(wanted).only("pk", "source", "ref")}
    return {
        pair: reverse("accounts:detail", args=[accounts[pair]])
        if pair in accounts
        else reverse("investigation-search") + "?" + urlencode({"source": pair[0], "author": pair[1]})
        for pair in pairs
    }


def _final(**kwargs: Any) -> QuerySet[Decision]:
    return Decision.objects.filter(item=OuterRef("pk"), is_final=True, superseded_by__isnull=True, **kwargs)


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def items_matching(f: SearchFilter, scope: SearchScope) -> QuerySet[ReviewItem]:
    """The items in ``scope`` the filter matches (unordered, unbounded: ``items_found`` pages them)."""
    items = scope.items()
    if f.item_id is not None:
        items = items.filter(pk=f.item_id)
    if f.external_id:
        items = items.filter(external_id=f.external_id)
    if f.source:
        items = items.filter(source=f.source)
    if f.author:
        items = items.filter(author_ref=f.author)
    if f.queue_id is not None:
        items = items.filter(queue_id=f.queue_id)
    if f.policy_id is not None:
        items = items.filter(Exists(_final(policy_id=f.policy_id)))
    if f.decision == "none":
        items = items.filter(~Exists(_final()))
    elif f.decision:
        items = items.filter(Exists(_final(is_violation=f.decision == "violation")))
    if f.received_from is not None:
        items = items.filter(received_at__gte=_day_start(f.received_from))
    if f.received_to is not None:
        items = items.filter(received_at__lt=_day_start(f.received_to + timedelta(days=1)))
    if f.score_category and (f.score_min is not None or f.score_max is not None):
        scores = ClassifierScore.objects.filter(item=OuterRef("pk")).annotate(
            value=Cast(KT(f"scores__{f.score_category}"), FloatField())
        )
        bounds = Q()
        if f.score_min is not None:
            bounds &= Q(value__gte=f.score_min)
        if f.score_max is not None:
            bounds &= Q(value__lte=f.score_max)
        items = items.filter(Exists(scores.filter(bounds)))
    if f.text:
        items = text_matching(items, f.text)
    return items


def items_found(f: SearchFilter, scope: SearchScope) -> SearchResults:
    """One page of matches, newest first (by id, a keyset: ``before`` continues after the last row)."""
    items = items_matching(f, scope).select_related("queue")
    if f.before is not None:
        items = items.filter(pk__lt=f.before)
    if not scope.content:
        items = items.only(*FIELDS_WITHOUT_CONTENT, "queue__name", "queue__slug")
    page = list(newest_first(items, f.text, by_author=bool(f.author))[: f.limit + 1])
    more = len(page) > f.limit
    page = page[: f.limit]
    decisions: dict[int, Decision] = {}
    for d in (
        Decision.objects.filter(item_id__in=[i.pk for i in page], is_final=True, superseded_by__isnull=True)
        .select_related("policy", "action")
        .order_by("decided_at", "pk")
    ):
        decisions[d.item_id] = d  # the latest in force wins
    links = account_links({(i.source, i.author_ref) for i in page if i.author_ref})
    rows = [
        FoundItem(
            item=i,
            excerpt=_excerpt(i.text) if scope.content else None,
            decision=decisions.get(i.pk),
            account_url=links[(i.source, i.author_ref)] if i.author_ref else "",
        )
        for i in page
    ]
    return SearchResults(
        rows=rows, next_before=page[-1].pk if more and page else None, content=scope.content, params=f.params()
    )


def _excerpt(text: str) -> str:
    return text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")


def item_investigated(pk: int, scope: SearchScope) -> tuple[ReviewItem, list[Any], list[Any]] | None:
    """One found item as the analytics item page opens it (item, decisions, history), or None when it is not in
    ``scope`` (outside it, an item does not exist: the same 404 as no item)."""
    if not scope.items().filter(pk=pk).exists():
        return None
    return item_opened(pk)
