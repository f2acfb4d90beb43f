"""Extension point for the reviewer's item page: apps above ``queues`` (routing's scores and rule, QA later)
add a panel without ``queues`` importing them. A panel is a function of the item returning a template
and its context, or None when it has nothing to show."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from queues.models import ReviewItem


@dataclass(frozen=True)
class Panel:
    title: str
    template: str
    context: dict[str, Any]
    # "side": a card beside the item; "content": inside the item's own card (its media).
    placement: str = "side"


PanelProvider = Callable[[ReviewItem], Panel | None]
_PROVIDERS: list[tuple[int, PanelProvider]] = []


def panel_register(provider: PanelProvider, *, order: int = 100) -> None:
    if all(p is not provider for _, p in _PROVIDERS):
        _PROVIDERS.append((order, provider))
        _PROVIDERS.sort(key=lambda pair: pair[0])


def panels_for(item: ReviewItem) -> list[Panel]:
    return [panel for _, provider in _PROVIDERS if (panel := provider(item)) is not None]
