"""Reads for the rule editor: versions by kind, a version's audit history, shadow-versus-live comparison,
and the shapes the pages draw (destination bars, transition tables)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.db.models import QuerySet

from ops_platform.core.models import AuditLog, DecisionLabel, EnforcementAction, Policy
from queues.models import Queue
from routing.rules.models import (
    Backtest,
    RoutingDecision,
    Rule,
    RuleIncident,
    RuleSet,
    RuleSetEditor,
    RuleSetKind,
    RuleSetStatus,
)

SHADOW_COMPARE_LIMIT = 50_000


def rulesets_by_kind() -> list[dict[str, Any]]:
    versions = list(RuleSet.objects.select_related("created_by", "approved_by", "default_queue").order_by("-version"))
    out = []
    for kind, label in RuleSetKind.choices:
        mine = [v for v in versions if v.kind == kind]
        out.append(
            {
                "kind": kind,
                "label": label,
                "active": next((v for v in mine if v.status == RuleSetStatus.ACTIVE), None),
                "versions": mine,
                "rollback_to": rollback_target(mine),
            }
        )
    return out


def queues_active() -> QuerySet[Queue]:
    """The queues a rule (or a version's default) may send items to."""
    return Queue.objects.filter(is_active=True)


def policies_active() -> QuerySet[Policy]:
    return Policy.objects.filter(is_active=True)


def labels_active() -> QuerySet[DecisionLabel]:
    """The labels a rule may apply: retired ones stay on old decisions but are offered to no new rule."""
    return DecisionLabel.objects.filter(is_active=True, policy__is_active=True).select_related("policy")


def enforcement_actions_active() -> QuerySet[EnforcementAction]:
    return EnforcementAction.objects.filter(is_active=True)


def rulesets_all() -> QuerySet[RuleSet]:
    return RuleSet.objects.all()


def rulesets_of_kind(kind: str) -> QuerySet[RuleSet]:
    return RuleSet.objects.filter(kind=kind)


def ruleset_for_detail() -> QuerySet[RuleSet]:
    """Versions with what the detail page names (default queue, creator, approver) joined in."""
    return RuleSet.objects.select_related("default_queue", "created_by", "approved_by")


def ruleset_rules(rule_set: RuleSet) -> list[Rule]:
    """A version's rules in order, with what each rule's row names joined in."""
    return list(rule_set.rules.select_related("queue", "policy", "enforcement_action", "label"))


def ruleset_other_versions(rule_set: RuleSet) -> QuerySet[RuleSet]:
    """The other versions of the same kind, newest first."""
    return RuleSet.objects.filter(kind=rule_set.kind).exclude(pk=rule_set.pk).order_by("-version")


def ruleset_backtests_recent(rule_set: RuleSet, limit: int = 10) -> QuerySet[Backtest]:
    return rule_set.backtests.all()[:limit]


def ruleset_diff_base(rule_set: RuleSet) -> RuleSet | None:
    """What a diff compares ``rule_set`` with when the page names nothing: the version it was based on, else the
    active version of its kind (when that is another one)."""
    return (
        rule_set.based_on
        or RuleSet.objects.filter(kind=rule_set.kind, status=RuleSetStatus.ACTIVE).exclude(pk=rule_set.pk).first()
    )


def rule_incidents_open() -> QuerySet[RuleIncident]:
    """Rules that failed while routing and were skipped, not yet resolved: most recent first."""
    return RuleIncident.objects.filter(resolved_at__isnull=True).select_related("rule", "rule_set")


def rollback_target(versions: list[RuleSet]) -> RuleSet | None:
    """Of one kind's versions, the one a rollback restores: the retired version that went live last, provided it
    went live before the active one (None: nothing to roll back to)."""
    active = next((v for v in versions if v.status == RuleSetStatus.ACTIVE), None)
    retired = [v for v in versions if v.status == RuleSetStatus.RETIRED]
    previous = max(retired, key=lambda v: (v.activated_at is not None, v.activated_at, v.version), default=None)
    if previous is None:
        return None
    if (
        active is not None
        and previous.activated_at
        and active.activated_at
        and previous.activated_at > active.activated_at
    ):
        return None
    return previous


def backtests_for_detail() -> QuerySet[Backtest]:
    return Backtest.objects.select_related("rule_set", "baseline")


def ruleset_active(kind: str) -> RuleSet | None:
    return (
        RuleSet.objects.filter(kind=kind, status=RuleSetStatus.ACTIVE)
        .select_related("activated_by", "approved_by")
        .first()
    )


def ruleset_rollback_target(kind: str) -> RuleSet | None:
    """:func:`rollback_target` of ``kind``, read from the database (the caller may hold the kind's rows locked)."""
    versions = list(
        RuleSet.objects.filter(kind=kind, status__in=[RuleSetStatus.ACTIVE, RuleSetStatus.RETIRED]).select_related(
            "activated_by", "approved_by", "created_by"
        )
    )
    return rollback_target(versions)


def ruleset_editors(rule_set: RuleSet) -> list[RuleSetEditor]:
    """Who wrote the version (none of them may approve it), first writer first."""
    return list(RuleSetEditor.objects.filter(rule_set=rule_set).select_related("user"))


def ruleset_writers(rule_set: RuleSet) -> set[int]:
    """Everyone who wrote any of the version: its recorded editors, its creator and its submitter."""
    writers = set(RuleSetEditor.objects.filter(rule_set=rule_set).values_list("user_id", flat=True))
    return writers | {pk for pk in (rule_set.created_by_id, rule_set.submitted_by_id) if pk is not None}


def ruleset_history(rule_set: RuleSet) -> list[AuditLog]:
    return list(AuditLog.objects.filter(target_type="routing.ruleset", target_id=str(rule_set.pk)).order_by("at")[:200])


def shadow_comparison(rule_set: RuleSet) -> dict[str, Any]:
    """Live versus shadow destinations for the items this version shadowed (latest first, capped)."""
    shadow = dict(
        RoutingDecision.objects.filter(rule_set=rule_set, shadow=True)
        .order_by("-at")
        .values_list("item_id", "destination")[:SHADOW_COMPARE_LIMIT]
    )
    live: dict[int, str] = {}
    for item_id, destination in (
        RoutingDecision.objects.filter(item_id__in=list(shadow), shadow=False)
        .order_by("at", "pk")
        .values_list("item_id", "destination")
    ):
        live.setdefault(item_id, destination)  # the routing decision, not later escalations
    pairs = Counter((live.get(i, "not routed"), d) for i, d in shadow.items())
    same = sum(n for (a, b), n in pairs.items() if a == b)
    return {
        "items": len(shadow),
        "agree": same,
        "differ": len(shadow) - same,
        "live": dict(Counter(live.get(i, "not routed") for i in shadow)),
        "shadow": dict(Counter(shadow.values())),
        "transitions": [{"from": a, "to": b, "items": n} for (a, b), n in pairs.most_common()],
    }


def destination_chart(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Bars for the draft (or shadow) count and the current count per destination, widths in percent."""
    draft = result.get("destinations", {})
    current = result.get("current", {})
    names = sorted(set(draft) | set(current), key=lambda n: -(draft.get(n, 0) + current.get(n, 0)))
    top = max([*draft.values(), *current.values(), 1])
    return [
        {
            "name": name,
            "draft": draft.get(name, 0),
            "current": current.get(name, 0),
            "draft_pct": round(100 * draft.get(name, 0) / top, 1),
            "current_pct": round(100 * current.get(name, 0) / top, 1),
        }
        for name in names
    ]


def transition_table(transitions: list[dict[str, Any]]) -> dict[str, Any]:
    """The from -> to counts as a matrix: rows are current destinations, columns the new ones."""
    rows = sorted({t["from"] for t in transitions})
    cols = sorted({t["to"] for t in transitions})
    cell = {(t["from"], t["to"]): t["items"] for t in transitions}
    return {
        "columns": cols,
        "rows": [{"name": r, "cells": [(cell.get((r, c), 0), r == c) for c in cols]} for r in rows],
    }
