"""One meaning for comparisons, shared by the interpreter, the compiled functions and the columns.

Missing values: a score an item does not have is NaN and, as in SQL, every comparison with it is false (``!=``
too). A metadata value of the wrong type compares false rather than raising. The three evaluators call (or bind)
these functions through this module, so they cannot drift apart.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from routing.rules.language.tree import Type

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def comparable(value: Any) -> Any:
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
    left, right = comparable(left), comparable(right)
    if left is None or right is None:
        return False
    if (isinstance(left, float) and math.isnan(left)) or (isinstance(right, float) and math.isnan(right)):
        return False
    if type(left) is not type(right):
        return False
    return OPERATORS[op](left, right)


def string_test(op: str, value: Any, needle: str) -> bool:
    """``value <op> needle`` for contains, icontains, startswith and endswith; false when the value is no text."""
    if not isinstance(value, str):
        return False
    if op == "contains":
        return needle in value
    if op == "icontains":
        return needle.casefold() in value.casefold()
    if op == "startswith":
        return value.startswith(needle)
    return value.endswith(needle)


def member(value: Any, values: tuple[Any, ...]) -> bool:
    """``value in values``, of the same type only; a missing value is in no list."""
    value = comparable(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return any(type(value) is type(comparable(v)) and value == comparable(v) for v in values)


def missing_value(kind: Type) -> Any:
    """What a name reads as when the item lacks it."""
    return {Type.NUMBER: math.nan, Type.STRING: "", Type.BOOL: False, Type.ANY: None}[kind]
