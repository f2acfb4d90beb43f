"""Backtests: run a rule set version over the stored items of a period, beside the active version.

The same checked conditions run over numpy columns (``language.evaluate_columns``) instead of rows, so a
million items take seconds. The result counts items per destination, the active -> draft transition
matrix, projected daily load per queue against the people who can work it, and, where people decided
the items, the precision and recall of each auto-action rule.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import ReviewerProfile, User
from ops_platform.core.services import audit_record
from queues.models import Decision, ItemKind, ItemState, Queue, ReviewItem
from routing.rules.columns import ItemColumns, human_outcomes, item_columns
from routing.rules.engine import CHILD_SAFETY_SCORE, RuleProgram, error_text, program_for
from routing.rules.language import evaluate_columns
from routing.rules.models import Backtest, BacktestStatus, RuleAction, RuleSet, RuleSetKind, RuleSetStatus

logger = logging.getLogger(__name__)

BACKTEST_TASK = "routing.tasks.backtest_run_task"
MAX_PERIOD = timedelta(days=366)


@dataclass
class Routed:
    """Per item: the index of its destination in ``destinations`` and of the deciding rule (-1: none)."""

    destinations: list[str]
    codes: np.ndarray
    rule_index: np.ndarray  # index into program.specs, -1 for default/guard
    auto_rule_hits: dict[str, np.ndarray]  # auto-action rule name -> mask of items it matched (before caps)


def route_columns(
    program: RuleProgram,
    data: ItemColumns,
    *,
    queue_slugs: dict[int, str],
    default_slug: str,
    escalation_targets: dict[str, str] | None = None,
) -> Routed:
    """Where each item would go under ``program``: the live semantics of ``rules.apply``, vectorized.

    ``escalation_targets`` maps a queue's slug to its escalation target's: where an escalate rule naming
    no queue sends items (the default queue's target), as live routing does.
    """
    size = len(data)
    columns = data.columns
    destinations: list[str] = []
    index_of: dict[str, int] = {}

    def code(name: str) -> int:
        if name not in index_of:
            index_of[name] = len(destinations)
            destinations.append(name)
        return index_of[name]

    default_queue = queue_slugs.get(program.default_queue_id or 0) or default_slug
    codes = np.full(size, code(f"queue:{default_queue}"), dtype=np.int32)
    rule_index = np.full(size, -1, dtype=np.int32)
    undecided = np.ones(size, dtype=bool)
    guard = columns.get(CHILD_SAFETY_SCORE)
    if isinstance(guard, np.ndarray) and program.kind != RuleSetKind.ESCALATION:
        with np.errstate(invalid="ignore"):
            flagged = guard >= settings.ROUTING_CHILD_SAFETY_THRESHOLD
        codes[flagged] = code(f"queue:{settings.ROUTING_CHILD_SAFETY_QUEUE}")
        undecided &= ~flagged
    scored = columns.get("scored")
    scored_mask = scored if isinstance(scored, np.ndarray) else np.zeros(size, dtype=bool)
    hits: dict[str, np.ndarray] = {}
    for index in program.terminal:
        spec = program.specs[index]
        mask = evaluate_columns(program.conditions[index], columns, size)
        if spec.action == RuleAction.AUTO_ACTION:
            hits[spec.name] = mask & undecided
        mask &= undecided
        if not mask.any():
            continue
        undecided &= ~mask
        rule_index[mask] = index
        fallback = queue_slugs.get(spec.queue_id or 0) or default_queue
        if spec.action == RuleAction.ROUTE:
            codes[mask] = code(f"queue:{queue_slugs.get(spec.queue_id or 0) or default_queue}")
        elif spec.action == RuleAction.ESCALATE:
            target = queue_slugs.get(spec.queue_id or 0) or (escalation_targets or {}).get(default_queue)
            codes[mask] = code(f"queue:{target or default_queue}")
        elif spec.action == RuleAction.AUTO_ACTION:
            auto = mask & scored_mask
            codes[mask & ~scored_mask] = code(f"queue:{fallback}")
            if spec.daily_cap:
                auto = _within_cap(auto, data.received_day, spec.daily_cap)
                codes[mask & scored_mask & ~auto] = code(f"queue:{fallback}")
            codes[auto] = code(f"auto:{spec.policy_slug}/{spec.enforcement_action_slug}")
    return Routed(destinations, codes, rule_index, hits)


def _within_cap(mask: np.ndarray, day: np.ndarray, cap: int) -> np.ndarray:
    """The items an auto-action rule would close: the first ``cap`` it matched each day, in arrival order."""
    where = np.flatnonzero(mask)
    if not len(where):
        return mask
    days = day[where]
    order = np.argsort(days, kind="stable")
    sorted_days = days[order]
    starts = np.searchsorted(sorted_days, sorted_days, side="left")
    rank = np.arange(len(sorted_days)) - starts
    keep = np.zeros(len(mask), dtype=bool)
    keep[where[order[rank < cap]]] = True
    return keep


def baseline_program(kind: str) -> RuleProgram | None:
    active = RuleSet.objects.filter(kind=kind, status=RuleSetStatus.ACTIVE).first()
    return program_for(active) if active else None


def _empty_program(kind: str) -> RuleProgram:
    return RuleProgram(None, kind, 0, None, "", [], [])


def backtest_compute(
    program: RuleProgram, baseline: RuleProgram | None, *, start: datetime, end: datetime, progress: Any = None
) -> dict[str, Any]:
    """The whole backtest result as JSON-ready data."""
    if program.kind == RuleSetKind.ESCALATION:
        raise ApplicationError("Escalation rules act on waiting items over time; backtest routing versions.")
    if program.broken:
        index, error = next(iter(program.broken.items()))
        raise ApplicationError(f"Rule '{program.specs[index].name}' cannot run: {error}. Fix it in a new draft.")
    base = baseline or _empty_program(program.kind)
    started = time.perf_counter()
    names = set(program.names) | set(base.names)
    data = item_columns(
        start=start, end=end, names=names, progress=progress, appeals=program.kind == RuleSetKind.APPEALS
    )
    load_seconds = time.perf_counter() - started
    queue_slugs = dict(Queue.objects.values_list("pk", "slug"))
    default = Queue.objects.filter(is_default_intake=True).values_list("slug", flat=True).first() or "default"
    targets = dict(Queue.objects.filter(escalation_target__isnull=False).values_list("slug", "escalation_target__slug"))
    draft = route_columns(program, data, queue_slugs=queue_slugs, default_slug=default, escalation_targets=targets)
    current = route_columns(base, data, queue_slugs=queue_slugs, default_slug=default, escalation_targets=targets)
    evaluate_seconds = time.perf_counter() - started - load_seconds

    size = len(data)
    days = max(1.0, (end - start).total_seconds() / 86400)
    draft_counts = _counts(draft)
    current_counts = _counts(current)
    matrix = (
        Counter(
            zip(
                (current.destinations[c] for c in current.codes.tolist()),
                (draft.destinations[c] for c in draft.codes.tolist()),
                strict=True,
            )
        )
        if size <= 200_000
        else _matrix_numpy(current, draft)
    )
    result: dict[str, Any] = {
        "items": size,
        "days": round(days, 2),
        "destinations": draft_counts,
        "current": current_counts,
        "transitions": [
            {"from": a, "to": b, "items": n} for (a, b), n in sorted(matrix.items(), key=lambda kv: -kv[1])
        ],
        "rules": _rule_counts(program, draft),
        "load": _queue_load(draft_counts, current_counts, days),
        "auto_actions": _auto_action_quality(program, draft, data),
        "baseline_version": base.version if baseline else None,
        "seconds": {"load": round(load_seconds, 3), "evaluate": round(evaluate_seconds, 3)},
    }
    result["changed"] = size - sum(n for (a, b), n in matrix.items() if a == b)
    return result


def _counts(routed: Routed) -> dict[str, int]:
    counts = np.bincount(routed.codes, minlength=len(routed.destinations))
    return {routed.destinations[i]: int(n) for i, n in enumerate(counts) if n}


def _matrix_numpy(current: Routed, draft: Routed) -> Counter[tuple[str, str]]:
    width = len(draft.destinations)
    pairs = np.bincount(
        current.codes.astype(np.int64) * width + draft.codes, minlength=len(current.destinations) * width
    )
    found: Counter[tuple[str, str]] = Counter()
    for flat in np.flatnonzero(pairs):
        found[(current.destinations[flat // width], draft.destinations[flat % width])] = int(pairs[flat])
    return found


def _rule_counts(program: RuleProgram, routed: Routed) -> list[dict[str, Any]]:
    counts = np.bincount(routed.rule_index + 1, minlength=len(program.specs) + 1)
    rows = [{"rule": "(default or child-safety guard)", "items": int(counts[0])}]
    rows += [{"rule": spec.name, "items": int(counts[i + 1])} for i, spec in enumerate(program.specs)]
    return rows


def _queue_load(draft: dict[str, int], current: dict[str, int], days: float) -> list[dict[str, Any]]:
    """Projected items a day per queue against who can work it and what it decided lately."""
    since = timezone.now() - timedelta(days=14)
    decided = dict(
        Decision.objects.filter(decided_at__gte=since, queue__isnull=False)
        .values_list("queue__slug")
        .annotate(n=Count("pk"))
        .values_list("queue__slug", "n")
    )
    profiles = list(ReviewerProfile.objects.select_related("team").prefetch_related("skills"))
    rows = []
    slugs = sorted({d.removeprefix("queue:") for d in (*draft, *current) if d.startswith("queue:")})
    for queue in Queue.objects.filter(slug__in=slugs).prefetch_related("allowed_teams", "allowed_vendors"):
        eligible = sum(1 for p in profiles if queue.may_be_worked_by(p))
        per_day = draft.get(f"queue:{queue.slug}", 0) / days
        throughput = decided.get(queue.slug, 0) / 14
        rows.append(
            {
                "queue": queue.slug,
                "current_per_day": round(current.get(f"queue:{queue.slug}", 0) / days, 1),
                "draft_per_day": round(per_day, 1),
                "decided_per_day": round(throughput, 1),
                "eligible_reviewers": eligible,
                "over_capacity": bool(throughput and per_day > throughput),
            }
        )
    return rows


def _auto_action_quality(program: RuleProgram, routed: Routed, data: ItemColumns) -> list[dict[str, Any]]:
    """Precision and recall of each auto-action rule over the items people decided."""
    specs = {s.name: s for s in program.specs if s.action == RuleAction.AUTO_ACTION}
    if not specs:
        return []
    outcomes = human_outcomes(data.ids)
    if not outcomes:
        return [{"rule": name, "decided": 0} for name in specs]
    decided_pos = np.flatnonzero(np.isin(data.ids, np.fromiter(outcomes, dtype=np.int64)))
    decided_ids = data.ids[decided_pos].tolist()
    rows = []
    for name, spec in specs.items():
        hit = routed.auto_rule_hits.get(name, np.zeros(len(data), bool))[decided_pos]
        truth = np.array([outcomes[i][0] and outcomes[i][1] == spec.policy_slug for i in decided_ids], dtype=bool)
        tp = int((hit & truth).sum())
        fp = int((hit & ~truth).sum())
        fn = int((~hit & truth).sum())
        rows.append(
            {
                "rule": name,
                "policy": spec.policy_slug,
                "decided": len(decided_ids),
                "matched": tp + fp,
                "true_positives": tp,
                "false_positives": fp,
                "false_negatives": fn,
                "precision": round(tp / (tp + fp), 4) if tp + fp else None,
                "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            }
        )
    return rows


# --- requests and runs -----------------------------------------------------------------------------


def backtest_request(*, actor: User, rule_set: RuleSet, start: datetime, end: datetime) -> Backtest:
    """Backtest a version over [start, end): small periods at once, large ones on a worker with progress."""
    if not (actor.has_perm("core.edit_rules") or actor.has_perm("core.approve_rules")):
        raise NotPermitted("Only policy staff may run backtests.")
    if rule_set.kind == RuleSetKind.ESCALATION:
        raise ApplicationError("Escalation rules act on waiting items over time; backtest routing versions.")
    if end <= start:
        raise ApplicationError("The period ends after it starts.", field="end")
    if end - start > MAX_PERIOD:
        raise ApplicationError("A backtest covers at most a year.", field="start")
    baseline = RuleSet.objects.filter(kind=rule_set.kind, status=RuleSetStatus.ACTIVE).first()
    period = ReviewItem.objects.filter(received_at__gte=start, received_at__lt=end).exclude(state=ItemState.RECEIVED)
    appeals = period.filter(kind=ItemKind.APPEAL)
    items = (appeals if rule_set.kind == RuleSetKind.APPEALS else period.exclude(kind=ItemKind.APPEAL)).count()
    backtest = Backtest.objects.create(
        rule_set=rule_set, baseline=baseline, period_start=start, period_end=end, items=items, requested_by=actor
    )
    audit_record(
        actor=actor, action="ruleset.backtest", target=rule_set, after={"backtest": backtest.pk, "items": items}
    )
    if items <= settings.ROUTING_BACKTEST_INLINE_MAX:
        backtest_run(backtest_id=backtest.pk)
        backtest.refresh_from_db()
    else:
        from celery import current_app

        transaction.on_commit(lambda: current_app.tasks[BACKTEST_TASK].delay(backtest.pk))
    return backtest


def backtest_run(*, backtest_id: int) -> Backtest:
    backtest = Backtest.objects.select_related("rule_set", "baseline").get(pk=backtest_id)
    if backtest.status == BacktestStatus.DONE:
        return backtest
    Backtest.objects.filter(pk=backtest.pk).update(
        status=BacktestStatus.RUNNING, progress=0.0, error="", heartbeat_at=timezone.now()
    )
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        Backtest.objects.filter(pk=backtest.pk).update(
            progress=round(0.9 * done / max(total, 1), 3), heartbeat_at=timezone.now()
        )

    # Inside a caller's transaction a database error would poison it: a savepoint keeps the failure writable.
    # Outside one there is nothing to poison, and a savepoint would keep the loader off its second connection.
    guard = transaction.atomic() if connection.in_atomic_block else nullcontext()
    try:
        with guard:
            result = backtest_compute(
                program_for(backtest.rule_set),
                program_for(backtest.baseline) if backtest.baseline else None,
                start=backtest.period_start,
                end=backtest.period_end,
                progress=progress,
            )
    except ApplicationError as exc:
        _failed(backtest, exc.message)
        raise
    except Exception as exc:
        # Whatever stops it, a backtest ends 'failed' with the reason on its page, never 'running' for good.
        logger.exception("backtest %s failed", backtest.pk)
        return _failed(backtest, f"The backtest stopped on an error: {error_text(exc)}")
    Backtest.objects.filter(pk=backtest.pk).update(
        status=BacktestStatus.DONE,
        progress=1.0,
        items=result["items"],
        result=result,
        finished_at=timezone.now(),
        seconds=round(time.perf_counter() - started, 3),
    )
    backtest.refresh_from_db()
    return backtest


def backtests_stalled_fail(*, now: datetime | None = None) -> int:
    """End as 'failed' every running backtest that made no progress for BACKTEST_STALLED_AFTER.

    A backtest's own code ends it 'failed' on any error, but a killed process runs no code: without this
    sweep its page would say 'running' for good. A redelivered task (acks_late) simply starts it again.
    """
    now = now or timezone.now()
    cutoff = now - settings.BACKTEST_STALLED_AFTER
    stalled = Backtest.objects.filter(status=BacktestStatus.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    minutes = round(settings.BACKTEST_STALLED_AFTER.total_seconds() / 60)
    return stalled.update(
        status=BacktestStatus.FAILED,
        finished_at=now,
        error=f"The process running this backtest stopped: no progress for {minutes} minutes. Start it again.",
    )


def _failed(backtest: Backtest, error: str) -> Backtest:
    Backtest.objects.filter(pk=backtest.pk).update(
        status=BacktestStatus.FAILED, error=error[:500], finished_at=timezone.now()
    )
    backtest.refresh_from_db()
    return backtest
