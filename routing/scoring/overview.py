"""Extension point for the scoring overview page: the parts of routing above scoring (rules' incidents, intake's
dead letters) add their section without scoring importing them. A section is a function returning the template
context it fills; each is registered once, in ``RoutingConfig.ready()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

OverviewSection = Callable[[], dict[str, Any]]
_SECTIONS: list[OverviewSection] = []


def overview_section_register(section: OverviewSection) -> None:
    if all(s is not section for s in _SECTIONS):
        _SECTIONS.append(section)


def overview_sections() -> dict[str, Any]:
    """The context every registered section adds to the page."""
    context: dict[str, Any] = {}
    for section in _SECTIONS:
        context.update(section())
    return context
