"""Acting on rule outcomes: route scored items (live and shadow), cap auto-actions, escalate overdue items.

Semantics (also in the README):

* The child-safety guard comes first: a ``sexual/minors`` score at or above
  ``ROUTING_CHILD_SAFETY_THRESHOLD`` sends the item to the restricted child-safety queue at top
  priority, whatever the rules say. Nothing there is ever auto-actioned.
* Tag rules all apply; the first matching rule of any other action decides. No match: the rule set's
  default queue (or the platform's default intake queue when no version is active).
* An auto-action closes the item only when a classifier scored it and the rule's daily cap has room;
  otherwise the item goes to the rule's queue (or the default queue) for people.
* The active escalation rules then run on the routed item (``queue`` is where it is going); a match
  moves it (to the rule's queue, or the queue's escalation target) or raises its priority.
* Every item gets one live RoutingDecision naming the version, the rule and the scores it saw; each
  version in shadow gets a shadow RoutingDecision and acts on nothing.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ops_platform.core.bulk import rows_insert
from ops_platform.core.models import DecisionLabel, EnforcementAction, Policy
from queues.accounts.services import RULE_LABEL_PREFIX, account_labels_from_rules
from queues.models import ItemState, Queue, ReviewItem
from queues.selectors import items_load
from queues.services import Enqueue, item_move, items_auto_action, items_enqueue_many, queue_default_intake
from queues.tasks import escalation_notice_task
from routing.rules.column_types import ACCOUNT_FIELDS
from routing.rules.engine import BUILTIN_CHILD_SAFETY, Outcome, RuleFailures, RuleProgram, RuleSpec, program_for
from routing.rules.features import TRIAGE_FIELDS, item_rows
from routing.rules.incidents import rule_incidents_record
from routing.rules.models import AutoActionTally, RoutingDecision, RuleAction, RuleSet, RuleSetKind, RuleSetStatus
from routing.rules.policies import auto_action_refusal

logger = logging.getLogger(__name__)

MAX_PRIORITY = 100


@dataclass
class Placement:
    """Where one item ends up after rules, caps and escalation."""

    item_id: int
    rule_set_id: int | None
    rule: RuleSpec | None
    matched: str
    action: str
    queue: Queue | None = None
    priority: int = 0
    auto: RuleSpec | None = None  # set when the item is auto-actioned
    tags: tuple[str, ...] = ()
    required_reviews: int = 1
    escalated_by: str = ""
    escalation: tuple[int | None, RuleSpec] | None = None  # (escalation rule set, rule) that moved it at triage
    notify: bool = False
    scores: dict[str, float] = field(default_factory=dict)

    def to_people(self, reason: str | None) -> None:
        """An auto-action that does not happen (unscored, cap reached, policy now human-only): people review it.
        The reason prefixes the rule's name where the decision is recorded; ``None`` records the name alone."""
        if reason is not None:
            self.matched = f"{reason}:{self.matched}"
        self.auto = None
        self.action = RuleAction.ROUTE

    @property
    def destination(self) -> str:
        if self.auto is not None:
            return f"auto:{self.auto.policy_slug}/{self.auto.enforcement_action_slug}"
        return f"queue:{self.queue.slug}" if self.queue else "none"

    def record(self, *, at: datetime, shadow: bool = False) -> dict[str, Any]:
        """The field values of the RoutingDecision that records this placement, for ``rows_insert``."""
        return {
            "item_id": self.item_id,
            "rule_set_id": self.rule_set_id,
            "rule_id": self.rule.pk if self.rule else None,
            "matched": self.matched,
            "action": RuleAction.AUTO_ACTION if self.auto else self.action,
            "destination": self.destination,
            "queue_id": None if self.auto or self.queue is None else self.queue.pk,
            "priority": self.priority,
            "tags": sorted(set(self.tags)),
            "scores": self.scores,
            "shadow": shadow,
            "at": at,
        }


def active_programs() -> dict[str, RuleProgram]:
    return {rs.kind: program_for(rs) for rs in RuleSet.objects.filter(status=RuleSetStatus.ACTIVE)}


def shadow_programs() -> list[RuleProgram]:
    return [program_for(rs) for rs in RuleSet.objects.filter(shadow=True).exclude(status=RuleSetStatus.ACTIVE)]


class _Queues:
    """Active queues by id and slug, loaded once per batch."""

    def __init__(self) -> None:
        self.by_id = {q.pk: q for q in Queue.objects.filter(is_active=True)}
        self.by_slug = {q.slug: q for q in self.by_id.values()}
        self._default: Queue | None = None

    def default(self) -> Queue:
        if self._default is None:
            self._default = queue_default_intake()
        return self._default

    def get(self, pk: int | None) -> Queue | None:
        return self.by_id.get(pk) if pk else None


def _scores_seen(row: Mapping[str, Any]) -> dict[str, float]:
    return {
        k.removeprefix("score."): round(v, 4)
        for k, v in row.items()
        if k.startswith("score.") and isinstance(v, float) and not math.isnan(v)
    }


def place(outcome: Outcome, program: RuleProgram | None, queues: _Queues, item_id: int) -> Placement:
    """Turn an outcome into a destination (auto-action caps are applied later, per batch)."""
    base = program.default_queue_id if program else None
    default = queues.get(base) or queues.default()
    p = Placement(item_id, program.rule_set_id if program else None, outcome.rule, outcome.matched, outcome.action)
    p.tags = outcome.tags
    if outcome.matched == BUILTIN_CHILD_SAFETY:
        p.queue = queues.by_slug.get(settings.ROUTING_CHILD_SAFETY_QUEUE) or default
        p.priority = settings.ROUTING_CHILD_SAFETY_PRIORITY
        p.action = RuleAction.ESCALATE
        return p
    spec = outcome.rule
    if spec is None:
        p.queue = default
        return p
    p.required_reviews = spec.required_reviews
    p.priority = spec.priority
    if spec.action == RuleAction.ROUTE:
        p.queue = queues.get(spec.queue_id) or default
    elif spec.action == RuleAction.ESCALATE:
        target = queues.get(spec.queue_id) or (default.escalation_target if default.escalation_target_id else None)
        p.queue = target or default
        p.notify = spec.notify
    elif spec.action == RuleAction.AUTO_ACTION:
        p.auto = spec
        p.queue = queues.get(spec.queue_id) or default  # if the cap is reached or the item is unscored
        p.priority = 0
    return p


def _escalate_all(
    placements: list[Placement],
    program: RuleProgram,
    rows: Sequence[dict[str, Any]],
    queues: _Queues,
    failures: RuleFailures,
) -> None:
    """Run the escalation rules on the routed (not auto-actioned) items at triage. ``rows[i]`` is the row
    ``placements[i]`` was routed from: by position, not by item id, since a preview may route one item in
    several views (bench/e2e.py tries every author history the run went through)."""
    routed = [
        (p, row)
        for p, row in zip(placements, rows, strict=True)
        if p.auto is None and p.queue is not None and p.matched != BUILTIN_CHILD_SAFETY
    ]
    views = [_escalation_view(row, p) for p, row in routed]
    for (p, _), outcome in zip(routed, program.decide_each(views, failures), strict=True):
        _escalate(p, program, outcome, queues)


def _escalation_view(row: dict[str, Any], p: Placement) -> dict[str, Any]:
    """The row as escalation rules see it at triage: where the item is going, not yet overdue."""
    assert p.queue is not None
    return {**row, "queue": p.queue.slug, "priority": float(p.priority), "overdue_minutes": 0.0, "age_hours": 0.0}


def _escalate(p: Placement, program: RuleProgram, outcome: Outcome, queues: _Queues) -> None:
    assert p.queue is not None
    p.tags += outcome.tags
    spec = outcome.rule
    if spec is None:
        return
    if spec.action == RuleAction.ESCALATE:
        target = queues.get(spec.queue_id) or queues.get(p.queue.escalation_target_id)
        if target is not None:
            p.queue = target
        p.priority = max(p.priority, spec.priority)
    elif spec.action == RuleAction.RAISE_PRIORITY:
        p.priority = min(MAX_PRIORITY, p.priority + spec.priority)
    p.escalated_by = f"v{program.version}:{spec.name}"
    p.escalation = (program.rule_set_id, spec)
    p.notify = p.notify or spec.notify


def placements_preview(
    rows: Sequence[tuple[int, dict[str, Any]]], *, intake: RuleProgram, escalation: RuleProgram | None
) -> list[Placement]:
    """Where live triage places each (item id, rule row) under these programs, writing nothing: the deciding rule,
    destination, priority and tags before the daily caps and the unscored check. For checks that route stored
    items again and compare with what triage stored (bench/e2e.py)."""
    queues = _Queues()
    failures: RuleFailures = {}
    outcomes = intake.decide_each([row for _, row in rows], failures)
    placements = [place(outcome, intake, queues, item_id) for (item_id, _), outcome in zip(rows, outcomes, strict=True)]
    if escalation is not None:
        _escalate_all(placements, escalation, [row for _, row in rows], queues, failures)
    return placements


def _cap_room(spec: RuleSpec, wanted: int, day: Any) -> int:
    """Reserve up to ``wanted`` auto-actions under the rule's daily cap; return how many were granted."""
    assert spec.pk is not None
    tally, _ = AutoActionTally.objects.get_or_create(rule_id=spec.pk, day=day)
    tally = AutoActionTally.objects.select_for_update().get(pk=tally.pk)
    granted = max(0, min(wanted, (spec.daily_cap or 0) - tally.count))
    if granted:
        AutoActionTally.objects.filter(pk=tally.pk).update(count=F("count") + granted)
    return granted


def items_route(
    *, item_ids: Sequence[int] = (), items: Sequence[ReviewItem] | None = None, at: datetime | None = None
) -> list[int]:
    """Route received (already scored) items by the active rule sets; return the ids placed. ``items``, loaded with
    ``TRIAGE_FIELDS``, saves loading them again (triage has them from scoring); else ``item_ids`` are loaded.

    Items no longer 'received' are left alone, so a re-delivered triage task changes nothing.
    """
    now = at or timezone.now()
    loaded = items_load(item_ids, fields=TRIAGE_FIELDS) if items is None else items
    items = [item for item in loaded if item.state == ItemState.RECEIVED]
    if not items:
        return []
    programs = active_programs()
    shadows = shadow_programs()
    # Account features cost a query per batch: read only when some rule set reads them (docs/accounts.md).
    reads = frozenset().union(*(p.names for p in [*programs.values(), *shadows]))
    rows = item_rows(items, accounts=bool(reads & set(ACCOUNT_FIELDS)))
    queues = _Queues()
    # A rule that raises is skipped where it raises (the item goes by the other rules or the default queue) and
    # becomes an incident: an item never stays 'received' because of a rule.
    failures: RuleFailures = {}
    kinds = [RuleSetKind.APPEALS if item.kind == "appeal" else RuleSetKind.INTAKE for item in items]
    outcomes = _outcomes(programs, kinds, [rows[item.pk] for item in items], failures)
    placements: list[Placement] = []
    for item, kind, outcome in zip(items, kinds, outcomes, strict=True):
        program = programs.get(kind)
        if program is None and rows[item.pk].get("score.sexual_minors", 0.0) >= settings.ROUTING_CHILD_SAFETY_THRESHOLD:
            outcome = Outcome(None, BUILTIN_CHILD_SAFETY)
        placements.append(place(outcome, program, queues, item.pk))
    if RuleSetKind.ESCALATION in programs:
        _escalate_all(
            placements, programs[RuleSetKind.ESCALATION], [rows[p.item_id] for p in placements], queues, failures
        )
    golden = {item.pk for item in items if item.is_golden}
    for placement in placements:
        row = rows[placement.item_id]
        placement.scores = _scores_seen(row)
        if placement.auto is not None and not row.get("scored", False):
            placement.to_people("unscored")
        elif placement.auto is not None and placement.item_id in golden:
            # A QA golden copy exists to be reviewed by a person: it goes where the rule sends what it does not
            # close. No reason is written beside the rule's name, which the reviewer sees in the item's history:
            # a golden copy must read like any item (``is_golden`` on the item says why, for whoever may know).
            placement.to_people(None)

    done: list[int] = []
    with transaction.atomic():
        _apply_caps(placements, now)
        done += _apply(placements, now)
        placed = set(done)
        # One INSERT for the batch's decisions (and one for escalations at triage), not bulk_create (why:
        # docs/performance.md, "routing/rules/apply.py").
        rows_insert(RoutingDecision, [p.record(at=now) for p in placements if p.item_id in placed])
        # Escalations at triage are recorded under the escalation version too, so the overdue sweep's
        # "each rule escalates an item once" sees them.
        rows_insert(
            RoutingDecision,
            [
                {
                    **p.record(at=now),
                    "rule_set_id": p.escalation[0],
                    "rule_id": p.escalation[1].pk,
                    "matched": p.escalation[1].name,
                    "action": p.escalation[1].action,
                }
                for p in placements
                if p.escalation is not None and p.item_id in placed
            ],
        )
        if shadows:
            _record_shadow(shadows, items, rows, queues, now, failures)
        if failures:
            rule_incidents_record(failures.values(), at=now)
    return done


_NO_PROGRAM = Outcome(None, "default")


def _outcomes(
    programs: Mapping[str, RuleProgram], kinds: Sequence[str], rows: Sequence[dict[str, Any]], failures: RuleFailures
) -> list[Outcome]:
    """Each row's outcome under the active program of its kind (the default queue where there is none)."""
    outcomes = [_NO_PROGRAM] * len(rows)
    for kind in set(kinds):
        program = programs.get(kind)
        if program is None:
            continue
        positions = [i for i, k in enumerate(kinds) if k == kind]
        for position, outcome in zip(
            positions, program.decide_each([rows[i] for i in positions], failures), strict=True
        ):
            outcomes[position] = outcome
    return outcomes


def _apply_caps(placements: list[Placement], now: datetime) -> None:
    """Demote auto-actions a policy no longer allows, then take room under each rule's daily cap."""
    policy_ids = {p.auto.policy_id for p in placements if p.auto is not None}
    refused = {pol.pk for pol in Policy.objects.filter(pk__in=policy_ids) if auto_action_refusal(pol)}
    wanted: dict[int, list[Placement]] = defaultdict(list)
    for p in placements:
        if p.auto is not None and p.auto.policy_id in refused:
            logger.warning("auto-action rule %s names a policy that is now human-review only", p.auto.name)
            p.to_people("policy-refuses-auto")
        elif p.auto is not None and p.auto.pk is not None:
            wanted[p.auto.pk].append(p)
    for group in wanted.values():
        spec = group[0].auto
        assert spec is not None
        granted = _cap_room(spec, len(group), timezone.localdate(now))
        for p in group[granted:]:
            p.to_people("cap-reached")
        if granted < len(group):
            logger.warning("auto-action rule %s reached its daily cap of %s", spec.name, spec.daily_cap)


def _apply(placements: list[Placement], now: datetime) -> list[int]:
    done: list[int] = []
    autos: dict[tuple[int, str], list[Placement]] = defaultdict(list)
    queued: dict[tuple[int, int, str, tuple[str, ...], int, str], list[int]] = defaultdict(list)
    for p in placements:
        if p.auto is not None:
            autos[(p.auto.pk or 0, p.matched)].append(p)
        else:
            assert p.queue is not None
            key = (p.queue.pk, p.priority, p.matched, tuple(sorted(set(p.tags))), p.required_reviews, p.escalated_by)
            queued[key].append(p.item_id)
    policies = {
        pol.pk: pol for pol in Policy.objects.filter(pk__in={p[0].auto.policy_id for p in autos.values() if p[0].auto})
    }
    actions = {
        a.pk: a
        for a in EnforcementAction.objects.filter(
            pk__in={p[0].auto.enforcement_action_id for p in autos.values() if p[0].auto}
        )
    }
    queues = {q.pk: q for q in Queue.objects.filter(pk__in={k[0] for k in queued})}
    label_ids = {p[0].auto.label_id for p in autos.values() if p[0].auto and p[0].auto.label_id}
    label_slugs = dict(DecisionLabel.objects.filter(pk__in=label_ids).values_list("pk", "slug"))
    for (_, matched), group in autos.items():
        spec = group[0].auto
        assert spec is not None
        assert spec.policy_id
        assert spec.enforcement_action_id
        done += items_auto_action(
            item_ids=[p.item_id for p in group],
            actor=f"rules:{matched}",
            policy=policies[spec.policy_id],
            action=actions[spec.enforcement_action_id],
            reason=f"auto-action rule '{spec.name}'",
            data={"rule": spec.name, "label": spec.label_id, "label_slug": label_slugs.get(spec.label_id or 0)},
            tags=sorted({t for p in group for t in p.tags}),
            at=now,
        )
    groups = []
    for (queue_id, priority, matched, tags, reviews, escalated_by), ids in queued.items():
        data: dict[str, object] = {"rule": matched}
        if escalated_by:
            data["escalated_by"] = escalated_by
        groups.append(
            Enqueue(
                item_ids=ids,
                queue=queues[queue_id],
                actor="rules" if matched != "default" else "triage:default",
                priority=priority,
                reason=f"rule '{matched}'" if matched != "default" else "default queue (no rule matched)",
                data=data,
                tags=tags,
                required_reviews=reviews,
            )
        )
    done += items_enqueue_many(groups=groups, at=now)
    _account_labels_apply(placements, now)
    return done


def _account_labels_apply(placements: list[Placement], now: datetime) -> None:
    """Tags ``account:<label>[:<days>d]`` label the item's author's account (docs/accounts.md)."""
    tagged = {p.item_id: p for p in placements if any(t.startswith(RULE_LABEL_PREFIX) for t in p.tags)}
    if not tagged:
        return
    authors = ReviewItem.objects.filter(pk__in=list(tagged), is_golden=False).values_list("pk", "source", "author_ref")
    account_labels_from_rules(
        labels=[
            (source, ref, tag, tagged[pk].matched)
            for pk, source, ref in authors
            for tag in sorted(set(tagged[pk].tags))
            if tag.startswith(RULE_LABEL_PREFIX)
        ],
        at=now,
    )


def _record_shadow(
    shadows: list[RuleProgram],
    items: list[ReviewItem],
    rows: dict[int, dict[str, Any]],
    queues: _Queues,
    now: datetime,
    failures: RuleFailures,
) -> None:
    records = []
    for program in shadows:
        if program.kind == RuleSetKind.ESCALATION:
            continue  # escalation shadows run in the overdue sweep
        mine = [
            item
            for item in items
            if (RuleSetKind.APPEALS if item.kind == "appeal" else RuleSetKind.INTAKE) == program.kind
        ]
        for item, outcome in zip(mine, program.decide_each([rows[item.pk] for item in mine], failures), strict=True):
            row = rows[item.pk]
            p = place(outcome, program, queues, item.pk)
            if p.auto is not None and not row.get("scored", False):
                p.auto = None
            p.scores = _scores_seen(row)
            records.append(p.record(at=now, shadow=True))
    rows_insert(RoutingDecision, records)


# --- the overdue sweep -----------------------------------------------------------------------------


def items_escalate_overdue(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Run the active escalation rules over queued items past due; each rule escalates an item once."""
    now = now or timezone.now()
    rule_set = RuleSet.objects.filter(kind=RuleSetKind.ESCALATION, status=RuleSetStatus.ACTIVE).first()
    if rule_set is None:
        return 0
    program = program_for(rule_set)
    overdue = list(
        ReviewItem.objects.filter(state=ItemState.QUEUED, due_at__lte=now)
        .select_related("queue")
        .order_by("due_at")[: limit or settings.ROUTING_ESCALATION_BATCH]
    )
    if not overdue:
        return 0
    rows = item_rows(overdue, now=now)
    already = set(
        RoutingDecision.objects.filter(item__in=overdue, rule_set=rule_set, shadow=False).values_list(
            "item_id", "rule_id"
        )
    )
    queues = _Queues()
    moved = 0
    notices: dict[tuple[int, str], list[int]] = defaultdict(list)  # (queue, rule) -> items, for "notify" rules
    failures: RuleFailures = {}
    outcomes = program.decide_each([rows[item.pk] for item in overdue], failures)
    if failures:
        rule_incidents_record(failures.values(), at=now)
    for item, outcome in zip(overdue, outcomes, strict=True):
        spec = outcome.rule
        if spec is None or (item.pk, spec.pk) in already:
            continue
        if spec.action == RuleAction.ESCALATE:
            target = queues.get(spec.queue_id) or (item.queue.escalation_target if item.queue else None)
            priority = max(item.priority, spec.priority)
        else:
            target, priority = item.queue, min(MAX_PRIORITY, item.priority + spec.priority)
        if target is None:
            continue
        with transaction.atomic():
            if not item_move(
                item_id=item.pk,
                queue=target,
                actor=f"rules:escalation v{program.version}",
                priority=priority,
                event="escalated",
                reason=f"escalation rule '{spec.name}'",
                data={
                    "rule": spec.name,
                    "notify": spec.notify,
                    "overdue_minutes": round(rows[item.pk]["overdue_minutes"]),
                },
                at=now,
            ):
                continue
            RoutingDecision.objects.create(
                item=item,
                rule_set=rule_set,
                rule_id=spec.pk,
                matched=spec.name,
                action=spec.action,
                destination=f"queue:{target.slug}",
                queue=target,
                priority=priority,
                tags=sorted(set(outcome.tags)),
                scores=_scores_seen(rows[item.pk]),
                at=now,
            )
        moved += 1
        if spec.notify:
            notices[(target.pk, spec.name)].append(item.pk)
    for (queue_id, rule), item_ids in notices.items():
        transaction.on_commit(partial(escalation_notice_task.delay, queue_id, item_ids, rule))
    return moved
