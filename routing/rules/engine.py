"""Rule sets as programs: the vocabulary rules may use, one compiled function per version, and the
outcome semantics (first terminal match decides, tag rules add up, the child-safety guard comes first).

Nothing here writes. ``routing.rules.services`` applies outcomes; backtests run the same
:class:`RuleProgram` over columns instead of rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.conf import settings

from ops_platform.core.models import ClassifierCategory, Policy
from routing.rules.language import (
    CompiledRules,
    Const,
    Node,
    Type,
    Vocabulary,
    compile_rules,
    interpret_rules,
    parse,
    score_key,
)
from routing.rules.models import Rule, RuleAction, RuleSet, RuleSetKind

ITEM_FIELDS: dict[str, tuple[Type, str]] = {
    "kind": (Type.STRING, "content, user_report or appeal"),
    "source": (Type.STRING, "the integrating service's source slug"),
    "surface": (Type.STRING, "where the content appeared, e.g. comments, dm, profile"),
    "language": (Type.STRING, "ISO 639-1 code the service sent"),
    "text": (Type.STRING, "the content's text"),
    "report_count": (Type.NUMBER, "number of user reports"),
    "media_count": (Type.NUMBER, "number of media attachments"),
    "media.hash_match": (Type.BOOL, "an attachment matched an active hash bank (PDQ within the distance, or MD5)"),
    "media.bank": (Type.STRING, "slug of the bank of the closest match ('' when none)"),
    "media.distance": (Type.NUMBER, "Hamming distance of the closest match, 0 to 256 (0 for MD5); missing if none"),
    "scored": (Type.BOOL, "false when every classifier failed and the item fell back to people"),
    "author.prior_violations": (Type.NUMBER, "the author's earlier items decided or auto-actioned as violations"),
    "author.prior_reviews": (Type.NUMBER, "the author's earlier items that people decided"),
    "author.strikes": (Type.NUMBER, "the author account's active strikes, every policy family (0 when none)"),
    "author.labels": (
        Type.STRING,
        "the author account's current labels, comma-joined ('' when none): author.labels contains \"trusted-flagger\"",
    ),
    "author.account_age_days": (
        Type.NUMBER,
        "days since the account was created, when the service sent metadata author_created_at; missing otherwise",
    ),
}
ESCALATION_FIELDS: dict[str, tuple[Type, str]] = {
    "queue": (Type.STRING, "slug of the queue the item is in (or routed to)"),
    "priority": (Type.NUMBER, "the item's priority"),
    "overdue_minutes": (Type.NUMBER, "minutes past the item's due time (0 when not yet due)"),
    "age_hours": (Type.NUMBER, "hours since the item was received"),
}
TERMINAL_ACTIONS = (RuleAction.ROUTE, RuleAction.AUTO_ACTION, RuleAction.ESCALATE, RuleAction.RAISE_PRIORITY)
ACTIONS_BY_KIND: dict[str, tuple[str, ...]] = {
    RuleSetKind.INTAKE: (RuleAction.ROUTE, RuleAction.AUTO_ACTION, RuleAction.ESCALATE, RuleAction.TAG),
    RuleSetKind.APPEALS: (RuleAction.ROUTE, RuleAction.ESCALATE, RuleAction.TAG),
    RuleSetKind.ESCALATION: (RuleAction.ESCALATE, RuleAction.RAISE_PRIORITY, RuleAction.TAG),
}
CHILD_SAFETY_SCORE = f"score.{score_key(ClassifierCategory.SEXUAL_MINORS)}"


def vocabulary_for(kind: str) -> Vocabulary:
    """What rules of ``kind`` may read: item fields, author history, every category and policy score."""
    fields = dict(ITEM_FIELDS)
    if kind == RuleSetKind.ESCALATION:
        fields.update(ESCALATION_FIELDS)
    scores = {score_key(c) for c in ClassifierCategory.values}
    scores |= {score_key(f"policy:{slug}") for slug in Policy.objects.values_list("slug", flat=True)}
    return Vocabulary(
        fields={name: kind_ for name, (kind_, _) in fields.items()},
        scores=frozenset(scores),
        descriptions={name: text for name, (_, text) in fields.items()},
    )


@dataclass(frozen=True)
class RuleSpec:
    """A rule as the program needs it, detached from the ORM."""

    pk: int | None
    name: str
    action: str
    queue_id: int | None = None
    queue_slug: str = ""
    priority: int = 0
    policy_id: int | None = None
    policy_slug: str = ""
    label_id: int | None = None
    enforcement_action_id: int | None = None
    enforcement_action_slug: str = ""
    daily_cap: int | None = None
    required_reviews: int = 1
    tags: tuple[str, ...] = ()
    notify: bool = False

    @classmethod
    def from_rule(cls, rule: Rule) -> RuleSpec:
        return cls(
            pk=rule.pk,
            name=rule.name,
            action=rule.action,
            queue_id=rule.queue_id,
            queue_slug=rule.queue.slug if rule.queue else "",
            priority=rule.priority,
            policy_id=rule.policy_id,
            policy_slug=rule.policy.slug if rule.policy else "",
            label_id=rule.label_id,
            enforcement_action_id=rule.enforcement_action_id,
            enforcement_action_slug=rule.enforcement_action.slug if rule.enforcement_action else "",
            daily_cap=rule.daily_cap,
            required_reviews=rule.required_reviews,
            tags=tuple(rule.tags),
            notify=rule.notify,
        )


@dataclass(frozen=True)
class Outcome:
    """What a program decided for one item, before caps and side effects."""

    rule: RuleSpec | None  # None: no rule matched (default) or the built-in guard
    matched: str  # rule name, "default" or "builtin:child-safety"
    tags: tuple[str, ...] = ()

    @property
    def action(self) -> str:
        return self.rule.action if self.rule else RuleAction.ROUTE


BUILTIN_CHILD_SAFETY = "builtin:child-safety"
_DEFAULT = Outcome(None, "default")
# Stands in for a rule that no longer checks or compiles (saved before today's checks, or reading a score
# whose policy is gone): it matches nothing, so the version's other rules still route.
NEVER = Const(1, 1, False)


def error_text(exc: BaseException) -> str:
    """An exception as an incident shows it: its type and message (evaluation errors name types, not content)."""
    return f"{type(exc).__name__}: {exc}"[:300]


@dataclass
class RuleFailure:
    """A rule of a version that raised while deciding (or cannot be built), and on how many rows."""

    rule_set_id: int | None
    version: int
    rule: RuleSpec
    error: str
    rows: int = 0


# Keyed by (rule set, index into its specs): one entry per failing rule, however many rows it failed on.
RuleFailures = dict[tuple[int | None, int], RuleFailure]


@dataclass
class RuleProgram:
    """One rule set version, compiled. ``decide(row)`` is what live routing and shadow mode call."""

    rule_set_id: int | None
    kind: str
    version: int
    default_queue_id: int | None
    default_queue_slug: str
    specs: list[RuleSpec]
    conditions: list[Node]
    broken: dict[int, str] = field(default_factory=dict)  # index into specs -> why the rule cannot run (NEVER)
    terminal: list[int] = field(init=False)  # indexes into specs of the rules that decide
    tagging: list[int] = field(init=False)
    compiled_terminal: CompiledRules = field(init=False)
    compiled_tags: CompiledRules = field(init=False)
    # What each deciding rule's match is, made once: Outcomes are immutable, so items share them.
    outcomes: list[Outcome] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.terminal = [i for i, s in enumerate(self.specs) if s.action != RuleAction.TAG]
        self.tagging = [i for i, s in enumerate(self.specs) if s.action == RuleAction.TAG]
        try:
            self._compile()
        except Exception:
            # One rule the compiler refuses must not take the version down: find it, set it aside, compile the rest.
            for index, condition in enumerate(self.conditions):
                try:
                    compile_rules([condition])
                except Exception as exc:
                    self.broken[index] = error_text(exc)
                    self.conditions[index] = NEVER
            self._compile()
        self.outcomes = [Outcome(self.specs[i], self.specs[i].name, self.specs[i].tags) for i in self.terminal]

    def _compile(self) -> None:
        self.compiled_terminal = compile_rules([self.conditions[i] for i in self.terminal])
        self.compiled_tags = compile_rules([self.conditions[i] for i in self.tagging])

    @property
    def names(self) -> frozenset[str]:
        return self.compiled_terminal.names | self.compiled_tags.names | {CHILD_SAFETY_SCORE}

    def decide(self, row: Mapping[str, Any]) -> Outcome:
        tags: tuple[str, ...] = ()
        if self.tagging:
            for index in self.compiled_tags.all_matches(row):
                tags += self.specs[self.tagging[index]].tags
        if self.kind != RuleSetKind.ESCALATION and child_safety_flagged(row):
            return Outcome(None, BUILTIN_CHILD_SAFETY, tags)
        index = self.compiled_terminal.first_match(row)
        if index < 0:
            return Outcome(None, "default", tags) if tags else _DEFAULT
        outcome = self.outcomes[index]
        return Outcome(outcome.rule, outcome.matched, tags + outcome.tags) if tags else outcome

    def decide_each(self, rows: Sequence[Mapping[str, Any]], failures: RuleFailures) -> list[Outcome]:
        """:meth:`decide` on every row. Should a rule raise, the rows are decided again rule by rule, and a rule is
        skipped on each row it raises on; ``failures`` says which rules failed (and which cannot run at all)."""
        if self.broken and rows:
            for index, error in self.broken.items():
                self._failure(failures, index, error).rows += len(rows)
        try:
            return [self.decide(row) for row in rows]
        except Exception:
            # Whole-batch first, then rule by rule: the compiled path stays free of per-row exception handling.
            return [self.decide_guarded(row, failures) for row in rows]

    def decide_guarded(self, row: Mapping[str, Any], failures: RuleFailures) -> Outcome:
        """:meth:`decide` with each rule evaluated on its own; a rule that raises counts as not matching."""
        tags: tuple[str, ...] = ()
        for index in self.tagging:
            if self._holds(index, row, failures):
                tags += self.specs[index].tags
        if self.kind != RuleSetKind.ESCALATION and child_safety_flagged(row):
            return Outcome(None, BUILTIN_CHILD_SAFETY, tags)
        for position, index in enumerate(self.terminal):
            if self._holds(index, row, failures):
                outcome = self.outcomes[position]
                return Outcome(outcome.rule, outcome.matched, tags + outcome.tags) if tags else outcome
        return Outcome(None, "default", tags) if tags else _DEFAULT

    @cached_property
    def _singles(self) -> list[CompiledRules]:
        """Each rule compiled on its own, for :meth:`decide_guarded` (built only once a rule has failed)."""
        return [compile_rules([condition]) for condition in self.conditions]

    def _holds(self, index: int, row: Mapping[str, Any], failures: RuleFailures) -> bool:
        try:
            return self._singles[index].first_match(row) == 0
        except Exception as exc:
            self._failure(failures, index, error_text(exc)).rows += 1
            return False

    def _failure(self, failures: RuleFailures, index: int, error: str) -> RuleFailure:
        key = (self.rule_set_id, index)
        if key not in failures:
            failures[key] = RuleFailure(self.rule_set_id, self.version, self.specs[index], error)
        return failures[key]

    def decide_interpreted(self, row: Mapping[str, Any]) -> int:
        """The index (into ``specs``) of the deciding rule by walking trees: the benchmark's baseline."""
        index = interpret_rules([self.conditions[i] for i in self.terminal], row)
        return self.terminal[index] if index >= 0 else -1


def child_safety_flagged(row: Mapping[str, Any]) -> bool:
    score = row.get(CHILD_SAFETY_SCORE, math.nan)
    return bool(score >= settings.ROUTING_CHILD_SAFETY_THRESHOLD)


# Keyed by id and creation time, so a database that reuses ids (SQLite after a rollback) never hands
# back another version's program.
_PROGRAMS: dict[tuple[int, Any], RuleProgram] = {}


def program_for(rule_set: RuleSet) -> RuleProgram:
    """The compiled program of a rule set; versions past draft never change, so they are cached."""
    key = (rule_set.pk, rule_set.created_at)
    if key in _PROGRAMS and not rule_set.is_editable:
        return _PROGRAMS[key]
    rules = list(rule_set.rules.select_related("queue", "policy", "enforcement_action").order_by("position"))
    vocabulary = vocabulary_for(rule_set.kind)
    conditions: list[Node] = []
    broken: dict[int, str] = {}
    for index, rule in enumerate(rules):
        try:
            conditions.append(parse(rule.condition, vocabulary))
        except Exception as exc:  # checked when saved, but the checks and the vocabulary may have changed since
            conditions.append(NEVER)
            broken[index] = error_text(exc)
    program = RuleProgram(
        rule_set_id=rule_set.pk,
        kind=rule_set.kind,
        version=rule_set.version,
        default_queue_id=rule_set.default_queue_id,
        default_queue_slug=rule_set.default_queue.slug if rule_set.default_queue else "",
        specs=[RuleSpec.from_rule(r) for r in rules],
        conditions=conditions,
        broken=broken,
    )
    if not rule_set.is_editable:
        _PROGRAMS[key] = program
    return program


def program_from_texts(kind: str, rules: Sequence[tuple[RuleSpec, str]], *, vocabulary: Vocabulary) -> RuleProgram:
    """A program straight from (spec, condition) pairs: for the benchmark and tests."""
    return RuleProgram(
        rule_set_id=None,
        kind=kind,
        version=0,
        default_queue_id=None,
        default_queue_slug="",
        specs=[spec for spec, _ in rules],
        conditions=[parse(text, vocabulary) for _, text in rules],
    )
