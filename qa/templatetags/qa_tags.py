"""Template filters that show every QA figure with its interval, so nobody reads a point estimate alone."""

from __future__ import annotations

from django import template

from ops_platform.core.figures import TOO_FEW, figure_text
from qa.statistics import Estimate

register = template.Library()


def _show(e: Estimate | None, fmt: str) -> str:
    """The shared rendering (``ops_platform.core.figures``): under MIN_ITEMS units, "too few to judge"."""
    if e is None:
        return "—"
    text = figure_text(e.value, e.low, e.high, items=e.n, fmt=fmt)
    if text.startswith(TOO_FEW) or text == "—":
        return text
    mark = " (no disagreement to measure)" if e.degenerate else ""
    return f"{text} n={e.n}{mark}"


@register.filter
def pct(e: Estimate | None) -> str:
    """A proportion as a percentage with its 95% interval: 91.2% [85.0%, 95.1%] n=40; under 30 units, too few."""
    return _show(e, "{:.1%}")


@register.filter
def est(e: Estimate | None) -> str:
    """A coefficient (kappa, alpha) with its 95% interval: 0.812 [0.700, 0.900] n=40."""
    return _show(e, "{:.3f}")


@register.filter
def get(mapping: dict[object, object], key: object) -> object:
    return mapping.get(key) if mapping else None
