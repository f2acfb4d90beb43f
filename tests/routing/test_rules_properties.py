"""Property: any condition the checker accepts compiles, evaluates on any row (compiled, interpreted and by
columns, with one answer) and backtests over stored items without an exception; any it refuses is refused with a
line and a column, never a crash. Conditions are drawn from the grammar and vocabulary, up to and past the
nesting limit; rows and stored items carry the edge values integrating services can send."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops_platform.core.models import ClassifierCategory
from queues.models import ItemState, Queue, ReviewItem
from routing.models import RuleAction, RuleSetKind
from routing.rules.backtest import backtest_compute
from routing.rules.engine import RuleProgram, RuleSpec, child_safety_flagged
from routing.rules.features import item_rows
from routing.rules.language import (
    MAX_NESTING,
    RuleLanguageError,
    compile_rules,
    evaluate_columns,
    interpret,
    parse,
    score_key,
)
from tests.routing.rules_setup import item_received, scores_write, unscored_mark
from tests.routing.test_rules_language import VOCABULARY, columns_from

NUMBER_NAMES = [
    "report_count",
    "media_count",
    "author.prior_violations",
    "author.prior_reviews",
    "score.hate",
    'score["sexual/minors"]',
    "score.violence",
]
STRING_NAMES = ["kind", "source", "surface", "language", "text"]
ANY_NAMES = ["metadata.tier", 'metadata["views"]', "metadata.flag"]
NAMES = [*NUMBER_NAMES, *STRING_NAMES, "scored", *ANY_NAMES]
NUMBERS = ["0", "1", "0.5", "-3", "2", "1e308", "1e400", "-1e400", "123456789012345678901234567890", "0.9"]
STRINGS = ['""', '"dm"', '"DM"', '"ﬁ"', '"\\u202e"', '"a\\"b"', '"("', '"gold"', '"content"', '"x"']
LITERALS = [*NUMBERS, *STRINGS, "true", "false"]

operands = st.one_of(st.sampled_from(NAMES), st.sampled_from(LITERALS))
comparisons = st.builds(
    "{} {} {}".format, st.sampled_from(NAMES), st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), operands
)
memberships = st.builds(
    "{} {}in [{}]".format,
    st.sampled_from(NAMES),
    st.sampled_from(["", "not "]),
    st.lists(st.sampled_from(LITERALS), min_size=0, max_size=3).map(", ".join),
)
string_tests = st.builds(
    "{} {} {}".format,
    st.sampled_from(NAMES),
    st.sampled_from(["contains", "icontains", "startswith", "endswith"]),
    st.sampled_from(STRINGS),
)
# Mostly well-typed leaves, so most drawn conditions pass the checker and run; the rest find its refusals.
typed_leaves = st.one_of(
    st.builds(
        "{} {} {}".format,
        st.sampled_from(NUMBER_NAMES + ANY_NAMES),
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        st.sampled_from(NUMBERS + NUMBER_NAMES),
    ),
    st.builds(
        "{} {} {}".format,
        st.sampled_from(STRING_NAMES + ANY_NAMES),
        st.sampled_from(["==", "!="]),
        st.sampled_from(STRINGS + STRING_NAMES),
    ),
    st.builds(
        "{} {} {}".format,
        st.sampled_from(STRING_NAMES + ANY_NAMES),
        st.sampled_from(["contains", "icontains", "startswith", "endswith"]),
        st.sampled_from(STRINGS),
    ),
    st.builds(
        "{} {}in [{}]".format,
        st.sampled_from(STRING_NAMES + ANY_NAMES),
        st.sampled_from(["", "not "]),
        st.lists(st.sampled_from(STRINGS), min_size=1, max_size=3).map(", ".join),
    ),
    st.builds("{} == {}".format, st.sampled_from(["scored", *ANY_NAMES]), st.sampled_from(["true", "false", "scored"])),
    st.sampled_from(["scored", "true", "false", *ANY_NAMES]),
)
leaves = st.one_of(typed_leaves, typed_leaves, typed_leaves, comparisons, memberships, string_tests)


def joined(parts: list[str], op: str, newline: bool) -> str:
    return (f" {op}\n  # why\n" if newline else f" {op} ").join(parts)


trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        inner.map("not {}".format),
        inner.map("({})".format),
        st.builds(joined, st.lists(inner, min_size=2, max_size=4), st.sampled_from(["and", "or"]), st.booleans()),
    ),
    max_leaves=12,
)


def tower(condition: str, levels: int, style: str) -> str:
    """``condition`` under ``levels`` more levels of nesting: 'not's, parentheses, or both in turn."""
    for level in range(levels):
        negate = style == "not" or (style == "mix" and level % 2)
        condition = f"not {condition}" if negate else f"(scored or {condition})"
    return condition


conditions = st.one_of(
    trees,
    st.builds(tower, trees, st.integers(MAX_NESTING - 6, MAX_NESTING + 6), st.sampled_from(["not", "paren", "mix"])),
)

# What an integrating service can send and rules read: missing, empty, huge, infinite, every JSON type.
HUGE = [10**400, -(10**400), 2**1024 - 2**970 - 1, 123456789012345678901234567890]
number_values = st.one_of(
    st.sampled_from([math.nan, 0.0, -0.0, 0.5, 0.9, 1.0, 2.0, 1e308, math.inf, -math.inf]), st.floats(0, 1)
)
text_values = st.one_of(
    st.sampled_from(["", "dm", "DM", "ﬁ", "FI", "gold", "\u202e", 'a"b', "(", "content"]), st.text()
)
metadata_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(HUGE),
    st.sampled_from([0.5, 2.0, math.nan, math.inf, 1e308]),
    text_values,
)


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    candidates: dict[str, st.SearchStrategy[Any]] = {
        **{name: text_values for name in ("kind", "source", "surface", "language", "text")},
        **{name: number_values for name in ("report_count", "media_count")},
        **{name: number_values for name in ("author.prior_violations", "author.prior_reviews")},
        "scored": st.booleans(),
        **{f"score.{score_key(c)}": number_values for c in ClassifierCategory.values},
        **{f"metadata.{key}": metadata_values for key in ("tier", "views", "flag")},
    }
    present = draw(st.sets(st.sampled_from(sorted(candidates))))
    return {key: draw(candidates[key]) for key in sorted(present)}


@pytest.fixture
def stored(intake_queue: Queue) -> list[ReviewItem]:
    """Routed items with the edge values an integrating service can store (JSON: no NaN or infinity)."""
    metadata: list[dict[str, Any]] = [
        {},
        {"tier": "gold", "views": 10**400, "flag": True},
        {"tier": 2, "views": -(10**400), "flag": False},
        {"tier": None, "views": 2**1024 - 2**970 - 1, "flag": "true"},
        {"tier": 2.5, "views": 123456789012345678901234567890, "flag": None},
        {"tier": {"nested": 1}, "views": [1, 2], "flag": 1},
        {"tier": "", "views": 0, "flag": 0.0},
        {"tier": "ﬁ", "views": -3},
    ]
    texts = ["", "dm", "ﬁ FI", "\u202e gold", 'a"b (', "x" * 300, "DM", "content"]
    items = []
    for n, (meta, text) in enumerate(zip(metadata, texts, strict=True)):
        found = item_received(
            text,
            metadata=meta,
            surface=["dm", "", "comments"][n % 3],
            report_count=n,
            state=ItemState.QUEUED,
            queue=intake_queue,
        )
        if n % 3 == 0:
            scores_write(found, hate=n / 10, violence=1.0, sexual_minors=0.0 if n else 0.95)
        elif n % 3 == 1:
            unscored_mark(found)
        items.append(found)
    return items


def agree_three_ways(text: str, batch: list[dict[str, Any]]) -> None:
    node = parse(text, VOCABULARY)
    compiled = compile_rules([node])
    by_compiled = [compiled.first_match(row) == 0 for row in batch]
    by_interpreter = [interpret(node, row) is True for row in batch]
    by_columns = evaluate_columns(node, columns_from(batch), len(batch)).tolist()
    assert by_compiled == by_interpreter == by_columns, (text, batch)


@pytest.mark.django_db
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(text=conditions, batch=st.lists(rows(), min_size=1, max_size=5))
def test_any_accepted_condition_compiles_evaluates_and_backtests(
    text: str, batch: list[dict[str, Any]], stored: list[ReviewItem], hate_queue: Queue
):
    try:
        node = parse(text, VOCABULARY)
    except RuleLanguageError as refused:
        problems = refused.problems
    else:
        problems = []
    if problems:  # refused: by line and column, never by a crash
        assert all(p.line >= 1 and p.column >= 1 and p.message for p in problems)
        return
    agree_three_ways(text, batch)

    spec = RuleSpec(pk=None, name="drawn", action=RuleAction.ROUTE, queue_id=hate_queue.pk, queue_slug="hate")
    program = RuleProgram(None, RuleSetKind.INTAKE, 0, None, "", [spec], [node])
    start: datetime = timezone.now() - timedelta(days=1)
    result = backtest_compute(program, None, start=start, end=timezone.now() + timedelta(minutes=1))

    # The backtest's columns (PostgreSQL's or the ORM's) route the stored items as the live rows do.
    live = [row for row in item_rows(stored).values() if not child_safety_flagged(row)]
    matched = sum(program.compiled_terminal.first_match(row) == 0 for row in live)
    assert result["items"] == len(stored)
    assert result["rules"][1] == {"rule": "drawn", "items": matched}, text
