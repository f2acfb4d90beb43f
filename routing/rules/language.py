"""The rule language: conditions policy staff write, parsed with lark, checked, then compiled.

A condition reads like ``score.hate >= 0.8 and surface in ["comments", "dm"] and not text contains "quote"``.
The text is parsed (never ``eval``-ed) into a small typed tree; names and types are checked against a
:class:`Vocabulary`; every problem names its line and column. A checked condition runs three ways, with
one meaning:

* :func:`compile_rules` turns a whole ordered rule list into one Python function (``ast`` nodes we
  build ourselves from the checked tree: user text only ever becomes a constant), used on live traffic;
* :func:`interpret` walks the tree, the reference the compiled form is tested against;
* :func:`evaluate_columns` runs a condition over numpy columns of many items at once, for backtests.

Missing values: a score an item does not have is NaN and, as in SQL, every comparison with it is
false (``!=`` too). A metadata value of the wrong type compares false rather than raising.
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cache, cached_property
from typing import Any, cast

import numpy as np
from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

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


class Type(Enum):
    NUMBER = "number"
    STRING = "string"
    BOOL = "true/false"
    ANY = "any"  # metadata: whatever the integrating service sent

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Problem:
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


class RuleLanguageError(ValueError):
    """A condition that does not parse or check; ``problems`` says where and what."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


# --- the checked tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    line: int
    column: int


@dataclass(frozen=True)
class Const(Node):
    value: float | str | bool

    @property
    def type(self) -> Type:
        if isinstance(self.value, bool):
            return Type.BOOL
        return Type.STRING if isinstance(self.value, str) else Type.NUMBER


@dataclass(frozen=True)
class Name(Node):
    key: str  # the row key, e.g. "score.hate", "metadata.country", "kind"
    type: Type


@dataclass(frozen=True)
class Compare(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class InList(Node):
    operand: Node
    values: tuple[float | str | bool, ...]
    negate: bool


@dataclass(frozen=True)
class StringOp(Node):
    op: str  # contains, icontains, startswith, endswith
    operand: Node
    value: str


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # and, or
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not(Node):
    item: Node


# --- vocabulary ------------------------------------------------------------------------------------


def score_key(raw: str) -> str:
    """The name a score goes by in rules: ``sexual/minors`` -> ``sexual_minors``, ``policy:spam`` -> ``policy_spam``."""
    return re.sub(r"[^a-z0-9]+", "_", raw.lower()).strip("_")


@dataclass(frozen=True)
class Vocabulary:
    """The names a condition may use and their types.

    ``fields`` maps a full name (``kind``, ``author.prior_violations``) to its type. ``scores`` holds the
    score names (already through :func:`score_key`) under ``score.``; every ``metadata.<key>`` is ANY.
    """

    fields: Mapping[str, Type]
    scores: frozenset[str]
    descriptions: Mapping[str, str] = field(default_factory=dict)

    def lookup(self, parts: Sequence[str]) -> tuple[str, Type] | str:
        """The row key and type for a dotted name, or an error message."""
        head = parts[0]
        if head == "score":
            if len(parts) != 2:
                return 'a score is written score.<category>, e.g. score.hate or score["sexual/minors"]'
            key = score_key(parts[1])
            if key not in self.scores:
                return f"unknown score '{parts[1]}'{_did_you_mean(key, self.scores)}"
            return f"score.{key}", Type.NUMBER
        if head == "metadata":
            if len(parts) != 2 or not parts[1]:
                return 'metadata is read one key at a time: metadata.<key> or metadata["some-key"]'
            return f"metadata.{parts[1]}", Type.ANY
        full = ".".join(parts)
        if full in self.fields:
            return full, self.fields[full]
        known = {*self.fields, "score.<category>", "metadata.<key>"}
        return f"unknown name '{full}'{_did_you_mean(full, known)}"

    def names(self) -> list[tuple[str, str, str]]:
        """(name, type, description) for the editor's reference panel."""
        rows = [(name, str(kind), self.descriptions.get(name, "")) for name, kind in sorted(self.fields.items())]
        rows += [(f"score.{s}", str(Type.NUMBER), "classifier probability, 0 to 1") for s in sorted(self.scores)]
        rows.append(("metadata.<key>", str(Type.ANY), "a value the integrating service sent"))
        return rows


def _did_you_mean(name: str, known: Sequence[str] | frozenset[str] | set[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


# --- parsing and checking --------------------------------------------------------------------------


@cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


class _CheckError(Exception):
    def __init__(self, problem: Problem):
        self.problem = problem


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
    checker = _Checker(vocabulary)
    try:
        node = checker.transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, _CheckError):
            checker.problems.append(exc.orig_exc.problem)
        else:
            raise
        node = None
    if checker.problems:
        raise RuleLanguageError(checker.problems)
    assert isinstance(node, Node)
    if _type_of(node) not in (Type.BOOL, Type.ANY):
        raise RuleLanguageError(
            [Problem(node.line, node.column, f"a condition must be true or false, but this is a {_type_of(node)}")]
        )
    return node


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


def _type_of(node: Node) -> Type:
    if isinstance(node, Const):
        return node.type
    if isinstance(node, Name):
        return node.type
    return Type.BOOL


def _unquote(token: str) -> str:
    # ESCAPED_STRING is a JSON-style string: decode escapes without evaluating anything.
    import json

    try:
        return cast(str, json.loads(token))
    except ValueError:
        return token[1:-1]


_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


@v_args(meta=True)
class _Checker(Transformer[Token, Node]):
    def __init__(self, vocabulary: Vocabulary):
        super().__init__()
        self.vocabulary = vocabulary
        self.problems: list[Problem] = []

    def _fail(self, node: Node | Any, message: str) -> None:
        self.problems.append(Problem(node.line, node.column, message))

    # literals and names
    def number(self, meta: Any, children: list[Token]) -> Const:
        token = children[0]
        return Const(token.line or 1, token.column or 1, float(token))

    def string(self, meta: Any, children: list[Token]) -> Const:
        token = children[0]
        return Const(token.line or 1, token.column or 1, _unquote(str(token)))

    def true(self, meta: Any, children: list[Token]) -> Const:
        return Const(meta.line, meta.column, True)

    def false(self, meta: Any, children: list[Token]) -> Const:
        return Const(meta.line, meta.column, False)

    def name(self, meta: Any, children: list[Token]) -> Node:
        parts = [_unquote(str(t)) if t.type == "ESCAPED_STRING" else str(t) for t in children]
        found = self.vocabulary.lookup(parts)
        if isinstance(found, str):
            self._fail(meta, found)
            return Name(meta.line, meta.column, ".".join(parts), Type.ANY)
        key, kind = found
        return Name(meta.line, meta.column, key, kind)

    def values(self, meta: Any, children: list[Const]) -> tuple[Any, list[Const]]:
        return meta, children

    # operators
    def compare(self, meta: Any, children: list[Any]) -> Node:
        left, op_token, right = children
        op = str(op_token)
        if isinstance(left, Const) and isinstance(right, Const):
            self._fail(meta, "a comparison needs a field on at least one side, not two constants")
        if isinstance(left, Const) and not isinstance(right, Const):
            left, right, op = right, left, _FLIPPED[op]
        lt, rt = _type_of(left), _type_of(right)
        if Type.ANY not in (lt, rt):
            if lt != rt:
                self._fail(
                    op_token, f"cannot compare {_describe(left)} ({lt}) with {_describe(right)} ({rt}) using {op}"
                )
            elif op in ("<", "<=", ">", ">=") and lt != Type.NUMBER:
                self._fail(op_token, f"{op} compares numbers, but {_describe(left)} is a {lt}")
        is_score = isinstance(left, Name) and left.key.startswith("score.")
        if is_score and isinstance(right, Const) and isinstance(right.value, float) and not 0 <= right.value <= 1:
            self._fail(right, f"scores are probabilities from 0 to 1; {right.value:g} is out of range")
        return Compare(meta.line, meta.column, op, left, right)

    def _membership(self, meta: Any, children: list[Any], negate: bool) -> Node:
        operand, (list_meta, consts) = children
        if not consts:
            self._fail(meta, "the list after 'in' is empty")
            return InList(meta.line, meta.column, operand, (), negate)
        types = {c.type for c in consts}
        if len(types) > 1:
            self._fail(list_meta, "a list mixes types; use all strings or all numbers")
        elif _type_of(operand) not in (Type.ANY, *types):
            self._fail(meta, f"{_describe(operand)} is a {_type_of(operand)}, but the list holds {types.pop()}s")
        if isinstance(operand, Const):
            self._fail(meta, "the left side of 'in' must be a field, not a constant")
        return InList(meta.line, meta.column, operand, tuple(c.value for c in consts), negate)

    def in_(self, meta: Any, children: list[Any]) -> Node:
        return self._membership(meta, children, negate=False)

    def not_in(self, meta: Any, children: list[Any]) -> Node:
        return self._membership(meta, children, negate=True)

    def _string_op(self, op: str, meta: Any, children: list[Any]) -> Node:
        operand, value = children
        if not isinstance(value, Const) or not isinstance(value.value, str):
            self._fail(value, f"'{op}' needs a quoted string on its right, e.g. text {op} \"scam\"")
            return StringOp(meta.line, meta.column, op, operand, "")
        if _type_of(operand) not in (Type.STRING, Type.ANY) or isinstance(operand, Const):
            self._fail(operand, f"'{op}' works on text fields, but {_describe(operand)} is a {_type_of(operand)}")
        return StringOp(meta.line, meta.column, op, operand, value.value)

    def contains(self, meta: Any, children: list[Any]) -> Node:
        return self._string_op("contains", meta, children)

    def icontains(self, meta: Any, children: list[Any]) -> Node:
        return self._string_op("icontains", meta, children)

    def startswith(self, meta: Any, children: list[Any]) -> Node:
        return self._string_op("startswith", meta, children)

    def endswith(self, meta: Any, children: list[Any]) -> Node:
        return self._string_op("endswith", meta, children)

    def _boolean(self, node: Node, word: str) -> None:
        if _type_of(node) not in (Type.BOOL, Type.ANY):
            self._fail(node, f"'{word}' joins conditions, but {_describe(node)} is a {_type_of(node)}")

    def and_(self, meta: Any, children: list[Node]) -> Node:
        for child in children:
            self._boolean(child, "and")
        return BoolOp(meta.line, meta.column, "and", tuple(children))

    def or_(self, meta: Any, children: list[Node]) -> Node:
        for child in children:
            self._boolean(child, "or")
        return BoolOp(meta.line, meta.column, "or", tuple(children))

    def not_(self, meta: Any, children: list[Node]) -> Node:
        self._boolean(children[0], "not")
        return Not(meta.line, meta.column, children[0])


def _describe(node: Node) -> str:
    if isinstance(node, Name):
        return node.key
    if isinstance(node, Const):
        if isinstance(node.value, bool):
            return str(node.value).lower()
        return f'"{node.value}"' if isinstance(node.value, str) else f"{node.value:g}"
    return "the expression"


def names_used(node: Node) -> set[str]:
    """Row keys a condition reads."""
    if isinstance(node, Name):
        return {node.key}
    children: tuple[Node, ...] = ()
    if isinstance(node, Compare):
        children = (node.left, node.right)
    elif isinstance(node, InList | StringOp):
        children = (node.operand,)
    elif isinstance(node, BoolOp):
        children = node.items
    elif isinstance(node, Not):
        children = (node.item,)
    return set().union(*(names_used(c) for c in children)) if children else set()


# --- one shared meaning for comparisons ----------------------------------------------------------

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _comparable(value: Any) -> Any:
    """Booleans stay booleans; ints and floats are one kind of number.

    Backtest columns hand over numpy scalars (``np.bool_`` is no ``bool``): they count as the Python value.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # a JSON integer past float's range: as large as a float gets, with its sign
            return math.inf if value > 0 else -math.inf
    return value


def compare_values(op: str, left: Any, right: Any) -> bool:
    """``left op right`` where either side may be missing (None/NaN) or of an unexpected type: then false."""
    left, right = _comparable(left), _comparable(right)
    if left is None or right is None:
        return False
    if (isinstance(left, float) and math.isnan(left)) or (isinstance(right, float) and math.isnan(right)):
        return False
    if type(left) is not type(right):
        return False
    return _OPS[op](left, right)


def string_test(op: str, value: Any, needle: str) -> bool:
    if not isinstance(value, str):
        return False
    if op == "contains":
        return needle in value
    if op == "icontains":
        return needle.casefold() in value.casefold()
    if op == "startswith":
        return value.startswith(needle)
    return value.endswith(needle)


def _member(value: Any, values: tuple[Any, ...]) -> bool:
    value = _comparable(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return any(type(value) is type(_comparable(v)) and value == _comparable(v) for v in values)


# --- the reference interpreter ---------------------------------------------------------------------


def _missing(kind: Type) -> Any:
    return {Type.NUMBER: math.nan, Type.STRING: "", Type.BOOL: False, Type.ANY: None}[kind]


def interpret(node: Node, row: Mapping[str, Any]) -> Any:
    """Evaluate a checked condition on one row by walking the tree."""
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Name):
        return row.get(node.key, _missing(node.type))
    if isinstance(node, Compare):
        return compare_values(node.op, interpret(node.left, row), interpret(node.right, row))
    if isinstance(node, InList):
        found = _member(interpret(node.operand, row), node.values)
        return not found if node.negate else found
    if isinstance(node, StringOp):
        return string_test(node.op, interpret(node.operand, row), node.value)
    if isinstance(node, BoolOp):
        if node.op == "and":
            return all(interpret(item, row) is True for item in node.items)
        return any(interpret(item, row) is True for item in node.items)
    if isinstance(node, Not):
        return interpret(node.item, row) is not True
    raise TypeError(f"unknown node {type(node).__name__}")


def interpret_rules(conditions: Sequence[Node], row: Mapping[str, Any]) -> int:
    """Index of the first condition that holds, or -1 (the interpreted twin of :func:`compile_rules`)."""
    for index, condition in enumerate(conditions):
        if interpret(condition, row) is True:
            return index
    return -1


# --- the compiler ----------------------------------------------------------------------------------


class _Compiler:
    """Builds Python ``ast`` from checked trees. Every name in the output is ours; user text is a Constant."""

    def __init__(self) -> None:
        self.locals: dict[str, str] = {}  # row key -> local variable
        self.kinds: dict[str, Type] = {}
        self.consts: dict[str, Any] = {}
        self.shared: dict[int, str] = {}  # id of a helper object -> its constant
        # Per row, made from a field's local: its casefolded text (on first use), its settled metadata value.
        self.folded: dict[str, str] = {}
        self.settled: dict[str, str] = {}

    def variable(self) -> str:
        return f"v{len(self.locals) + len(self.folded) + len(self.settled)}"

    def local(self, name: Name) -> ast.expr:
        if name.key not in self.locals:
            self.locals[name.key] = self.variable()
            self.kinds[name.key] = name.type
        return ast.Name(self.locals[name.key], ast.Load())

    def const(self, value: Any) -> ast.expr:
        label = f"K{len(self.consts)}"
        self.consts[label] = value
        return ast.Name(label, ast.Load())

    def helper(self, value: Any) -> ast.expr:
        """A constant for an object many tests use (a type, a function): bound once."""
        if id(value) not in self.shared:
            self.shared[id(value)] = cast(ast.Name, self.const(value)).id
        return ast.Name(self.shared[id(value)], ast.Load())

    def fold(self, operand: ast.expr) -> ast.expr:
        """``text.casefold()``, made on first use and kept for the rules after it in the same row."""
        call = ast.Call(ast.Attribute(operand, "casefold", ast.Load()), [], [])
        if not isinstance(operand, ast.Name):
            return call
        if operand.id not in self.folded:
            self.folded[operand.id] = self.variable()
        name = self.folded[operand.id]
        # "" is falsy, so an empty text is folded again: still "".
        return ast.BoolOp(ast.Or(), [ast.Name(name, ast.Load()), ast.NamedExpr(ast.Name(name, ast.Store()), call)])

    def settle(self, operand: ast.expr) -> ast.expr:
        """Metadata as :func:`_comparable` sees it (ints as floats, numpy scalars as Python values), made once
        per row: after that a comparison with a constant is a type check and one operator."""
        assert isinstance(operand, ast.Name)
        if operand.id not in self.settled:
            self.settled[operand.id] = self.variable()
        return ast.Name(self.settled[operand.id], ast.Load())

    def typed(self, value: ast.expr, kind: type, test: ast.expr) -> ast.expr:
        """``value.__class__ is kind and test``."""
        is_kind = ast.Compare(ast.Attribute(value, "__class__", ast.Load()), [ast.Is()], [self.helper(kind)])
        return ast.BoolOp(ast.And(), [is_kind, test])

    def call(self, helper: str, *args: ast.expr) -> ast.expr:
        return ast.Call(ast.Name(helper, ast.Load()), list(args), [])

    def expr(self, node: Node) -> ast.expr:
        if isinstance(node, Const):
            return ast.Constant(node.value)
        if isinstance(node, Name):
            return self.local(node)
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, InList):
            operand = self.expr(node.operand)
            if _type_of(node.operand) == Type.ANY and isinstance(operand, ast.Name) and node.values:
                # _member on a checked (one-typed) list: the settled value is of the list's type and in it.
                settled = self.settle(operand)
                kind = type(_comparable(node.values[0]))
                test: ast.expr = self.typed(
                    settled, kind, ast.Compare(settled, [ast.In()], [self.const(frozenset(node.values))])
                )
            elif _type_of(node.operand) == Type.ANY or any(isinstance(v, bool) for v in node.values):
                test = self.call("_member", operand, self.const(node.values))
            else:  # NaN and "" are never members of a checked, same-typed list
                test = ast.Compare(operand, [ast.In()], [self.const(frozenset(node.values))])
            return ast.UnaryOp(ast.Not(), test) if node.negate else test
        if isinstance(node, StringOp):
            operand = self.expr(node.operand)
            if _type_of(node.operand) == Type.ANY:
                return self.call("_string_test", ast.Constant(node.op), operand, ast.Constant(node.value))
            if node.op == "contains":
                return ast.Compare(ast.Constant(node.value), [ast.In()], [operand])
            if node.op == "icontains":
                return ast.Compare(ast.Constant(node.value.casefold()), [ast.In()], [self.fold(operand)])
            method = ast.Attribute(operand, node.op, ast.Load())
            return ast.Call(method, [ast.Constant(node.value)], [])
        if isinstance(node, BoolOp):
            op: ast.boolop = ast.And() if node.op == "and" else ast.Or()
            return ast.BoolOp(op, [self.truth(item) for item in node.items])
        if isinstance(node, Not):
            return ast.UnaryOp(ast.Not(), self.truth(node.item))
        raise TypeError(f"unknown node {type(node).__name__}")

    def any_compare(self, op: str, operand: ast.Name, value: float | str | bool) -> ast.expr:
        """``metadata.x <op> constant`` as :func:`compare_values` means it: of the constant's type, then compared."""
        settled = self.settle(operand)
        if isinstance(value, bool) and op in ("==", "!="):  # settled booleans are the two singletons
            return ast.Compare(settled, [ast.Is()], [ast.Constant(value if op == "==" else not value)])
        test: ast.expr = ast.Compare(settled, [_AST_OPS[op]], [ast.Constant(value)])
        if op == "!=" and isinstance(value, float):  # NaN != x is true in Python; a missing value compares false
            test = ast.BoolOp(ast.And(), [ast.Compare(settled, [ast.Eq()], [settled]), test])
        return self.typed(settled, type(value), test)

    def truth(self, node: Node) -> ast.expr:
        """A sub-condition as a strict boolean: ANY-typed metadata counts only when it is exactly true."""
        compiled = self.expr(node)
        if _type_of(node) == Type.ANY:
            return ast.Compare(compiled, [ast.Is()], [ast.Constant(True)])
        return compiled

    def compare(self, node: Compare) -> ast.expr:
        left, right = self.expr(node.left), self.expr(node.right)
        kinds = {_type_of(node.left), _type_of(node.right)}
        if Type.ANY in kinds:
            if isinstance(left, ast.Name) and _type_of(node.left) == Type.ANY and isinstance(node.right, Const):
                return self.any_compare(node.op, left, node.right.value)
            return self.call("_compare", ast.Constant(node.op), left, right)
        test = ast.Compare(left, [_AST_OPS[node.op]], [right])
        if node.op == "!=" and Type.NUMBER in kinds:
            # NaN != x is true in Python; a missing score must compare false, so demand both are numbers.
            guards = [ast.Compare(side, [ast.Eq()], [side]) for side in (left, right) if isinstance(side, ast.Name)]
            return ast.BoolOp(ast.And(), [*guards, test])
        return test


_AST_OPS: dict[str, ast.cmpop] = {
    "==": ast.Eq(),
    "!=": ast.NotEq(),
    "<": ast.Lt(),
    "<=": ast.LtE(),
    ">": ast.Gt(),
    ">=": ast.GtE(),
}
# Values _comparable leaves as they are: a settled value of these classes needs no call.
_SETTLED = frozenset({float, bool, str, type(None)})


@dataclass(frozen=True)
class CompiledRules:
    """An ordered rule list as one function: ``first_match(row)`` is the index of the first rule that holds."""

    first_match: Callable[[Mapping[str, Any]], int]
    all_matches: Callable[[Mapping[str, Any]], list[int]]
    names: frozenset[str]
    source: str


def compile_rules(conditions: Sequence[Node]) -> CompiledRules:
    """One function for the whole list: each field is read once, then an ``if`` per rule in order."""
    compiler = _Compiler()
    tests = [compiler.truth(c) for c in conditions]
    prologue = [
        ast.Assign(
            [ast.Name(var, ast.Store())],
            ast.Call(
                ast.Attribute(ast.Name("r", ast.Load()), "get", ast.Load()),
                [ast.Constant(key), ast.Name(f"_missing_{compiler.kinds[key].name}", ast.Load())],
                [],
            ),
        )
        for key, var in compiler.locals.items()
    ]
    prologue += [ast.Assign([ast.Name(name, ast.Store())], ast.Constant(None)) for name in compiler.folded.values()]
    for var, settled in compiler.settled.items():
        raw = ast.Name(var, ast.Load())
        plain = ast.Compare(ast.Attribute(raw, "__class__", ast.Load()), [ast.In()], [compiler.helper(_SETTLED)])
        call = ast.Call(compiler.helper(_comparable), [raw], [])
        prologue.append(ast.Assign([ast.Name(settled, ast.Store())], ast.IfExp(plain, raw, call)))
    first_body: list[ast.stmt] = [
        ast.If(test, [ast.Return(ast.Constant(index))], []) for index, test in enumerate(tests)
    ]
    first_body.append(ast.Return(ast.Constant(-1)))
    found = ast.Name("found", ast.Load())
    all_body: list[ast.stmt] = [ast.Assign([ast.Name("found", ast.Store())], ast.List([], ast.Load()))]
    all_body += [
        ast.If(
            test,
            [ast.Expr(ast.Call(ast.Attribute(found, "append", ast.Load()), [ast.Constant(index)], []))],
            [],
        )
        for index, test in enumerate(tests)
    ]
    all_body.append(ast.Return(found))
    args = ast.arguments(posonlyargs=[], args=[ast.arg("r")], kwonlyargs=[], kw_defaults=[], defaults=[])
    module = ast.Module(
        [
            ast.FunctionDef(name="first_match", args=args, body=[*prologue, *first_body], decorator_list=[]),
            ast.FunctionDef(name="all_matches", args=args, body=[*prologue, *all_body], decorator_list=[]),
        ],
        [],
    )
    ast.fix_missing_locations(module)
    namespace: dict[str, Any] = {
        "__builtins__": {},
        "_compare": compare_values,
        "_string_test": string_test,
        "_member": _member,
        **{f"_missing_{kind.name}": _missing(kind) for kind in Type},
        **compiler.consts,
    }
    exec(compile(module, "<rule set>", "exec"), namespace)  # noqa: S102 - our own ast, built above
    return CompiledRules(
        first_match=namespace["first_match"],
        all_matches=namespace["all_matches"],
        names=frozenset(compiler.locals),
        source=ast.unparse(module),
    )


# --- columns: many items at once, for backtests -----------------------------------------------------


@dataclass(frozen=True)
class Categorical:
    """A text column as codes into its distinct values: comparisons run once per distinct value.

    A code of -1 stands for no text at all (a metadata value of another type): it passes no test.
    """

    codes: np.ndarray
    values: list[str]

    @classmethod
    def from_values(cls, values: Sequence[str]) -> Categorical:
        index = {v: i for i, v in enumerate(dict.fromkeys(values))}
        codes = np.fromiter(map(index.__getitem__, values), dtype=np.int32, count=len(values))
        return cls(codes, [str(v) for v in index])

    def __len__(self) -> int:
        return len(self.codes)

    def materialize(self) -> np.ndarray:
        return np.array([*self.values, None], dtype=object)[self.codes]

    def where(self, test: Callable[[str], bool]) -> np.ndarray:
        per_value = np.zeros(len(self.values) + 1, dtype=bool)  # the last one answers for code -1
        per_value[:-1] = np.fromiter((test(v) for v in self.values), dtype=bool, count=len(self.values))
        return per_value[self.codes]

    def contains(self, needle: str, *, fold: bool = False) -> np.ndarray:
        """Where the text holds ``needle`` (both casefolded when ``fold``: ``icontains``)."""
        if fold:
            return self._folded._values_containing(needle.casefold())[self.codes]
        if "_folded" not in self.__dict__:
            return self._values_containing(needle)[self.codes]
        # The casefolded text is at hand: a text holding the needle holds it casefolded too (casefolding maps
        # each character on its own), so search that and check the few values it finds.
        per_value = self._folded._values_containing(needle.casefold())
        found = np.flatnonzero(per_value)
        per_value[found] = np.fromiter((needle in self.values[i] for i in found.tolist()), dtype=bool, count=len(found))
        return per_value[self.codes]

    @cached_property
    def _folded(self) -> Categorical:
        return Categorical(self.codes, [v.casefold() for v in self.values])

    @cached_property
    def _joined(self) -> tuple[str, np.ndarray]:
        """Every distinct value in one string, each followed by a separator, and where each one starts."""
        lengths = np.fromiter(map(len, self.values), dtype=np.int64, count=len(self.values))
        starts = np.zeros(len(self.values), dtype=np.int64)
        np.cumsum(lengths[:-1] + 1, out=starts[1:])
        return _SEPARATOR.join(self.values), starts

    def _values_containing(self, needle: str) -> np.ndarray:
        """Per distinct value (and a last False for code -1): whether it holds ``needle``."""
        per_value = np.zeros(len(self.values) + 1, dtype=bool)
        # Many distinct values (a text column): one substring search over all of them joined, instead of a
        # Python test per value. A match never spans two values, since the needle holds no separator.
        if len(self.values) < 256 or not needle or _SEPARATOR in needle:
            per_value[:-1] = np.fromiter((needle in v for v in self.values), dtype=bool, count=len(self.values))
            return per_value
        joined, starts = self._joined
        limit = len(self.values) // 8
        hits: list[int] = []
        at = joined.find(needle)
        while at >= 0:
            hits.append(at)
            if len(hits) > limit:  # a common word: a test per value costs less than walking every match
                per_value[:-1] = np.fromiter((needle in v for v in self.values), dtype=bool, count=len(self.values))
                return per_value
            at = joined.find(needle, at + 1)
        per_value[np.searchsorted(starts, np.asarray(hits, dtype=np.int64), side="right") - 1] = True
        return per_value


_SEPARATOR = "\x00"


@dataclass(frozen=True)
class Mixed:
    """A metadata column: each item's JSON scalar (None when absent), held as one view per type, so a
    comparison with a constant is one array operation with the meaning of :func:`compare_values`.

    Integers are held as floats, as every comparison treats them (:func:`_comparable`).
    """

    numbers: np.ndarray  # float, NaN where the value is no number (a boolean is none)
    strings: Categorical  # code -1 where the value is no text
    flags: np.ndarray  # int8: 1 true, 0 false, -1 where the value is no boolean

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> Mixed:
        size = len(values)
        plain = [_comparable(v) for v in values]
        numbers = np.fromiter((v if v.__class__ is float else math.nan for v in plain), dtype=float, count=size)
        flags = np.fromiter((int(v) if v.__class__ is bool else -1 for v in plain), dtype=np.int8, count=size)
        index: dict[str, int] = {}
        codes = np.fromiter(
            (index.setdefault(v, len(index)) if v.__class__ is str else -1 for v in plain), dtype=np.int32, count=size
        )
        return cls(numbers, Categorical(codes, list(index)), flags)

    @classmethod
    def missing(cls, size: int) -> Mixed:
        return cls(np.full(size, math.nan), Categorical(np.full(size, -1, np.int32), []), np.full(size, -1, np.int8))

    def __len__(self) -> int:
        return len(self.numbers)

    def materialize(self) -> np.ndarray:
        """The values as an object array (numbers as floats), for comparisons with no shortcut."""
        out = np.full(len(self), None, dtype=object)
        is_number = ~np.isnan(self.numbers)
        out[is_number] = self.numbers[is_number].tolist()
        is_text = self.strings.codes >= 0
        out[is_text] = self.strings.materialize()[is_text]
        is_flag = self.flags >= 0
        out[is_flag] = [bool(f) for f in self.flags[is_flag]]
        return out

    def compare(self, op: str, value: float | str | bool) -> np.ndarray:
        """``column <op> value``: false where the value is of another type, as in :func:`compare_values`."""
        if isinstance(value, bool):
            return (self.flags >= 0) & _OPS[op](self.flags, int(value))
        if isinstance(value, str):
            return self.strings.where(lambda v: _OPS[op](v, value))
        with np.errstate(invalid="ignore"):
            result = cast(np.ndarray, _OPS[op](self.numbers, float(value)))
        return result & ~np.isnan(self.numbers) if op == "!=" else result

    def member(self, values: tuple[float | str | bool, ...]) -> np.ndarray:
        """``column in values`` as :func:`_member` means it; a checked list holds one type."""
        if isinstance(values[0], bool):
            return np.isin(self.flags, [int(v) for v in values])
        if isinstance(values[0], str):
            return self.strings.where(lambda v: v in values)
        return np.isin(self.numbers, np.asarray(values, dtype=float))


Column = np.ndarray | Categorical | Mixed


def evaluate_columns(node: Node, columns: Mapping[str, Column], size: int) -> np.ndarray:
    """A boolean mask: where the condition holds for each of ``size`` items given as columns.

    Numbers are float arrays (NaN when missing), text is :class:`Categorical`, booleans are bool arrays,
    metadata is :class:`Mixed` (or an object array). A name with no column is missing for every item.
    """
    result = _columns(node, columns, size)
    if isinstance(result, np.ndarray) and result.dtype == bool:
        return result
    return _strict_truth(result, size)


def _strict_truth(value: Any, size: int) -> np.ndarray:
    if isinstance(value, Categorical):
        return np.zeros(size, bool)
    if isinstance(value, Mixed):
        return value.flags == 1
    array = np.asarray(value)
    if array.dtype == bool:
        return array if array.shape else np.full(size, bool(array))
    if array.dtype == object:
        return np.fromiter((v is True for v in array), dtype=bool, count=size)
    return np.zeros(size, bool)


def _columns(node: Node, columns: Mapping[str, Column], size: int) -> Any:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Name):
        if node.key in columns:
            column = columns[node.key]
            if isinstance(column, np.ndarray) and column.dtype == object and node.type == Type.ANY:
                return Mixed.from_values(column.tolist())
            return column
        missing = _missing(node.type)
        if node.type == Type.STRING:
            return Categorical(np.zeros(size, np.int32), [""])
        if node.type == Type.ANY:
            return Mixed.missing(size)
        return np.full(size, missing, dtype=float if node.type == Type.NUMBER else object if missing is None else bool)
    if isinstance(node, Compare):
        return _compare_columns(node, _columns(node.left, columns, size), _columns(node.right, columns, size), size)
    if isinstance(node, InList):
        operand = _columns(node.operand, columns, size)
        if isinstance(operand, Categorical):
            mask = operand.where(lambda v: v in node.values)
        elif isinstance(operand, Mixed):
            mask = operand.member(node.values) if node.values else np.zeros(size, bool)
        elif isinstance(operand, np.ndarray) and operand.dtype.kind == "f":
            mask = np.isin(operand, np.asarray([v for v in node.values if not isinstance(v, bool)], dtype=float))
        else:
            mask = np.fromiter((_member(v, node.values) for v in operand), dtype=bool, count=size)
        return ~mask if node.negate else mask
    if isinstance(node, StringOp):
        operand = _columns(node.operand, columns, size)
        if isinstance(operand, Mixed):
            operand = operand.strings
        if isinstance(operand, Categorical) and node.op in ("contains", "icontains"):
            return operand.contains(node.value, fold=node.op == "icontains")
        if isinstance(operand, Categorical):
            return operand.where(lambda v: string_test(node.op, v, node.value))
        return np.fromiter((string_test(node.op, v, node.value) for v in operand), dtype=bool, count=size)
    if isinstance(node, BoolOp):
        masks = [_strict_truth(_columns(item, columns, size), size) for item in node.items]
        combine = np.logical_and if node.op == "and" else np.logical_or
        return cast(np.ndarray, combine.reduce(masks))
    if isinstance(node, Not):
        return ~_strict_truth(_columns(node.item, columns, size), size)
    raise TypeError(f"unknown node {type(node).__name__}")


def _compare_columns(node: Compare, left: Any, right: Any, size: int) -> np.ndarray:
    op = node.op
    if isinstance(left, Categorical) and isinstance(right, str):
        return left.where(lambda v: _OPS[op](v, right))
    if isinstance(left, Mixed) and isinstance(node.right, Const):
        return left.compare(op, node.right.value)
    if isinstance(left, Mixed):
        left = left.materialize()
    if isinstance(right, Mixed):
        right = right.materialize()
    if isinstance(left, Categorical):
        left = left.materialize()
    if isinstance(right, Categorical):
        right = right.materialize()
    left_array, right_array = np.asarray(left), np.asarray(right)
    if (
        left_array.dtype.kind in "fb"
        and right_array.dtype.kind in "fb"
        and Type.ANY
        not in (
            _type_of(node.left),
            _type_of(node.right),
        )
    ):
        if left_array.dtype.kind == "f" or right_array.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                result = _OPS[op](left_array, right_array)
            if op == "!=":  # NaN compares false, as everywhere else
                result = result & ~np.isnan(left_array.astype(float)) & ~np.isnan(right_array.astype(float))
            return np.broadcast_to(result, (size,)).copy()
        return np.broadcast_to(_OPS[op](left_array, right_array), (size,)).copy()
    lefts = left_array if left_array.shape else np.full(size, left, dtype=object)
    rights = right_array if right_array.shape else np.full(size, right, dtype=object)
    return np.fromiter((compare_values(op, a, b) for a, b in zip(lefts, rights, strict=True)), dtype=bool, count=size)
