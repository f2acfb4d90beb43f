"""The checked tree: what a condition becomes once parsed and checked, and what every later stage reads.

Small frozen nodes that keep the line and column they were written at (so problems can point there) and the
type of every name (so the interpreter, the compiler and the columns need no vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Type(Enum):
    NUMBER = "number"
    STRING = "string"
    BOOL = "true/false"
    ANY = "any"  # metadata: whatever the integrating service sent

    def __str__(self) -> str:
        return self.value


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


def type_of(node: Node) -> Type:
    """What a node yields: a constant or name its own type, every operator true/false."""
    if isinstance(node, Const):
        return node.type
    if isinstance(node, Name):
        return node.type
    return Type.BOOL


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
