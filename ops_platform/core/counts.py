"""How many rows a list holds, said truthfully without reading every row: exact up to a cap, beyond it the planner's
estimate said as "about N" (or "more than N" where there is no estimate, or it is below the cap we counted past).

Counting a period's items exactly reads every one of them (or every index entry): the cost grows with the period
and the traffic. Counting ``LIMIT cap + 1`` of them costs at most ``cap + 1`` entries; past that, PostgreSQL's
EXPLAIN gives the planner's row estimate for the same query, from the statistics ANALYZE keeps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import QuerySet

EXACT_UP_TO = 10_000


@dataclass(frozen=True)
class Counted:
    n: int
    exact: bool
    # Not exact: "about" (the planner's estimate) or "more than" (at least ``n`` rows, counted that far).
    qualifier: str = ""

    @property
    def text(self) -> str:
        return f"{self.qualifier} {self.n:,}" if self.qualifier else f"{self.n:,}"

    def __int__(self) -> int:
        return self.n


def planner_rows(queryset: QuerySet[Any]) -> int | None:
    """The planner's estimate of the rows ``queryset`` returns (PostgreSQL's EXPLAIN, no execution); None elsewhere."""
    if connections[queryset.db].vendor != "postgresql":
        return None
    plan = json.loads(queryset.order_by().explain(format="json"))
    rows = plan[0]["Plan"].get("Plan Rows")
    return int(rows) if rows is not None else None


def two_figures(n: int) -> int:
    """``n`` to two significant figures: an estimate shown with all its digits claims a precision it has not."""
    if n < 100:
        return n
    unit = 10 ** (len(str(n)) - 2)
    return round(n / unit) * unit


def count_capped(queryset: QuerySet[Any], exact_up_to: int | None = None) -> Counted:
    """The rows of ``queryset``: exactly when at most ``exact_up_to`` (``EXACT_UP_TO``); else the planner's estimate
    ("about"), or "more than ``exact_up_to``" when there is none or it says fewer than were counted."""
    exact_up_to = EXACT_UP_TO if exact_up_to is None else exact_up_to
    seen = queryset.order_by()[: exact_up_to + 1].count()
    if seen <= exact_up_to:
        return Counted(seen, exact=True)
    estimate = planner_rows(queryset)
    if estimate is not None and estimate > exact_up_to:
        return Counted(two_figures(estimate), exact=False, qualifier="about")
    return Counted(exact_up_to, exact=False, qualifier="more than")
