"""Charts as Vega-Lite specs (altair), rendered to inline SVG on the server by vl-convert: no JS, no network.

The SVG carries only the data passed in, and vl-convert escapes it (text nodes and attributes alike); as a
second line of defence every rendered SVG is parsed and refused if it holds a script, an event handler, a
link or foreign content. Rendering costs ~50-100 ms per chart once warm (the first render in a process loads
the Vega runtime, ~0.6 s), so SVGs are cached briefly by the hash of their spec.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import altair as alt
import vl_convert as vlc
from django.core.cache import cache

from analytics.tables import Kind, Table, json_value

logger = logging.getLogger(__name__)

CACHE_SECONDS = 300
WIDTH = 560
HEIGHT = 220
SVG_NS = "{http://www.w3.org/2000/svg}"
ALLOWED_TAGS = {"svg", "g", "path", "rect", "line", "text", "tspan", "defs", "clipPath", "title", "desc", "circle"}


class UnsafeSvg(ValueError):
    pass


@dataclass(frozen=True)
class Chart:
    title: str
    spec: dict[str, Any]

    def svg(self) -> str:
        return render_svg(self.spec)


def render_svg(spec: dict[str, Any]) -> str:
    body = json.dumps(spec, sort_keys=True, default=str)
    key = "analytics:svg:" + hashlib.sha256(body.encode()).hexdigest()
    svg: str | None = cache.get(key)
    if svg is None:
        started = time.perf_counter()
        svg = vlc.vegalite_to_svg(spec)
        logger.debug("chart rendered in %.0f ms", (time.perf_counter() - started) * 1000)
        check_svg(svg)
        cache.set(key, svg, CACHE_SECONDS)
    return svg


def check_svg(svg: str) -> None:
    """Refuse anything beyond plain drawing: a renderer bug must not become a script in an ops page."""
    # The input is our own renderer's output (no DTD, no entities), not a client's document.
    root = ET.fromstring(svg)  # noqa: S314
    for element in root.iter():
        tag = element.tag.removeprefix(SVG_NS)
        if tag not in ALLOWED_TAGS:
            raise UnsafeSvg(f"unexpected <{tag}> in a chart")
        for name in element.attrib:
            bare = name.rsplit("}", 1)[-1].lower()
            if bare.startswith("on") or bare == "href":
                raise UnsafeSvg(f"unexpected attribute {bare} in a chart")


def _values(table: Table, keys: list[str]) -> list[dict[str, Any]]:
    return [{k: json_value(row.get(k)) for k in keys} for row in table.rows]


def _type(table: Table, key: str) -> str:
    kind = table.column(key).kind
    if kind in (Kind.DATE, Kind.DATETIME):
        return "temporal"
    if kind == Kind.TEXT:
        return "nominal"
    return "quantitative"


def _field(table: Table, key: str, **kw: Any) -> dict[str, Any]:
    column = table.column(key)
    enc = {"field": key, "type": _type(table, key), "title": column.label, **kw}
    if column.kind == Kind.PERCENT:
        enc.setdefault("axis", {"format": "%"})
    return enc


def _base(table: Table, keys: list[str], title: str | None) -> alt.Chart:
    return alt.Chart(alt.Data(values=_values(table, keys)), title=title or table.title).properties(
        width=WIDTH, height=HEIGHT
    )


def _spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    spec: dict[str, Any] = chart.to_dict()
    spec.setdefault("config", {})["font"] = "system-ui, sans-serif"
    return spec


def _color(table: Table, color: str | None) -> dict[str, Any]:
    return {"color": _field(table, color)} if color else {}


def bar(table: Table, *, x: str, y: str, color: str | None = None, title: str | None = None) -> Chart:
    keys = [k for k in (x, y, color) if k]
    chart = _base(table, keys, title).mark_bar().encode(x=_field(table, x), y=_field(table, y), **_color(table, color))
    return Chart(title or table.title, _spec(chart))


def stacked_bar(table: Table, *, x: str, y: str, color: str, title: str | None = None) -> Chart:
    keys = [x, y, color]
    chart = (
        _base(table, keys, title)
        .mark_bar()
        .encode(x=_field(table, x), y=_field(table, y, stack="zero"), color=_field(table, color))
    )
    return Chart(title or table.title, _spec(chart))


def line(table: Table, *, x: str, y: str, color: str | None = None, title: str | None = None) -> Chart:
    keys = [k for k in (x, y, color) if k]
    chart = (
        _base(table, keys, title)
        .mark_line(point=True)
        .encode(x=_field(table, x), y=_field(table, y), **_color(table, color))
    )
    return Chart(title or table.title, _spec(chart))


def pr_curve(
    table: Table,
    *,
    recall: str = "recall",
    precision: str = "precision",
    color: str | None = None,
    title: str | None = None,
) -> Chart:
    """Precision against recall, both on [0, 1]; ``order`` keeps the line in the table's row order."""
    keys = [k for k in (recall, precision, color) if k]
    values = [{**v, "_order": i} for i, v in enumerate(_values(table, keys))]
    chart = (
        alt.Chart(alt.Data(values=values), title=title or table.title)
        .properties(width=WIDTH, height=HEIGHT)
        .mark_line()
        .encode(
            x=_field(table, recall, scale={"domain": [0, 1]}),
            y=_field(table, precision, scale={"domain": [0, 1]}),
            order={"field": "_order", "type": "quantitative"},
            **_color(table, color),
        )
    )
    return Chart(title or table.title, _spec(chart))


def calibration(
    table: Table,
    *,
    predicted: str = "predicted",
    observed: str = "observed",
    color: str | None = None,
    title: str | None = None,
) -> Chart:
    """Observed rate against mean predicted probability per bin, over the diagonal of perfect calibration."""
    keys = [k for k in (predicted, observed, color) if k]
    points = (
        _base(table, keys, title)
        .mark_line(point=True)
        .encode(
            x=_field(table, predicted, scale={"domain": [0, 1]}),
            y=_field(table, observed, scale={"domain": [0, 1]}),
            **_color(table, color),
        )
    )
    diagonal = (
        alt.Chart(alt.Data(values=[{predicted: 0, observed: 0}, {predicted: 1, observed: 1}]))
        .mark_line(strokeDash=[4, 4], color="#999")
        .encode(x=f"{predicted}:Q", y=f"{observed}:Q")
    )
    chart = alt.layer(diagonal, points, title=title or table.title).properties(width=WIDTH, height=HEIGHT)
    return Chart(title or table.title, _spec(chart))


def band_line(
    table: Table,
    *,
    x: str,
    y: str,
    lower: str,
    upper: str,
    series: str,
    title: str | None = None,
) -> Chart:
    """A line per ``series`` value (e.g. history, forecast) with a shaded ``lower`` to ``upper`` interval."""
    keys = [x, y, lower, upper, series]
    base = _base(table, keys, None)
    band = base.mark_area(opacity=0.25).encode(
        x=_field(table, x), y=_field(table, lower, title="Volume"), y2=alt.Y2(upper)
    )
    lines = base.mark_line(point=True).encode(x=_field(table, x), y=_field(table, y), color=_field(table, series))
    chart = alt.layer(band, lines, title=title or table.title).properties(width=WIDTH, height=HEIGHT)
    return Chart(title or table.title, _spec(chart))
