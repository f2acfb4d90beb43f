"""Before a version goes live: build it and run every rule on sample rows (recent stored items and made-up edge
cases), so a rule that cannot run is refused at activation instead of being found by triage."""

from __future__ import annotations

import math
from typing import Any

from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from queues.models import ItemKind, ItemState, ReviewItem
from routing.rules.engine import RuleProgram, error_text, program_for, vocabulary_for
from routing.rules.features import ROW_FIELDS, item_rows
from routing.rules.language import Type, compile_rules, interpret, names_used
from routing.rules.models import RuleSet, RuleSetKind

SAMPLE_ITEMS = 200
# Values a field of each type may hold at the edges: missing, empty, huge, negative, odd text.
EDGE_VALUES: dict[Type, list[Any]] = {
    Type.NUMBER: [math.nan, 0.0, -1.0, 1e308, -1e308, math.inf, -math.inf, 1.0],
    Type.STRING: ["", "x" * 10_000, "ﬁ \u202e\u0000 ß İ", "DM"],
    Type.BOOL: [False, True],
    # Metadata is whatever the integrating service sent, JSON integers of any size included.
    Type.ANY: [None, True, False, 0, -1, 10**400, -(10**400), 1.5, math.nan, "", "gold", "ﬁ"],
}


class RuleSetUnsafe(ApplicationError):
    code = "rule_set_unsafe"


def ruleset_preflight(rule_set: RuleSet) -> None:
    """Refuse (naming the rule) a version any rule of which cannot be built or raises on a sample row."""
    program = program_for(rule_set)
    if program.broken:
        index, error = next(iter(program.broken.items()))
        _refuse(rule_set, program, index, f"cannot run: {error}")
    rows = sample_rows(rule_set.kind, program)
    for index, condition in enumerate(program.conditions):
        try:
            single = compile_rules([condition])
            for row in rows:
                single.first_match(row)
                interpret(condition, row)
        except Exception as exc:  # any failure of a rule is what this check is for
            _refuse(rule_set, program, index, f"fails on a sample item: {error_text(exc)}")
    # The whole version as triage runs it: one compiled function over every row.
    try:
        for row in rows:
            program.decide(row)
    except Exception as exc:
        raise RuleSetUnsafe(f"{rule_set} fails on a sample item: {error_text(exc)}; it stays inactive.") from exc


def _refuse(rule_set: RuleSet, program: RuleProgram, index: int, why: str) -> None:
    raise RuleSetUnsafe(
        f"Rule '{program.specs[index].name}' (#{index + 1}) {why}. {rule_set} stays inactive; fix it in a new draft.",
        field="rules",
    )


def sample_rows(kind: str, program: RuleProgram) -> list[dict[str, Any]]:
    """Rows as rules see them: the latest routed items of ``kind``, then edge rows made from the names the
    rules read (each name through every edge value of its type), then a row with nothing set at all."""
    if kind == RuleSetKind.ESCALATION:  # escalation rules read waiting items, with their queue and due time
        waiting = ReviewItem.objects.filter(state=ItemState.QUEUED).select_related("queue")
        rows = list(item_rows(list(waiting.order_by("-pk")[:SAMPLE_ITEMS]), now=timezone.now()).values())
    else:
        routed = ReviewItem.objects.exclude(state=ItemState.RECEIVED).only(*ROW_FIELDS, "state")
        routed = (
            routed.filter(kind=ItemKind.APPEAL) if kind == RuleSetKind.APPEALS else routed.exclude(kind=ItemKind.APPEAL)
        )
        rows = list(item_rows(list(routed.order_by("-pk")[:SAMPLE_ITEMS])).values())
    vocabulary = vocabulary_for(kind)
    types: dict[str, Type] = {}
    for condition in program.conditions:
        for key in names_used(condition):
            found = vocabulary.lookup(key.split(".", 1))
            types[key] = Type.ANY if isinstance(found, str) else found[1]
    widest = max((len(EDGE_VALUES[t]) for t in types.values()), default=0)
    rows += [{key: EDGE_VALUES[t][n % len(EDGE_VALUES[t])] for key, t in types.items()} for n in range(widest)]
    rows.append({})
    return rows
