"""Interpreting: a checked condition evaluated on one item's features by walking the tree.

Slow, but short enough to read as the definition: the compiled functions and the columns are tested against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from routing.rules.language import semantics
from routing.rules.language.tree import BoolOp, Compare, Const, InList, Name, Node, Not, StringOp


def interpret(node: Node, row: Mapping[str, Any]) -> Any:
    """Evaluate a checked condition on one row by walking the tree."""
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Name):
        return row.get(node.key, semantics.missing_value(node.type))
    if isinstance(node, Compare):
        return semantics.compare_values(node.op, interpret(node.left, row), interpret(node.right, row))
    if isinstance(node, InList):
        found = semantics.member(interpret(node.operand, row), node.values)
        return not found if node.negate else found
    if isinstance(node, StringOp):
        return semantics.string_test(node.op, interpret(node.operand, row), node.value)
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
