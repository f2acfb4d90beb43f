"""Numbers in words and human units, for every page (issue 19): durations as "1 day" or "20 h 16 min", never
"1 day, 0:00:00" or 86,400; fractions as percentages; a slice such as ``{"queue": "general"}`` as
"queue general". One place, so a figure reads the same on every page. ``{% load units %}``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django import template

register = template.Library()


def duration_words(value: timedelta | float | int | None) -> str:
    """A duration (a timedelta, or seconds) in its two largest units: "2 days 4 h", "1 day", "20 h 16 min",
    "3 min 20 s", "45 s"; "—" for nothing."""
    if value is None or value == "":
        return "—"
    seconds = round(value.total_seconds() if isinstance(value, timedelta) else float(value))
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        (days, f"{days} day" + ("s" if days != 1 else "")),
        (hours, f"{hours} h"),
        (minutes, f"{minutes} min"),
        (secs, f"{secs} s"),
    ]
    first = next((i for i, (n, _) in enumerate(parts) if n), len(parts) - 1)
    shown = [text for n, text in parts[first : first + 2] if n] or ["0 s"]
    return sign + " ".join(shown)


@register.filter
def duration(value: timedelta | float | int | None) -> str:
    return duration_words(value)


@register.filter
def percent(value: float | None, digits: int = 1) -> str:
    """A fraction 0..1 as a percentage: 0.946 -> "94.6%"."""
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.{int(digits)}f}%"


def slice_words(value: Any) -> str:
    """A slice of the data named by its dimensions: {"queue": "general", "vendor": "meridian"} -> "queue general ·
    vendor meridian" (underscores read as spaces)."""
    if isinstance(value, Mapping):
        return " · ".join(f"{str(k).replace('_', ' ')} {v}" for k, v in value.items())
    return "" if value is None else str(value)


@register.filter(name="slice_words")
def slice_words_filter(value: Any) -> str:
    return slice_words(value)
