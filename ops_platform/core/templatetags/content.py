"""Showing attacker-controlled text: escaped, and with the characters a reader cannot see made visible."""

from __future__ import annotations

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# The word in a dashed box (base.css), so it cannot be mistaken for the same letters sent as text. Not
# U+2400 SYMBOL FOR NULL: the fonts reviewers' machines have often lack it, and a missing glyph shows nothing.
NUL_PLACEHOLDER = '<span class="nul" title="NUL character (U+0000)" aria-label="NUL character">NUL</span>'


@register.filter(is_safe=True)
def visible_nul(value: object) -> SafeString:
    """Escape the value, then show each U+0000 as a marked placeholder (browsers drop it silently)."""
    escaped = str(conditional_escape("" if value is None else str(value)))
    return mark_safe(escaped.replace("\x00", NUL_PLACEHOLDER))  # noqa: S308 - escaped above; the span is ours
