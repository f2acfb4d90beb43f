"""The one shape every metric takes: a titled table of typed columns, rendered as HTML, CSV and JSON."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.core.cache import cache
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from analytics.filters import TRUTHS, VIEWS, MetricFilter
from ops_platform.core.figures import figure_text


class Kind(StrEnum):
    """How a column's values are shown; CSV and JSON carry the raw value whatever the kind."""

    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    PERCENT = "percent"  # a fraction 0..1, shown as 12.3%
    SECONDS = "seconds"  # a duration in seconds, shown as 1h 02m / 3m 20s / 45s
    DATE = "date"
    DATETIME = "datetime"


# A red/amber/green status is shown in colour and in words, never colour alone.
RAG_WORDS = {"green": "meets the target", "amber": "just misses the target", "red": "misses the target"}


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: Kind | str = Kind.TEXT
    # When the table has a drill function, cells of drill columns link to the items behind them.
    drill: bool = False
    # A drill column whose cell lists other rows than the row's link: the link with its ``metric`` set to this.
    drill_metric: str = ""
    # A rate from counted observations: the row keys of its interval bounds and of the positives or items it rests
    # on; the page shows "83.3% [71.0%, 91.2%]" or "too few to judge" (``ops_platform.core.figures``).
    interval: tuple[str, str] | None = None
    positives: str | None = None
    items: str | None = None
    # Carried in CSV and JSON, not a column of its own on the page (an interval bound shown beside its figure).
    hidden: bool = False


Row = dict[str, Any]


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[Row]
    drill: Callable[[Row], str | None] | None = None
    notes: list[str] = field(default_factory=list)
    row_link_label: str = "items"  # the text of a row's link when no column drills

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.columns]

    def column(self, key: str) -> Column:
        return next(c for c in self.columns if c.key == key)

    def values(self, key: str) -> list[Any]:
        return [row.get(key) for row in self.rows]

    # --- HTML ------------------------------------------------------------------------------------------

    @property
    def shown_columns(self) -> list[Column]:
        return [c for c in self.columns if not c.hidden]

    def html_rows(self) -> list[dict[str, Any]]:
        """Cells as display text plus an optional link, for ``analytics/_table.html`` (which escapes them)."""
        drill_columns = {c.key for c in self.columns if c.drill}
        out = []
        for row in self.rows:
            url = self.drill(row) if self.drill else None
            cells = [
                {
                    "text": cell_text(row, c),
                    "numeric": c.kind not in (Kind.TEXT, Kind.DATE, Kind.DATETIME),
                    "url": cell_url(url, c.drill_metric) if c.key in drill_columns else None,
                    "rag": RAG_WORDS.get(str(row.get(c.key))) if c.key.endswith("_status") else None,
                    "rag_status": str(row.get(c.key)),
                }
                for c in self.shown_columns
            ]
            out.append({"cells": cells, "url": url if url and not drill_columns else None})
        return out

    @property
    def has_row_links(self) -> bool:
        return self.drill is not None and not any(c.drill for c in self.columns)

    # --- JSON ------------------------------------------------------------------------------------------

    def content(self) -> dict[str, Any]:
        """What the table shows, without its drill-down links (a function of these rows and the filter): what its
        charts and its cached HTML are keyed by, cheap to compute for a thousand rows."""
        rows = [{c.key: json_value(row.get(c.key)) for c in self.columns} for row in self.rows]
        return {
            "title": self.title,
            "columns": [{"key": c.key, "label": c.label, "kind": str(c.kind)} for c in self.columns],
            "rows": rows,
            "notes": self.notes,
        }

    def as_json(self) -> dict[str, Any]:
        body = self.content()
        if self.drill is not None:
            body["drill"] = [self.drill(row) for row in self.rows]
            if metrics := {c.key: c.drill_metric for c in self.columns if c.drill and c.drill_metric}:
                body["drill_cells"] = {
                    key: [cell_url(url, metric) for url in body["drill"]] for key, metric in metrics.items()
                }
        return body

    # --- CSV -------------------------------------------------------------------------------------------

    def csv_lines(self) -> Iterator[list[Any]]:
        """The header, then each row's plain values (``ops_platform.core.csv_export`` makes every cell safe)."""
        yield [c.label for c in self.columns]
        for row in self.rows:
            yield [json_value(row.get(c.key)) for c in self.columns]


def cell_url(url: str | None, metric: str) -> str | None:
    """A row's drill link for one of its cells: the same link with ``metric`` replaced (none: the row's own)."""
    if url is None or not metric:
        return url
    parts = urlsplit(url)
    query = [(k, metric if k == "metric" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return f"{parts.path}?{urlencode(query)}"


def json_value(value: Any) -> Any:
    """Plain JSON types: dates as ISO strings, Decimals and durations as floats, NaN/inf as null."""
    if isinstance(value, datetime):
        return timezone.localtime(value).isoformat() if timezone.is_aware(value) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        value = float(value)
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def cell_text(row: Row, column: Column) -> str:
    """A cell as the page shows it: a judged rate with its interval (or "too few to judge"), else ``display``."""
    if column.interval is None and column.positives is None and column.items is None:
        return display(row.get(column.key), column.kind)
    value = json_value(row.get(column.key))
    low, high = (json_value(row.get(k)) for k in column.interval) if column.interval else (None, None)
    fmt = "{:.1%}" if column.kind == Kind.PERCENT else "{:.3f}"
    return figure_text(
        value,
        low,
        high,
        positives=json_value(row.get(column.positives)) if column.positives else None,
        items=json_value(row.get(column.items)) if column.items else None,
        fmt=fmt,
    )


def display(value: Any, kind: Kind | str) -> str:
    value = json_value(value) if not isinstance(value, date | datetime) else value
    if value is None or value == "":
        return "—"
    if kind == Kind.PERCENT:
        return f"{float(value) * 100:.1f}%"
    if kind == Kind.INT:
        return f"{round(float(value)):,}"
    if kind == Kind.FLOAT:
        return f"{float(value):,.2f}"
    if kind == Kind.SECONDS:
        return duration_text(float(value))
    if kind == Kind.DATETIME and isinstance(value, datetime):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if timezone.is_aware(value) else str(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def as_of_text(at: datetime | None, *, now: datetime | None = None) -> str:
    """How fresh a figure is, in the viewer's local time: "as of 14:02", with the date when not today."""
    if at is None:
        return "not computed yet"
    local = timezone.localtime(at)
    if local.date() == timezone.localtime(now or timezone.now()).date():
        return f"as of {local:%H:%M}"
    return f"as of {local:%Y-%m-%d %H:%M}"


def duration_text(seconds: float) -> str:
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def filter_params(f: MetricFilter) -> dict[str, str]:
    params = {"start": f.start.isoformat(), "end": f.end.isoformat()}
    for key, value in (("queue", f.queue_id), ("vendor", f.vendor_id), ("policy", f.policy_id)):
        if value is not None:
            params[key] = str(value)
    # The classifier choices only when not the default: every other panel's links stay as they were.
    for key, choice, default in (("truth", f.truth, TRUTHS[0]), ("view", f.view, VIEWS[0])):
        if choice != default:
            params[key] = choice
    return params


def items_url(f: MetricFilter, **params: Any) -> str:
    """The drill-down page listing the items behind a number: the filter plus the slice (see ``ItemsQuery``).

    ``day`` narrows the period to one day; ``None`` values are left out.
    """
    day = params.pop("day", None)
    query = filter_params(f)
    if day is not None:
        query["start"] = query["end"] = day.isoformat() if isinstance(day, date) else str(day)
    query.update({k: str(v) for k, v in params.items() if v is not None})
    return f"{_items_path()}?{urlencode(query)}"


@lru_cache(maxsize=1)
def _items_path() -> str:
    """The drill-down page's path, reversed once: a dashboard page links hundreds of cells to it."""
    return reverse("analytics-items")


TABLE_HTML_SECONDS = 60 * 60  # keyed by content, never stale: this only bounds memory


def table_html_cached(table: Table, panel: str, f: MetricFilter) -> SafeString:
    """A panel's table as HTML, cached under a digest of what it shows (its rows and the filter its drill-down
    links carry): an area page lists over a thousand rows with a drill-down link each, and formatting them took
    seconds a page at a million decisions (issue 19). The same for every viewer: the table has no per-user part.
    The periodic refresh formats the default period's ahead of the pages (``analytics.panels.charts_warm``)."""
    body = json.dumps([panel, table.content(), filter_params(f)], sort_keys=True, default=str)
    key = "analytics:table-html:" + hashlib.sha256(body.encode()).hexdigest()
    html: str | None = cache.get(key)
    if html is None:
        html = render_to_string("analytics/_table.html", {"table": table})
        cache.set(key, html, TABLE_HTML_SECONDS)
    return mark_safe(html)  # noqa: S308 - our own template's output, every value escaped in it
