"""``{% figure value low high items=n positives=p fmt="{:.3f}" %}``: a rate with its interval, or "too few to judge"."""

from __future__ import annotations

from typing import Any

from django import template

from ops_platform.core.figures import figure_text

register = template.Library()


@register.simple_tag
def figure(
    value: Any, low: Any = None, high: Any = None, *, items: Any = None, positives: Any = None, fmt: str = "{:.1%}"
) -> str:
    return figure_text(value, low, high, items=items, positives=positives, fmt=fmt)
