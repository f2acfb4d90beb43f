"""The ``visible_chars`` filter: client text escaped, and every character a reader cannot see shown by name."""

from __future__ import annotations

import re

import pytest
from django.template import Context, Template

from ops_platform.core.templatetags.content import HIDDEN, visible_chars

MARKER = re.compile(r'<span class="invisible-char" title="([^"]+)" aria-label="[^"]+">([A-Z]+)</span>')


def shown_text(html: str) -> str:
    """What a reader sees: tags dropped (a marker shows its short name)."""
    return re.sub(r"<[^>]+>", "", html)


def test_a_right_to_left_override_is_a_named_marker_and_the_file_name_reads_as_sent():
    html = visible_chars("Pay here \u202egnp.exe")

    assert "\u202e" not in html, "the override itself is gone, so it reorders nothing"
    assert MARKER.findall(html) == [("RIGHT-TO-LEFT OVERRIDE (U+202E)", "RLO")]
    assert shown_text(html) == "Pay here RLOgnp.exe"
    assert "exe.png" not in shown_text(html)


@pytest.mark.parametrize("char", sorted(HIDDEN))
def test_every_bidi_control_and_zero_width_character_is_marked(char: str):
    html = visible_chars(f"a{char}b")

    assert char not in html
    assert [short for _, short in MARKER.findall(html)] == [HIDDEN[char]]


def test_the_content_is_escaped_before_markers_go_in():
    html = visible_chars('<img src=x onerror="alert(1)">\u200b<b>')

    assert "<img" not in html
    assert "<b>" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert len(MARKER.findall(html)) == 1


def test_joiners_doing_their_job_stay_and_the_same_joiners_elsewhere_are_marked():
    family = "\U0001f469\u200d\U0001f4bb \U0001f469\U0001f3fd\u200d\U0001f692 \u2764\ufe0f\u200d\U0001f525"
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # "I want" in Persian
    devanagari = "\u0915\u094d\u200d\u0937"  # a half form of ka before ssa

    for kept in (family, persian, devanagari):
        assert visible_chars(kept) == kept
    assert [s for _, s in MARKER.findall(visible_chars("k\u200dill k\u200cill \u200d\U0001f600"))] == [
        "ZWJ",
        "ZWNJ",
        "ZWJ",
    ]


def test_nul_keeps_its_placeholder_and_none_is_empty():
    assert (
        visible_chars("a\x00b")
        == 'a<span class="nul" title="NUL character (U+0000)" aria-label="NUL character">NUL</span>b'
    )
    assert visible_chars(None) == ""


def test_the_filter_in_a_template_autoescapes_nothing_twice():
    rendered = Template("{% load content %}{{ v|visible_chars }}").render(Context({"v": "a & b\u2066"}))

    assert rendered.startswith("a &amp; b<span")
    assert "&amp;amp;" not in rendered
