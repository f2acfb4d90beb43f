"""Showing attacker-controlled text: escaped, and with the characters a reader cannot see made visible.

Bidi controls reorder what follows them (``Pay here \\u202egnp.exe`` displays as "Pay here exe.png") and
zero-width characters split or join words invisibly (``k\\u200bill`` slips past a keyword search yet reads
"kill"). A reviewer must see them: each is replaced by its short name in a dashed box (base.css), with the
full name on hover. Replaced, not kept beside the marker: a kept override would still reorder the text.

Joiners doing their ordinary job stay: ZWJ inside an emoji sequence (👩‍💻) and ZWJ/ZWNJ between letters of a
script that shapes with them (Arabic, Persian, the Indic scripts). Everywhere else they are marked.
"""

from __future__ import annotations

import re
import unicodedata

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# The word in a dashed box (base.css), so it cannot be mistaken for the same letters sent as text. Not
# U+2400 SYMBOL FOR NULL: the fonts reviewers' machines have often lack it, and a missing glyph shows nothing.
NUL_PLACEHOLDER = '<span class="nul" title="NUL character (U+0000)" aria-label="NUL character">NUL</span>'

# Character -> the short name shown. The full name (title, aria-label) comes from unicodedata.
HIDDEN: dict[str, str] = {
    "\u061c": "ALM",
    "\u200b": "ZWSP",
    "\u200c": "ZWNJ",
    "\u200d": "ZWJ",
    "\u200e": "LRM",
    "\u200f": "RLM",
    "\u202a": "LRE",
    "\u202b": "RLE",
    "\u202c": "PDF",
    "\u202d": "LRO",
    "\u202e": "RLO",
    "\u2060": "WJ",
    "\u2066": "LRI",
    "\u2067": "RLI",
    "\u2068": "FSI",
    "\u2069": "PDI",
    "\ufeff": "BOM",
}
_HIDDEN = re.compile("[\x00" + "".join(HIDDEN) + "]")
ZWJ, ZWNJ, VS16 = "\u200d", "\u200c", "\ufe0f"
# Scripts whose letters ZWJ/ZWNJ shape (the ranges of Arabic, Syriac, the Indic scripts and their presentation
# forms): between two of their letters a joiner is spelling, not a trick.
_JOINING_SCRIPTS = re.compile("[\u0600-\u08ff\u0900-\u0dff\ufb50-\ufdff\ufe70-\ufefc]")


def _is_emoji(char: str) -> bool:
    return char == VS16 or unicodedata.category(char) == "So" or 0x1F000 <= ord(char) <= 0x1FAFF


def _ordinary_joiner(text: str, at: int) -> bool:
    before, after = text[at - 1 : at], text[at + 1 : at + 2]
    if not before or not after:
        return False
    if text[at] == ZWJ and _is_emoji(before) and _is_emoji(after):
        return True
    return bool(_JOINING_SCRIPTS.match(before) and _JOINING_SCRIPTS.match(after))


def _marker(char: str) -> str:
    if char == "\x00":
        return NUL_PLACEHOLDER
    name = unicodedata.name(char, "FORMAT CHARACTER")
    return f'<span class="invisible-char" title="{name} (U+{ord(char):04X})" aria-label="{name}">{HIDDEN[char]}</span>'


def reveal(text: str) -> str:
    """``text`` escaped, with each hidden character as its marker (HTML, safe to mark safe)."""

    def replace(match: re.Match[str]) -> str:
        char = match.group()
        if char in (ZWJ, ZWNJ) and _ordinary_joiner(match.string, match.start()):
            return char
        return _marker(char)

    # Escape first: the markers are the only markup in the result, and they hold none of the text.
    return _HIDDEN.sub(replace, str(conditional_escape(text)))


@register.filter(is_safe=True)
def visible_chars(value: object) -> SafeString:
    """Escape the value, then show NUL, bidi controls and zero-width characters as marked placeholders."""
    return mark_safe(reveal("" if value is None else str(value)))  # noqa: S308 - escaped in reveal; the spans are ours
