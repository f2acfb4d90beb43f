"""Parsing: the grammar, and condition text to a parse tree, which :func:`check` then turns into the typed tree.

The text is parsed with lark (LALR), never ``eval``-ed. Syntax errors and nesting past :data:`MAX_NESTING` are
refused here, with a line and column, before anything walks the tree recursively.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from routing.rules.language.checker import Problem, RuleLanguageError, check
from routing.rules.language.tree import Node
from routing.rules.language.vocabulary import Vocabulary

GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr
    | and_expr ("or" and_expr)+ -> or_
?and_expr: not_expr
    | not_expr ("and" not_expr)+ -> and_
?not_expr: "not" not_expr -> not_
    | comparison
?comparison: operand
    | operand COMPARE operand -> compare
    | operand "in" values -> in_
    | operand "not" "in" values -> not_in
    | operand "contains" operand -> contains
    | operand "icontains" operand -> icontains
    | operand "startswith" operand -> startswith
    | operand "endswith" operand -> endswith
?operand: name
    | literal
    | "(" or_expr ")"
name: CNAME ("." CNAME | "[" ESCAPED_STRING "]")*
?literal: SIGNED_NUMBER -> number
    | ESCAPED_STRING -> string
    | "true" -> true
    | "false" -> false
values: "[" [literal ("," literal)*] "]"
COMPARE: "==" | "!=" | "<=" | ">=" | "<" | ">"

%import common.CNAME
%import common.ESCAPED_STRING
%import common.SIGNED_NUMBER
%import common.WS
COMMENT: /#[^\n]*/
%ignore WS
%ignore COMMENT
"""

MAX_CONDITION_LENGTH = 4000
# How deep operators and parentheses may nest. A chain of one operator (``a and b and c ...``) is one level,
# however long. Checking, compiling and evaluating walk the tree recursively: this bound keeps them far from
# Python's recursion limit (and the parser's tree is measured without recursion before anything walks it).
MAX_NESTING = 32

# How parser terminals read in an error message.
_TERMINAL_WORDS = {
    "CNAME": "a field name",
    "ESCAPED_STRING": 'a "quoted string"',
    "SIGNED_NUMBER": "a number",
    "COMPARE": "a comparison (== != < <= > >=)",
    "$END": "the end of the condition",
}


@cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def parse(text: str, vocabulary: Vocabulary) -> Node:
    """Parse and check one condition; raise :class:`RuleLanguageError` naming every problem found."""
    if not re.sub(r"#[^\n]*", "", text).strip():  # blank, or only comments
        raise RuleLanguageError([Problem(1, 1, "the condition is empty; write e.g. score.hate >= 0.8")])
    if len(text) > MAX_CONDITION_LENGTH:
        raise RuleLanguageError([Problem(1, 1, f"the condition is longer than {MAX_CONDITION_LENGTH} characters")])
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise RuleLanguageError([_syntax_problem(exc, text)]) from None
    too_deep = _nesting_problem(tree, text)
    if too_deep is not None:
        raise RuleLanguageError([too_deep])
    return check(tree, vocabulary)


# Parser nodes that are operands, not operators: they add no level of nesting.
_OPERANDS = frozenset({"name", "number", "string", "true", "false", "values"})
# What the parentheses scan skips: strings (a "(" inside one is text) and comments.
_PAREN_SCAN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[()]')
_TOO_DEEP = f"nests more than {MAX_NESTING} levels deep; write it flatter or split it into several rules"


def _nesting_problem(tree: Tree[Token], text: str) -> Problem | None:
    """Where the condition first nests deeper than :data:`MAX_NESTING`, or None. Neither the scan nor the walk
    recurses, so any text the parser took is measured safely before the checker (which recurses) sees it."""
    if text.count("(") > MAX_NESTING:
        depth = 0
        for match in _PAREN_SCAN.finditer(text):
            if match.group() == "(":
                depth += 1
                if depth > MAX_NESTING:
                    line = text.count("\n", 0, match.start()) + 1
                    column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
                    return Problem(line, column, f"this parenthesis {_TOO_DEEP}")
            elif match.group() == ")":
                depth -= 1
    stack: list[tuple[Tree[Token], int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data not in _OPERANDS:
            depth += 1
            if depth > MAX_NESTING:
                return Problem(node.meta.line, node.meta.column, f"the condition {_TOO_DEEP}")
        # Reversed, so the leftmost too-deep place is the one reported.
        stack.extend((child, depth) for child in reversed(node.children) if isinstance(child, Tree))
    return None


def _syntax_problem(exc: UnexpectedInput, text: str) -> Problem:
    line, column = exc.line if exc.line > 0 else 1, exc.column if exc.column > 0 else 1
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream is not None else "?"
        hint = " (strings use double quotes)" if char == "'" else ""
        return Problem(line, column, f"unexpected character {char!r}{hint}")
    expected: set[str] = set()
    found = "end of the condition"
    if isinstance(exc, UnexpectedToken):
        expected = set(exc.expected)
        if exc.token.type != "$END":
            found = repr(str(exc.token))
        else:
            line, column = _end_position(text)
    elif isinstance(exc, UnexpectedEOF):
        expected = set(exc.expected)
        line, column = _end_position(text)
    words = sorted({_terminal_word(name) for name in expected})
    return Problem(line, column, f"unexpected {found}; expected {_or_list(words)}")


def _end_position(text: str) -> tuple[int, int]:
    stripped = text.rstrip()
    lines = stripped.split("\n")
    return len(lines), len(lines[-1]) + 1


def _terminal_word(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = _parser().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return f"'{pattern.value}'" if pattern.type == "str" else name.lower()


def _or_list(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words) or "something else"
    return ", ".join(words[:-1]) + " or " + words[-1]
