"""Text that breaks naive handling: bidi controls, invisible characters, emoji sequences, NUL."""
# ruff: noqa: RUF001 - confusable characters are the point of these samples

from __future__ import annotations

import html
import re

from ops_platform.core.templatetags.content import reveal

UNICODE_SAMPLES = {
    # Right-to-left scripts with explicit overrides: "‮" flips what follows unless the page isolates it.
    "rtl_bidi_controls": (
        "\u202egpj.exe\u202c שלום \u2067عربى\u2069 \u200fمرحبا\u200e end \u202aLRE\u202c \u2066LRI\u2069"
    ),
    "zero_width": "zero\u200bwidth\u200djoiner\ufeffbom\u2060word\u200cjoiner",
    "emoji_zwj_and_skin_tones": "👩\u200d👩\u200d👧\u200d👦 👍🏽 🧑🏿\u200d🚀 🏳️\u200d🌈 ❤️\u200d🔥 🇺🇦",
    "combining_marks": "e\u0301 n\u0303 Z\u0351\u0352\u0353\u0354\u0355\u0356\u0357\u0358\u0359 a\u0308\u0304",
    "astral_plane": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈 𓂀 𠜎𠜱 \U0001f9ea \U000e0041\U000e007f",
    "nul": "before\x00after\x00\x00end",
    # U+E000 is the NUL-safe fields' escape character: sent as text it must come back as itself.
    "escape_character": "\ue000 \ue0000 \ue000\ue000 \x00\ue000 \ue000\x00",
    "everything": "\u202e👩\u200d💻\x00e\u0301\u200b𝔘\ue000",
}


def as_read(text: str) -> str:
    """What a reader sees of ``text`` on a reviewer page: each hidden character as its marker's short name."""
    return html.unescape(re.sub(r"<[^>]+>", "", reveal(text)))
