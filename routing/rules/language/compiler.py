"""Compiling: an ordered list of checked conditions becomes one Python function, for live traffic.

We build Python ``ast`` nodes ourselves from the checked tree (user text only ever becomes a constant) and
compile them, since live routing decides every item and walking the trees is far slower (figures and what the
generated code saves: docs/performance.md, "Rule language"). It must mean what :func:`interpreter.interpret` means.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from routing.rules.language import semantics
from routing.rules.language.tree import BoolOp, Compare, Const, InList, Name, Node, Not, StringOp, Type, type_of


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
        """Metadata as :func:`semantics.comparable` sees it (ints as floats, numpy scalars as Python values), made once
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
            if type_of(node.operand) == Type.ANY and isinstance(operand, ast.Name) and node.values:
                # semantics.member on a checked (one-typed) list: the settled value is of the list's type and in it.
                settled = self.settle(operand)
                kind = type(semantics.comparable(node.values[0]))
                test: ast.expr = self.typed(
                    settled, kind, ast.Compare(settled, [ast.In()], [self.const(frozenset(node.values))])
                )
            elif type_of(node.operand) == Type.ANY or any(isinstance(v, bool) for v in node.values):
                test = self.call("_member", operand, self.const(node.values))
            else:  # NaN and "" are never members of a checked, same-typed list
                test = ast.Compare(operand, [ast.In()], [self.const(frozenset(node.values))])
            return ast.UnaryOp(ast.Not(), test) if node.negate else test
        if isinstance(node, StringOp):
            operand = self.expr(node.operand)
            if type_of(node.operand) == Type.ANY:
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
        """``metadata.x <op> constant`` as :func:`semantics.compare_values` means it: of the constant's type, then
        compared."""
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
        if type_of(node) == Type.ANY:
            return ast.Compare(compiled, [ast.Is()], [ast.Constant(True)])
        return compiled

    def compare(self, node: Compare) -> ast.expr:
        left, right = self.expr(node.left), self.expr(node.right)
        kinds = {type_of(node.left), type_of(node.right)}
        if Type.ANY in kinds:
            if isinstance(left, ast.Name) and type_of(node.left) == Type.ANY and isinstance(node.right, Const):
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
# Values semantics.comparable leaves as they are: a settled value of these classes needs no call.
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
        call = ast.Call(compiler.helper(semantics.comparable), [raw], [])
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
        "_compare": semantics.compare_values,
        "_string_test": semantics.string_test,
        "_member": semantics.member,
        **{f"_missing_{kind.name}": semantics.missing_value(kind) for kind in Type},
        **compiler.consts,
    }
    exec(compile(module, "<rule set>", "exec"), namespace)  # noqa: S102 - our own ast, built above
    return CompiledRules(
        first_match=namespace["first_match"],
        all_matches=namespace["all_matches"],
        names=frozenset(compiler.locals),
        source=ast.unparse(module),
    )
