"""The investigation search as a service: refused to whoever may not search, and every search audited.

The audit entry (action ``investigation.search``) stores who searched and the whole filter, search text included:
the text is what a member of staff typed, not content a user sent, and "who looked up what" is the point of the
entry (a lookup of a person's handle or e-mail address is exactly what an audit of investigations must show).
It goes to the audit log only, never to the application log. See docs/investigation.md.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from investigation.selectors import (
    SearchFilter,
    SearchResults,
    item_investigated,
    items_found,
    may_search,
    search_scope_for,
)
from ops_platform.core.errors import NotFound, NotPermitted
from ops_platform.core.models import User
from ops_platform.core.services import audit_record

SEARCH_ACTION = "investigation.search"
OPEN_ACTION = "investigation.item_open"


def _scope(actor: User) -> Any:
    if not may_search(actor):
        raise NotPermitted("Searching items needs a senior reviewer, QA, policy, ops or admin role.")
    return search_scope_for(actor)


@transaction.atomic
def items_search(*, actor: User, search: SearchFilter, via: str = "page") -> SearchResults:
    """One page of the items ``actor`` may see that ``search`` matches, audited with the filter and what was
    found (the ids shown, how many)."""
    scope = _scope(actor)
    results = items_found(search, scope)
    audit_record(
        actor=actor,
        action=SEARCH_ACTION,
        target=("queues.reviewitem", "search"),
        after={
            "filter": search.params(),
            "via": via,
            "vendor_scoped": scope.queue_ids is not None,
            "content_shown": scope.content,
            "found": [row.item.pk for row in results.rows],
            "more": results.next_before is not None,
        },
    )
    return results


@transaction.atomic
def item_investigate(*, actor: User, pk: int) -> tuple[Any, list[Any], list[Any], bool]:
    """A found item opened from the search (audited): the item, its decisions and history, and whether content
    may be shown. Outside the actor's scope it does not exist (``NotFound``, the same as no item)."""
    scope = _scope(actor)
    opened = item_investigated(pk, scope)
    if opened is None:
        raise NotFound("No such item.")
    audit_record(actor=actor, action=OPEN_ACTION, target=opened[0], after={"content_shown": scope.content})
    item, decisions, events = opened
    return item, decisions, events, scope.content
