"""The rule language: every problem named by line and column, missing values, and one meaning three ways."""

from __future__ import annotations

import ast
import inspect
import math
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops_platform.core.models import ClassifierCategory
from routing.rules.engine import ITEM_FIELDS
from routing.rules.language import (
    MAX_CONDITION_LENGTH,
    MAX_NESTING,
    BoolOp,
    Categorical,
    Node,
    Problem,
    RuleLanguageError,
    Type,
    Vocabulary,
    compile_rules,
    evaluate_columns,
    interpret,
    interpret_rules,
    parse,
    score_key,
)

# The intake vocabulary, built without the database (vocabulary_for() also adds policy scores).
VOCABULARY = Vocabulary(
    fields={name: kind for name, (kind, _) in ITEM_FIELDS.items()},
    scores=frozenset(score_key(c) for c in ClassifierCategory.values),
)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(RuleLanguageError) as caught:
        parse(text, VOCABULARY)
    return caught.value.problems


def only_problem(text: str) -> Problem:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


# --- syntax errors -----------------------------------------------------------------------------------


def test_unclosed_paren_points_past_the_end_and_asks_for_the_paren():
    problem = only_problem("(score.hate > 0.5")

    assert (problem.line, problem.column) == (1, 18)
    assert problem.message.startswith("unexpected end of the condition; expected ")
    assert "')'" in problem.message


def test_unclosed_paren_on_a_later_line_reports_that_line():
    problem = only_problem('score.hate > 0.5 and\n  (surface == "dm"')

    assert (problem.line, problem.column) == (2, 19)
    assert "')'" in problem.message


def test_stray_closing_paren_is_reported_where_it_stands():
    problem = only_problem("score.hate > 0.5)")

    assert (problem.line, problem.column) == (1, 17)
    assert problem.message.startswith("unexpected ')'; expected ")


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("score.hate >", 1, 13),
        ("score.hate > 0.5 and", 1, 21),
        ('score.hate > 0.5 and # why\n  surface == "dm" and', 2, 22),
    ],
)
def test_dangling_operator_reports_the_end_and_what_could_follow(text: str, line: int, column: int):
    problem = only_problem(text)

    assert (problem.line, problem.column) == (line, column)
    assert problem.message.startswith("unexpected end of the condition; expected ")
    assert "a field name" in problem.message
    assert "a number" in problem.message


def test_doubled_operator_on_the_third_line_reports_the_second_symbol():
    problem = only_problem("score.hate > 0.5 or\n\n   report_count >> 3")

    assert (problem.line, problem.column) == (3, 18)
    assert problem.message.startswith("unexpected '>'; expected ")


def test_single_quotes_are_refused_with_a_hint_to_use_double_quotes():
    problem = only_problem("surface == 'dm'")

    assert (problem.line, problem.column) == (1, 12)
    assert problem.message == 'unexpected character "\'" (strings use double quotes)'


@pytest.mark.parametrize(
    ("text", "column", "char"), [("score.hate > 0.5 & surface == 1", 18, "&"), ("score.hate @ 0.5", 12, "@")]
)
def test_a_character_outside_the_language_is_named(text: str, column: int, char: str):
    problem = only_problem(text)

    assert (problem.line, problem.column) == (1, column)
    assert problem.message == f"unexpected character {char!r}"


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_an_empty_condition_says_what_to_write(text: str):
    problem = only_problem(text)

    assert (problem.line, problem.column) == (1, 1)
    assert problem.message == "the condition is empty; write e.g. score.hate >= 0.8"


def test_the_error_text_names_line_and_column():
    with pytest.raises(RuleLanguageError, match=r"^line 1, column 12: unexpected character"):
        parse("surface == 'dm'", VOCABULARY)


# --- name errors -------------------------------------------------------------------------------------


def test_unknown_score_suggests_the_close_one():
    problem = only_problem("score.haet > 0.5")

    assert (problem.line, problem.column) == (1, 1)
    assert problem.message == "unknown score 'haet'; did you mean hate?"


def test_unknown_score_with_nothing_close_suggests_nothing():
    assert only_problem("score.bogus > 0.5").message == "unknown score 'bogus'"


def test_unknown_field_suggests_the_close_ones():
    problem = only_problem('report_count > 1 and surfce == "dm"')

    assert (problem.line, problem.column) == (1, 22)
    assert problem.message == "unknown name 'surfce'; did you mean surface, source?"


def test_unknown_field_on_a_later_line_reports_that_line():
    problem = only_problem('score.hate > 0.5\nand surfce == "dm"')

    assert (problem.line, problem.column) == (2, 5)
    assert problem.message.startswith("unknown name 'surfce'")


def test_unknown_dotted_field_suggests_the_author_fields():
    message = only_problem("author.prior > 1").message

    assert message == (
        "unknown name 'author.prior'; did you mean author.prior_reviews, author.strikes, author.prior_violations?"
    )


def test_every_unknown_name_is_reported_at_once():
    problems = problems_of('score.haet > 0.5 and surfce == "dm"')

    assert [(p.line, p.column) for p in problems] == [(1, 1), (1, 22)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("score.hate.x > 0.5", 'a score is written score.<category>, e.g. score.hate or score["sexual/minors"]'),
        ("metadata.x.y == 1", 'metadata is read one key at a time: metadata.<key> or metadata["some-key"]'),
    ],
)
def test_misshapen_score_and_metadata_names_explain_the_form(text: str, message: str):
    assert only_problem(text) == Problem(1, 1, message)


@pytest.mark.parametrize(
    "text", ['score["sexual/minors"] > 0.2', 'score["sexual-minors"] > 0.2', "score.sexual_minors > 0.2"]
)
def test_a_category_with_a_slash_is_reachable_by_any_spelling(text: str):
    node = parse(text, VOCABULARY)

    assert interpret(node, {"score.sexual_minors": 0.3}) is True


# --- type errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ('report_count == "3"', 1, 14, 'cannot compare report_count (number) with "3" (string) using =='),
        ("surface == 1", 1, 9, "cannot compare surface (string) with 1 (number) using =="),
        ("score.hate > 0.5 and\n  surface == 1", 2, 11, "cannot compare surface (string) with 1 (number) using =="),
        ('surface < "dm"', 1, 9, "< compares numbers, but surface is a string"),
        ('language >= "en"', 1, 10, ">= compares numbers, but language is a string"),
        ("report_count", 1, 1, "a condition must be true or false, but this is a number"),
        ("surface", 1, 1, "a condition must be true or false, but this is a string"),
        ('surface == "dm" and report_count', 1, 21, "'and' joins conditions, but report_count is a number"),
        ("not report_count", 1, 5, "'not' joins conditions, but report_count is a number"),
        ('surface in ["comments", 1]', 1, 12, "a list mixes types; use all strings or all numbers"),
        ("report_count in [1, true]", 1, 17, "a list mixes types; use all strings or all numbers"),
        ('report_count in ["1"]', 1, 1, "report_count is a number, but the list holds strings"),
        ('report_count contains "x"', 1, 1, "'contains' works on text fields, but report_count is a number"),
        ('score.hate startswith "0"', 1, 1, "'startswith' works on text fields, but score.hate is a number"),
        ("text contains 3", 1, 15, "'contains' needs a quoted string on its right, e.g. text contains \"scam\""),
        ("score.hate > 1.5", 1, 14, "scores are probabilities from 0 to 1; 1.5 is out of range"),
        ("score.hate >= -0.1", 1, 15, "scores are probabilities from 0 to 1; -0.1 is out of range"),
        ("2 < score.hate", 1, 1, "scores are probabilities from 0 to 1; 2 is out of range"),
        ("1 == 2", 1, 1, "a comparison needs a field on at least one side, not two constants"),
        ("surface in []", 1, 1, "the list after 'in' is empty"),
    ],
)
def test_type_errors_name_the_place_and_the_types(text: str, line: int, column: int, message: str):
    assert only_problem(text) == Problem(line, column, message)


@pytest.mark.parametrize(
    "text",
    [
        "score.hate >= 0 and score.hate <= 1",
        "0.5 < score.hate",
        '"dm" == surface',
        "scored",
        "scored == true",
        "metadata.anything",
        'metadata.tier > 2 or metadata.tier == "gold"',
        "report_count > 100",  # only scores are held to 0..1
    ],
)
def test_well_typed_conditions_parse(text: str):
    assert isinstance(parse(text, VOCABULARY), Node)


# --- missing values ----------------------------------------------------------------------------------


def columns_from(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Backtest-style columns holding exactly what ``rows`` hold (a key absent from a row is missing)."""
    columns: dict[str, Any] = {}
    for key in sorted(set().union(*rows)):
        if key.startswith("metadata."):
            columns[key] = np.array([r.get(key) for r in rows], dtype=object)
            continue
        kind = VOCABULARY.lookup(key.split(".", 1) if key.startswith("score.") else [key])
        assert not isinstance(kind, str), kind
        if kind[1] == Type.NUMBER:
            columns[key] = np.array([r.get(key, math.nan) for r in rows], dtype=float)
        elif kind[1] == Type.STRING:
            columns[key] = Categorical.from_values([r.get(key, "") for r in rows])
        else:
            columns[key] = np.array([r.get(key, False) for r in rows], dtype=bool)
    return columns


def three_ways(text: str, rows: Sequence[Mapping[str, Any]]) -> list[bool]:
    """Whether ``text`` holds on each row, checking that compiled, interpreted and vectorized agree."""
    node = parse(text, VOCABULARY)
    compiled = compile_rules([node])
    by_compiled = [compiled.first_match(r) == 0 for r in rows]
    by_interpreter = [interpret(node, r) is True for r in rows]
    by_columns = evaluate_columns(node, columns_from(rows), len(rows)).tolist()
    assert by_compiled == by_interpreter == by_columns, (by_compiled, by_interpreter, by_columns)
    return by_compiled


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
def test_a_missing_score_compares_false_under_every_operator(op: str):
    assert three_ways(f"score.hate {op} 0.5", [{"score.hate": math.nan}, {}]) == [False, False]


def test_a_missing_score_is_unequal_to_nothing_even_another_score():
    rows = [{"score.hate": math.nan, "score.violence": 0.2}, {"score.hate": 0.1, "score.violence": 0.2}]

    assert three_ways("score.hate != score.violence", rows) == [False, True]


def test_negating_a_comparison_with_a_missing_score_holds():
    # "not (score > x)" is the negation of a false comparison: it holds, in every form alike.
    assert three_ways("not score.hate > 0.5", [{"score.hate": math.nan}, {"score.hate": 0.9}]) == [True, False]


def test_a_missing_score_is_in_no_list_and_outside_every_list():
    rows = [{"score.hate": math.nan}, {"score.hate": 0.5}]

    assert three_ways("score.hate in [0.5, 1]", rows) == [False, True]
    assert three_ways("score.hate not in [0.5, 1]", rows) == [True, False]


@pytest.mark.parametrize(
    ("text", "holds_for"),
    [
        ("metadata.level > 2", [3, 2.5]),
        ("metadata.level == 1", [1, 1.0]),
        ("metadata.level != 1", [3, 2.5, 2, 0]),
        ('metadata.level == "1"', ["1"]),
        ("metadata.level in [1, 2]", [2, 1, 1.0]),
        ('metadata.level in ["1"]', ["1"]),
        ('metadata.level contains "1"', ["1"]),
        ("metadata.level == true", [True]),
        ("metadata.level", [True]),
    ],
)
def test_metadata_of_the_wrong_type_compares_false(text: str, holds_for: list[Any]):
    values: list[Any] = [3, 2.5, 2, 1, 1.0, "1", "3", True, False, None, 0]
    rows = [{"metadata.level": v} for v in values] + [{}]

    held = three_ways(text, rows)

    assert [v for v, h in zip([*values, "<absent>"], held, strict=True) if h] == holds_for


def test_a_boolean_is_not_the_number_one():
    assert three_ways("metadata.flag == 1", [{"metadata.flag": True}, {"metadata.flag": 1}]) == [False, True]


def test_a_missing_text_field_is_the_empty_string():
    assert three_ways('surface == ""', [{}, {"surface": "dm"}]) == [True, False]
    assert three_ways('text contains "x"', [{}]) == [False]


# --- one meaning, three ways -------------------------------------------------------------------------

CONDITIONS = [
    "score.hate >= 0.8",
    "score.hate != 0.5",
    "not score.violence > 0.3",
    'surface in ["comments", "dm"] and score.harassment > 0.4',
    'surface not in ["dm"] and not scored',
    'text contains "scam" or text icontains "FREE"',
    'text startswith "hi" and not text endswith "!"',
    "report_count >= 3 or author.prior_violations > 1",
    "report_count in [0, 2, 5]",
    "scored in [true] and score.self_harm < 0.2",
    'metadata.country == "DE" or metadata.country in ["FR", "IT"]',
    "metadata.level > 2 or metadata.level == report_count",
    "metadata.flag or metadata.flag == scored",
    "(score.hate > 0.5) == (score.violence > 0.5)",
    'score.hate > score.violence and language != source and score["sexual/minors"] <= 0.1',
    'kind == "appeal" or (media_count > 0 and not (metadata.tier in [1, 2] or metadata.tier == "gold"))',
]
PARSED = [parse(text, VOCABULARY) for text in CONDITIONS]
COMPILED = compile_rules(PARSED)

scores = st.one_of(st.just(math.nan), st.sampled_from([0.0, 0.2, 0.3, 0.4, 0.5, 0.8, 1.0]), st.floats(0, 1))
words = st.sampled_from(["", "comments", "dm", "profile", "en", "de", "content", "appeal", "DE", "FR"])
texts = st.one_of(
    st.sampled_from(["", "hi there", "hi!", "a scam", "Free stuff", "FREE", "scammer!", "ﬁ"]),
    st.text(max_size=12),
)
metadata_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 6),
    st.sampled_from([0.5, 2.0, 3.5]),
    st.sampled_from(["DE", "FR", "US", "gold", "1", "3"]),
)


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    """An item as rules see it; any field may be absent."""
    candidates: dict[str, st.SearchStrategy[Any]] = {
        "kind": st.sampled_from(["content", "user_report", "appeal"]),
        "source": words,
        "surface": words,
        "language": words,
        "text": texts,
        "report_count": st.sampled_from([0.0, 1.0, 2.0, 3.0, 5.0, 8.0]),
        "media_count": st.sampled_from([0.0, 1.0, 2.0]),
        "scored": st.booleans(),
        "author.prior_violations": st.sampled_from([0.0, 1.0, 2.0]),
        **{f"score.{score_key(c)}": scores for c in ClassifierCategory.values},
        **{f"metadata.{k}": metadata_values for k in ("country", "level", "flag", "tier")},
    }
    present = draw(st.sets(st.sampled_from(sorted(candidates))))
    return {key: draw(candidates[key]) for key in sorted(present)}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), min_size=1, max_size=8))
def test_compiled_interpreted_and_vectorized_agree(batch: list[dict[str, Any]]):
    columns = columns_from(batch)
    masks = [evaluate_columns(node, columns, len(batch)) for node in PARSED]
    for position, row in enumerate(batch):
        by_columns = next((i for i, mask in enumerate(masks) if mask[position]), -1)
        by_compiled = COMPILED.first_match(row)

        assert by_compiled == interpret_rules(PARSED, row) == by_columns, row
        assert COMPILED.all_matches(row) == [i for i, mask in enumerate(masks) if mask[position]], row


# --- user text is only ever data ---------------------------------------------------------------------

HOSTILE = "__import__('os').system('echo pwned')"


def names_in(source: str) -> set[str]:
    return {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}


def test_a_string_that_looks_like_code_is_compared_as_a_string():
    node = parse(f'text == "{HOSTILE}" or text contains "{HOSTILE}"', VOCABULARY)
    compiled = compile_rules([node])

    assert compiled.first_match({"text": HOSTILE}) == 0
    assert compiled.first_match({"text": "__import__"}) == -1
    constants = {n.value for n in ast.walk(ast.parse(compiled.source)) if isinstance(n, ast.Constant)}
    assert HOSTILE in constants


def test_names_in_the_generated_code_are_all_the_compilers_own():
    hostile_key = "x') or __import__('os') or ('"
    conditions = [
        f'metadata["{hostile_key}"] == "y"',
        f'text icontains "{HOSTILE}" and not scored',
        'surface in ["a", "__builtins__"] and metadata.k in [1, 2]',
        'metadata["__class__"] contains "x"',
    ]
    compiled = compile_rules([parse(c, VOCABULARY) for c in conditions])

    own = re.compile(r"^(r|found|v\d+|K\d+|_compare|_member|_string_test|_missing_[A-Z]+)$")
    assert {name for name in names_in(compiled.source) if not own.match(name)} == set()
    assert compiled.first_match({f"metadata.{hostile_key}": "y"}) == 0
    assert compiled.first_match({"metadata.__class__": "xx"}) == 3


def test_a_condition_of_only_comments_is_empty():
    problem = only_problem("# route hate here later\n   # and spam")
    assert (problem.line, problem.column) == (1, 1)
    assert "the condition is empty" in problem.message


# --- nesting: a condition the checker accepts always compiles and runs ------------------------------

# The strings: a long flat chain (one level, however long) and a tower of 'not' under 4,000 characters.
FLAT_CHAIN = "scored and " * 300 + "scored"
NOT_TOWER = "not " * 990 + "true"


def nested(levels: int) -> str:
    """A condition ``levels`` operators deep: a comparison inside not / and / or, in turn, through parentheses."""
    text = "report_count > 1"
    for level in range(levels - 1):
        text = (
            ["not ", "(report_count > 1 and ", '(surface == "dm" or '][level % 3]
            + text
            + ("" if level % 3 == 0 else ")")
        )
    return text


def test_a_long_flat_chain_is_one_level_and_compiles_and_runs():
    assert len(FLAT_CHAIN) < MAX_CONDITION_LENGTH
    node = parse(FLAT_CHAIN, VOCABULARY)

    assert isinstance(node, BoolOp)
    assert len(node.items) == 301
    assert three_ways(FLAT_CHAIN, [{"scored": True}, {"scored": False}, {}]) == [True, False, False]


@pytest.mark.parametrize("text", ["scored or " * 399 + "scored", "scored and" + " scored and" * 360 + " scored"])
def test_the_longest_chains_the_length_limit_allows_compile_and_run(text: str):
    assert len(text) <= MAX_CONDITION_LENGTH

    assert three_ways(text, [{"scored": True}, {}]) == [True, False]


def test_the_longest_chain_of_numbers_is_refused_by_type_not_by_a_crash():
    text = "1or " * 998 + "scored"
    assert len(text) <= MAX_CONDITION_LENGTH

    problems = problems_of(text)

    assert len(problems) == 998
    assert problems[-1] == Problem(1, 4 * 997 + 1, "'or' joins conditions, but 1 is a number")


def test_a_tower_of_not_is_refused_where_it_gets_too_deep():
    assert len(NOT_TOWER) < MAX_CONDITION_LENGTH

    problem = only_problem(NOT_TOWER)

    assert (problem.line, problem.column) == (1, 4 * MAX_NESTING + 1)
    assert problem.message == (
        f"the condition nests more than {MAX_NESTING} levels deep; write it flatter or split it into several rules"
    )


def test_parentheses_nested_too_deep_are_refused_at_the_first_one_too_many():
    text = "score.hate > 0.5 or\n  " + "(" * 40 + "scored" + ")" * 40

    problem = only_problem(text)

    assert (problem.line, problem.column) == (2, 3 + MAX_NESTING)
    assert problem.message.startswith(f"this parenthesis nests more than {MAX_NESTING} levels deep")
    # Parentheses inside strings and comments are text, not nesting.
    text = 'text contains "' + "(" * 60 + '" # ' + "(" * 60 + "\n or scored"
    assert three_ways(text, [{"text": "(" * 60}, {"text": "("}]) == [True, False]


def test_nesting_deeper_than_the_limit_is_reported_on_its_own_line():
    text = "scored and\n" + nested(MAX_NESTING + 5)

    problem = only_problem(text)

    assert problem.line == 2
    assert "nests more than" in problem.message


def test_a_condition_at_the_nesting_limit_runs_three_ways_with_little_stack_to_spare():
    text = nested(MAX_NESTING)
    with pytest.raises(RuleLanguageError):
        parse(nested(MAX_NESTING + 1), VOCABULARY)

    def work() -> None:
        node = parse(text, VOCABULARY)
        compiled = compile_rules([node])
        rows = [{}, {"scored": True, "report_count": 3.0, "surface": "dm"}]
        assert [compiled.first_match(r) == 0 for r in rows] == [interpret(node, r) is True for r in rows]
        evaluate_columns(node, columns_from(rows), len(rows))
        ast.parse(compiled.source)

    # Checking, compiling (Python's own compiler included) and evaluating must fit in what a deep caller leaves.
    def at_depth(frames: int) -> None:
        if frames <= 0:
            work()
        else:
            at_depth(frames - 1)

    at_depth(sys.getrecursionlimit() - len(inspect.stack()) - 300)


@pytest.mark.parametrize(("value", "holds"), [(10**400, [True, False]), (-(10**400), [False, True])])
def test_an_integer_too_large_for_a_float_compares_as_infinity_not_an_error(value: int, holds: list[bool]):
    rows = [{"metadata.views": value}]

    assert [three_ways("metadata.views > 5", rows)[0], three_ways("metadata.views < 5", rows)[0]] == holds
    assert three_ways("metadata.views in [1, 2]", rows) == [False]
    assert three_ways("metadata.views == report_count", rows) == [False]
