"""The one database-vendor branch of the investigation search: matching item text."""

from __future__ import annotations

from django.contrib.postgres.search import SearchQuery
from django.db import connection
from django.db.models import QuerySet

from queues.models import TEXT_SEARCH_CONFIG, TEXT_SEARCH_VECTOR, ReviewItem


def text_matching(items: QuerySet[ReviewItem], text: str) -> QuerySet[ReviewItem]:
    """Items whose text matches ``text``.

    PostgreSQL: full-text, ``websearch_to_tsquery`` syntax (words all present, "a phrase", -word, or) against the
    GIN index ``item_text_search_idx`` (the expression is ``TEXT_SEARCH_VECTOR`` exactly, or the index is not
    used). Elsewhere (SQLite, the embedded demo): every word a case-insensitive substring of the text, a scan.
    """
    if connection.vendor == "postgresql":
        query = SearchQuery(text, config=TEXT_SEARCH_CONFIG, search_type="websearch")
        return items.alias(text_search=TEXT_SEARCH_VECTOR).filter(text_search=query)
    for word in text.split():
        items = items.filter(text__icontains=word.strip('"'))
    return items
