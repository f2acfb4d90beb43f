"""Checking: lark's parse tree becomes the typed tree, or a list of problems, each with its line and column.

Every name is looked up in the :class:`Vocabulary` and every operator's operands are type-checked here, once, so
the stages after it (interpreter, compiler, columns) never meet an unknown name or a mistyped comparison.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from lark import Token, Transformer, Tree, v_args

from routing.rules.language.tree import (
    BoolOp,
    Compare,
    Const,
    InList,
    Name,
    Node,
    Not,
    StringOp,
    Type,
    type_of,
)
from routing.rules.language.vocabulary import Vocabulary


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


def check(tree: Tree[Token], vocabulary: Vocabulary) -> Node:
    """The checked tree of a parsed condition; raise :class:`RuleLanguageError` naming every problem found."""
    checker = _Checker(vocabulary)
    node = checker.transform(tree)
    if checker.problems:
        raise RuleLanguageError(checker.problems)
    assert isinstance(node, Node)
    if type_of(node) not in (Type.BOOL, Type.ANY):
        raise RuleLanguageError(
            [Problem(node.line, node.column, f"a condition must be true or false, but this is a {type_of(node)}")]
        )
    return node


def _unquote(token: str) -> str:
    # ESCAPED_STRING is a JSON-style string: decode escapes without evaluating anything.
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
        lt, rt = type_of(left), type_of(right)
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
        elif type_of(operand) not in (Type.ANY, *types):
            self._fail(meta, f"{_describe(operand)} is a {type_of(operand)}, but the list holds {types.pop()}s")
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
        if type_of(operand) not in (Type.STRING, Type.ANY) or isinstance(operand, Const):
            self._fail(operand, f"'{op}' works on text fields, but {_describe(operand)} is a {type_of(operand)}")
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
        if type_of(node) not in (Type.BOOL, Type.ANY):
            self._fail(node, f"'{word}' joins conditions, but {_describe(node)} is a {type_of(node)}")

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
