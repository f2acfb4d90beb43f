"""The rule language: conditions policy staff write, parsed, checked, then run three ways with one meaning.

A condition reads like ``score.hate >= 0.8 and surface in ["comments", "dm"] and not text contains "quote"``.
The stages, one module each:

* ``parser``: the grammar; text to lark's parse tree (never ``eval``-ed), syntax and nesting refused;
* ``checker``: names and types checked against a :class:`Vocabulary` (``vocabulary``), every problem named with
  its line and column, giving the typed tree of ``tree``;
* ``interpreter``: walks the tree for one item, the reference the other two are tested against;
* ``compiler``: a whole ordered rule list as one Python function, used on live traffic;
* ``columnar``: a condition over numpy columns of many items at once, for backtests.

``semantics`` holds the one meaning of a comparison all three evaluators share (missing values compare false).
Callers import from this package; the names below are the ones used elsewhere.
"""

from routing.rules.language.checker import Problem, RuleLanguageError
from routing.rules.language.columnar import Categorical, Column, Mixed, evaluate_columns
from routing.rules.language.compiler import CompiledRules, compile_rules
from routing.rules.language.interpreter import interpret, interpret_rules
from routing.rules.language.parser import MAX_CONDITION_LENGTH, MAX_NESTING, parse
from routing.rules.language.tree import BoolOp, Const, Node, Type, names_used
from routing.rules.language.vocabulary import Vocabulary, score_key

__all__ = [
    "MAX_CONDITION_LENGTH",
    "MAX_NESTING",
    "BoolOp",
    "Categorical",
    "Column",
    "CompiledRules",
    "Const",
    "Mixed",
    "Node",
    "Problem",
    "RuleLanguageError",
    "Type",
    "Vocabulary",
    "compile_rules",
    "evaluate_columns",
    "interpret",
    "interpret_rules",
    "names_used",
    "parse",
    "score_key",
]
