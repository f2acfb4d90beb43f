"""Charts as Vega-Lite specs (altair), rendered to inline SVG on the server by vl-convert: no JS, no network.

The SVG carries only the data passed in, and vl-convert escapes it (text nodes and attributes alike); as a
second line of defence every rendered SVG is parsed and refused if it holds a script, an event handler, a
link or foreign content. Rendering costs ~50-100 ms per chart once warm (the first render in a process loads
the Vega runtime, ~0.6 s), and building the spec with altair ~0.1 s more, so SVGs are cached by the hash of what
they are drawn from (``svgs_cached``) and of their spec (``render_svg``); ``analytics.panels.charts_warm`` draws
the default pages' charts from the periodic job, ahead of the first request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import altair as alt
import vl_convert as vlc
from django.core.cache import cache

from analytics.tables import Kind, Table, json_value
from ops_platform.core.figures import TOO_FEW, too_few

logger = logging.getLogger(__name__)

CACHE_SECONDS = 24 * 3600  # keys are digests of the content: an entry is never stale, only unused
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


def svgs_cached(what: Any, build: Callable[[], list[Chart]]) -> list[str]:
    """The SVGs of the charts ``build`` makes, cached under a digest of ``what`` (the panel and its table: every
    input the charts are drawn from), so a repeated page builds no Vega-Lite spec at all (altair's validation
    costs ~0.1 s a chart). Keyed by content, an entry can never be stale, so it lives as long as the SVGs."""
    body = json.dumps(what, sort_keys=True, default=str)
    key = "analytics:svgs:" + hashlib.sha256(body.encode()).hexdigest()
    svgs: list[str] | None = cache.get(key)
    if svgs is None:
        svgs = [chart.svg() for chart in build()]
        cache.set(key, svgs, CACHE_SECONDS)
    return svgs


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


# Age buckets are drawn by their labels, in age order (not alphabetically: "gt3d" before "lt1h").
AGE_LABELS = {"lt1h": "< 1 h", "1-4h": "1-4 h", "4-24h": "4-24 h", "1-3d": "1-3 d", "gt3d": "> 3 d"}
AGE_COLUMNS = {"age_bucket"}


def duration_unit(table: Table, key: str) -> tuple[float, str] | None:
    """How a duration column is drawn: (seconds per unit, unit name) chosen by its largest value, so an axis
    reads in hours or minutes, never in raw seconds up to 60,000; None for any other column."""
    if table.column(key).kind != Kind.SECONDS:
        return None
    top = max((abs(float(v)) for v in (json_value(row.get(key)) for row in table.rows) if v is not None), default=0)
    if top >= 2 * 3600:
        return 3600.0, "hours"
    if top >= 120:
        return 60.0, "minutes"
    return 1.0, "seconds"


def _value(table: Table, key: str, value: Any, unit: tuple[float, str] | None) -> Any:
    value = json_value(value)
    if value is None:
        return None
    if unit is not None:
        return float(value) / unit[0]
    if key in AGE_COLUMNS:
        return AGE_LABELS.get(value, value)
    return value


def _values(table: Table, keys: list[str]) -> list[dict[str, Any]]:
    units = {k: duration_unit(table, k) for k in keys}
    return [{k: _value(table, k, row.get(k), units[k]) for k in keys} for row in table.rows]


def _type(table: Table, key: str) -> str:
    kind = table.column(key).kind
    if kind in (Kind.DATE, Kind.DATETIME):
        return "temporal"
    if kind == Kind.TEXT:
        return "nominal"
    return "quantitative"


def _field(table: Table, key: str, **kw: Any) -> dict[str, Any]:
    column = table.column(key)
    unit = duration_unit(table, key)
    title = f"{column.label} ({unit[1]})" if unit else column.label
    enc = {"field": key, "type": _type(table, key), "title": title, **kw}
    if column.kind == Kind.PERCENT:
        enc.setdefault("axis", {"format": "%"})
    if key in AGE_COLUMNS:
        enc["sort"] = list(AGE_LABELS.values())
        enc.setdefault("scale", {"domain": list(AGE_LABELS.values())})
    return enc


def _base(table: Table, keys: list[str], title: str | None) -> alt.Chart:
    return alt.Chart(alt.Data(values=_values(table, keys)), title=title or table.title).properties(
        width=WIDTH, height=HEIGHT
    )


def _spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    spec: dict[str, Any] = chart.to_dict()
    config = spec.setdefault("config", {})
    config["font"] = "system-ui, sans-serif"
    # Legends whole: Vega cuts labels and titles at 160 px by default ("Age bucke").
    config["legend"] = {"labelLimit": 0, "titleLimit": 0}
    config.setdefault("axis", {})["titleLimit"] = 0
    return spec


def _color(table: Table, color: str | None) -> dict[str, Any]:
    return {"color": _field(table, color)} if color else {}


# A bar whose figure rests on too few observations (``ops_platform.core.figures``) is drawn apart: grey, dashed
# outline, faded, with a legend that says why, never as a plain bar of the same weight as a judged one.
JUDGED, UNJUDGED = "judged", TOO_FEW
JUDGEMENT = "_figure"


def _too_few_rows(table: Table, y: str) -> list[bool] | None:
    """Per row, whether its ``y`` rests on too few observations; None when ``y`` is not a judged rate."""
    column = table.column(y)
    if column.items is None and column.positives is None:
        return None

    def count(row: dict[str, Any], key: str | None) -> float | None:
        value = json_value(row.get(key)) if key else None
        return None if value is None else float(value)

    return [too_few(items=count(r, column.items), positives=count(r, column.positives)) for r in table.rows]


def bar(table: Table, *, x: str, y: str, color: str | None = None, title: str | None = None) -> Chart:
    keys = [k for k in (x, y, color) if k]
    few = _too_few_rows(table, y)
    if few is None or not any(few):
        chart = _base(table, keys, title).mark_bar()
        chart = chart.encode(x=_field(table, x), y=_field(table, y), **_color(table, color))
        return Chart(title or table.title, _spec(chart))
    values = [{**v, JUDGEMENT: UNJUDGED if f else JUDGED} for v, f in zip(_values(table, keys), few, strict=True)]
    legend = {
        "title": "Figure",
        "labelExpr": f"datum.label == '{UNJUDGED}' ? 'too few to judge (faded, dashed)' : datum.label",
    }
    domain: dict[str, Any] = {"domain": [JUDGED, UNJUDGED]}
    judged: dict[str, Any] = {"field": JUDGEMENT, "type": "nominal", "scale": domain}
    encoding: dict[str, Any] = {
        "x": _field(table, x),
        "y": _field(table, y),
        # One legend for the judgement (Vega-Lite merges channels of one field only when every one has it).
        "opacity": {**judged, "scale": {**domain, "range": [1.0, 0.3]}, "legend": legend},
        "strokeDash": {**judged, "scale": {**domain, "range": [[1, 0], [4, 3]]}, "legend": legend},
    }
    if color:
        encoding["color"] = _field(table, color)
    else:
        encoding["color"] = {**judged, "scale": {**domain, "range": ["#4c78a8", "#9e9e9e"]}, "legend": legend}
    chart = (
        alt.Chart(alt.Data(values=values), title=title or table.title)
        .properties(width=WIDTH, height=HEIGHT)
        .mark_bar(stroke="#555", strokeWidth=1)
        .encode(**encoding)
    )
    return Chart(title or table.title, _spec(chart))


def stacked_bar(table: Table, *, x: str, y: str, color: str, title: str | None = None) -> Chart:
    keys = [x, y, color]
    order = (
        {"order": {"field": "_age", "type": "quantitative"}} if color in AGE_COLUMNS else {}
    )  # stack in age order too
    base = _base(table, keys, title)
    if order:
        rank = {label: i for i, label in enumerate(AGE_LABELS.values())}
        values = [{**v, "_age": rank.get(v[color], len(rank))} for v in _values(table, keys)]
        base = alt.Chart(alt.Data(values=values), title=title or table.title).properties(width=WIDTH, height=HEIGHT)
    chart = base.mark_bar().encode(
        x=_field(table, x), y=_field(table, y, stack="zero"), color=_field(table, color), **order
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
