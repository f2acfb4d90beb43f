"""Columns: a checked condition evaluated over many items at once, as numpy arrays, for backtests.

A backtest asks the same conditions of a million stored items; one array operation per condition (and text
compared once per distinct value) replaces a Python call per item. The masks must agree with the interpreter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

import numpy as np

from routing.rules.language import semantics
from routing.rules.language.tree import BoolOp, Compare, Const, InList, Name, Node, Not, StringOp, Type, type_of


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
        # Many distinct values (a text column): one search over them all joined, where a match never spans two
        # values since the needle holds no separator. Why, and the two thresholds: docs/performance.md, "Rule language".
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
    comparison with a constant is one array operation with the meaning of :func:`semantics.compare_values`.

    Integers are held as floats, as every comparison treats them (:func:`semantics.comparable`).
    """

    numbers: np.ndarray  # float, NaN where the value is no number (a boolean is none)
    strings: Categorical  # code -1 where the value is no text
    flags: np.ndarray  # int8: 1 true, 0 false, -1 where the value is no boolean

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> Mixed:
        size = len(values)
        comparable = semantics.comparable
        plain = [comparable(v) for v in values]
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
        """``column <op> value``: false where the value is of another type, as in :func:`semantics.compare_values`."""
        if isinstance(value, bool):
            return (self.flags >= 0) & semantics.OPERATORS[op](self.flags, int(value))
        if isinstance(value, str):
            compare = semantics.OPERATORS[op]
            return self.strings.where(lambda v: compare(v, value))
        with np.errstate(invalid="ignore"):
            result = cast(np.ndarray, semantics.OPERATORS[op](self.numbers, float(value)))
        return result & ~np.isnan(self.numbers) if op == "!=" else result

    def member(self, values: tuple[float | str | bool, ...]) -> np.ndarray:
        """``column in values`` as :func:`semantics.member` means it; a checked list holds one type."""
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
        missing = semantics.missing_value(node.type)
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
            member = semantics.member
            mask = np.fromiter((member(v, node.values) for v in operand), dtype=bool, count=size)
        return ~mask if node.negate else mask
    if isinstance(node, StringOp):
        operand = _columns(node.operand, columns, size)
        if isinstance(operand, Mixed):
            operand = operand.strings
        if isinstance(operand, Categorical) and node.op in ("contains", "icontains"):
            return operand.contains(node.value, fold=node.op == "icontains")
        test = semantics.string_test
        if isinstance(operand, Categorical):
            return operand.where(lambda v: test(node.op, v, node.value))
        return np.fromiter((test(node.op, v, node.value) for v in operand), dtype=bool, count=size)
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
        compare = semantics.OPERATORS[op]
        return left.where(lambda v: compare(v, right))
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
            type_of(node.left),
            type_of(node.right),
        )
    ):
        if left_array.dtype.kind == "f" or right_array.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                result = semantics.OPERATORS[op](left_array, right_array)
            if op == "!=":  # NaN compares false, as everywhere else
                result = result & ~np.isnan(left_array.astype(float)) & ~np.isnan(right_array.astype(float))
            return np.broadcast_to(result, (size,)).copy()
        return np.broadcast_to(semantics.OPERATORS[op](left_array, right_array), (size,)).copy()
    lefts = left_array if left_array.shape else np.full(size, left, dtype=object)
    rights = right_array if right_array.shape else np.full(size, right, dtype=object)
    compare_values = semantics.compare_values
    return np.fromiter((compare_values(op, a, b) for a, b in zip(lefts, rights, strict=True)), dtype=bool, count=size)
