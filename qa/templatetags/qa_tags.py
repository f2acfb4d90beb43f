"""Template filters that show every QA figure with its interval, so nobody reads a point estimate alone."""

from __future__ import annotations

from django import template

from qa.statistics import Estimate

register = template.Library()


def _show(e: Estimate | None, fmt: str) -> str:
    if e is None:
        return "—"
    mark = " (no disagreement to measure)" if e.degenerate else ""
    return f"{fmt.format(e.value)} [{fmt.format(e.low)}, {fmt.format(e.high)}] n={e.n}{mark}"


@register.filter
def pct(e: Estimate | None) -> str:
    """A proportion as a percentage with its 95% interval: 91.2% [85.0%, 95.1%] n=40."""
    return _show(e, "{:.1%}")


@register.filter
def est(e: Estimate | None) -> str:
    """A coefficient (kappa, alpha) with its 95% interval: 0.812 [0.700, 0.900] n=40."""
    return _show(e, "{:.3f}")


@register.filter
def get(mapping: dict[object, object], key: object) -> object:
    return mapping.get(key) if mapping else None
