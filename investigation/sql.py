"""The database-vendor branch of the investigation search: matching item text, and how to find the newest matches.

PostgreSQL has two ways to the newest matches of a full-text query, and its planner misjudges between them (it
prices testing a row far below what it costs): walk the id index newest first and test each item's vector
(cheap for a common word: 51 matches come quickly; for a rare one it tests the vectors of thousands of items), or
take every match from the GIN index and sort them (cheap for a rare word, a heap read per match for a common one).
Walking reads about ``51 / s`` rows for a query matching a share ``s`` of ``N`` items, collecting reads ``s * N``
matches, so walking wins when ``matches ** 2 > 51 * N * WALK_COST``; the planner's estimate of the matches (its GIN
statistics: good for words) decides, and the other way is then taken off the table by ordering on ``id + 0``.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.postgres.search import SearchQuery
from django.db import connection
from django.db.models import F, QuerySet, Value

from queues.models import TEXT_SEARCH_CONFIG, ReviewItem

# How much dearer testing one row's text is than collecting one match from the GIN index: bench/search.py at 1M
# items measured 37 us a row walked and 11 us a match collected on a busy machine, 10 and 1.8 on a quiet one.
WALK_COST = 4
_ESTIMATE = """EXPLAIN (FORMAT JSON) SELECT 1 FROM queues_itemsearchtext
WHERE vector @@ websearch_to_tsquery('simple'::regconfig, %s)"""


def text_matching(items: QuerySet[ReviewItem], text: str) -> QuerySet[ReviewItem]:
    """Items whose text matches ``text``.

    PostgreSQL: full-text, ``websearch_to_tsquery`` syntax (words all present, "a phrase", -word, or) against the
    items' search vectors (``ItemSearchText``, GIN index ``item_search_vector_idx``), written at intake; an item
    whose content was purged or erased has none. Elsewhere (SQLite, the embedded demo): every word a
    case-insensitive substring of the text, a scan.
    """
    if connection.vendor == "postgresql":
        query = SearchQuery(text, config=TEXT_SEARCH_CONFIG, search_type="websearch")
        return items.filter(search_text__vector=query)
    for word in text.split():
        items = items.filter(text__icontains=word.strip('"'))
    return items


def walk_newest_first(text: str) -> bool:
    """Whether the newest matches of ``text`` are best found by walking the id index (see the module's docstring)."""
    with connection.cursor() as cursor:
        cursor.execute(_ESTIMATE, [text])
        raw: Any = cursor.fetchone()[0]
        matches = float((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]["Plan Rows"])
        cursor.execute("SELECT greatest(reltuples, 1) FROM pg_class WHERE oid = 'queues_reviewitem'::regclass")
        items = float(cursor.fetchone()[0])
    return matches * matches > 51 * items * WALK_COST


def newest_first(items: QuerySet[ReviewItem], text: str, *, by_author: bool = False) -> QuerySet[ReviewItem]:
    """``items`` newest first (by id); with a full-text ``text`` on PostgreSQL, by the way that finds them soonest.

    ``by_author``: the items are one author's (a search by author, an account's items). Then the author's index,
    ``item_author_id_idx`` (author_ref, source, id), read backwards is the order: the search walks the author's own
    items newest first, testing each one's text, and stops at a page, bounded by what the author wrote whatever the
    table holds. Neither whole-table way above is right for it (nor is asking the planner for its estimate, one more
    round trip per search)."""
    if by_author:
        return items.order_by("-pk")
    if connection.vendor == "postgresql" and text and not walk_newest_first(text):
        return items.order_by((F("pk") + Value(0)).desc())  # not the id index: the GIN index's matches, sorted
    return items.order_by("-pk")
