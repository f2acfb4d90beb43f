"""Planner statistics for the embedded SQLite database.

SQLite keeps no statistics until something gathers them, and without them its planner guessed badly on
the claim query for a reviewer with many decisions of their own (issue 22: 666-1,168 ms per claim after
2,000 own decisions in a queue needing several reviews, 2 ms after ``ANALYZE``). So statistics are gathered
after every ``migrate`` and refreshed daily by Celery beat. Each time it is an ``ANALYZE`` bounded by
``analysis_limit`` (a sample of rows per index, so seconds at most on a large file), then ``PRAGMA optimize``.
A plain ``PRAGMA optimize`` is not enough on its own before SQLite 3.46: it analyses only tables the same
connection has queried, and the beat task's connection has queried none. PostgreSQL's autovacuum keeps its
own statistics: nothing is done there.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

ANALYSIS_LIMIT = 1000  # rows sampled per index by ANALYZE; enough for the planner's rows-per-key estimates


def database_statistics_gather(*, using: str = DEFAULT_DB_ALIAS) -> bool:
    """A bounded ``ANALYZE`` then ``PRAGMA optimize`` on SQLite; False, doing nothing, elsewhere."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
        cursor.execute("ANALYZE")
        cursor.execute("PRAGMA optimize")
    return True


def statistics_after_migrate(*, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate receiver: the schema may have new indexes, so gather statistics for all of them."""
    database_statistics_gather(using=using)
