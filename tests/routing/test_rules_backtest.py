"""Backtests: the vectorized run over stored items agrees with the rules' documented meaning, item by item,
and with live routing; large periods go to a worker."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import EnforcementAction, Policy, User
from queues.models import Decision, ItemKind, ItemState, Queue, ReviewItem
from routing.models import Backtest, BacktestStatus, RoutingDecision, Rule, RuleAction, RuleSet, RuleSetKind
from routing.rules.apply import items_route
from routing.rules.backtest import backtest_request
from routing.rules.coverage import ruleset_unproduced_scores
from routing.rules.engine import vocabulary_for
from routing.rules.language import interpret, parse
from routing.rules.lifecycle import RuleData, ruleset_activate, ruleset_approve, ruleset_submit
from routing.tasks import backtest_run_task
from tests.routing.rules_setup import (
    item_received,
    ruleset_drafted,
    ruleset_live,
    scores_write,
    unscored_mark,
)

pytestmark = pytest.mark.django_db

CATEGORIES = ("hate", "violence", "sexual/minors")


@pytest.fixture
def remove(hate_policy: Policy) -> EnforcementAction:
    action = EnforcementAction.objects.create(slug="remove", name="Remove", strength=2)
    hate_policy.enforcement_actions.add(action)
    return action


@pytest.fixture
def period() -> tuple[datetime, datetime]:
    start = (timezone.now() - timedelta(days=10)).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=2)


@pytest.fixture
def baseline(policy_staff: User, priya: User, intake_queue: Queue, hate_queue: Queue) -> RuleSet:
    """The active version: high hate scores to the hate queue, everything else to the default."""
    return ruleset_live(
        RuleSetKind.INTAKE,
        [RuleData(name="hate-high", condition="score.hate >= 0.8", action=RuleAction.ROUTE, queue_id=hate_queue.pk)],
        author=policy_staff,
        approver=priya,
        default_queue=intake_queue,
    )


@pytest.fixture
def candidate(
    baseline: RuleSet,
    policy_staff: User,
    intake_queue: Queue,
    hate_queue: Queue,
    senior_queue: Queue,
    hate_policy: Policy,
    remove: EnforcementAction,
) -> RuleSet:
    """The version under test: auto-action severe hate (2 a day), violence to senior review, tag DMs."""
    return ruleset_drafted(
        RuleSetKind.INTAKE,
        [
            RuleData(name="dm", condition='surface == "dm"', action=RuleAction.TAG, tags=["dm"]),
            RuleData(
                name="hate-auto",
                condition='score.hate >= 0.9 and surface != "profile"',
                action=RuleAction.AUTO_ACTION,
                policy_id=hate_policy.pk,
                enforcement_action_id=remove.pk,
                daily_cap=2,
                queue_id=hate_queue.pk,
            ),
            RuleData(
                name="violence",
                condition="score.violence >= 0.5 or report_count >= 3",
                action=RuleAction.ROUTE,
                queue_id=senior_queue.pk,
            ),
        ],
        author=policy_staff,
        default_queue=intake_queue,
    )


# --- stored items and the expected answer, computed one item at a time -----------------------------


@dataclass
class Stored:
    """One stored item as the test made it: what rules see, and what a person decided."""

    item: ReviewItem
    row: dict[str, Any]
    day: int
    decision: tuple[bool, str] | None = None


def store_items(period: tuple[datetime, datetime], reviewer: User, intake_queue: Queue, seed: int) -> list[Stored]:
    """Items spread over the period's two days, in arrival order; some unscored, some missing a category,
    some flagged for child safety, about half decided by a person."""
    rng = random.Random(seed)
    start, _ = period
    arrivals = sorted(start + timedelta(days=rng.randint(0, 1), minutes=rng.randint(0, 1439)) for _ in range(60))
    stored = []
    for received_at in arrivals:
        surface = rng.choice(["dm", "comments", "profile"])
        report_count = rng.choice([0, 0, 0, 1, 4])
        item = item_received(
            received_at=received_at,
            surface=surface,
            report_count=report_count,
            state=ItemState.QUEUED,
            queue=intake_queue,
        )
        row: dict[str, Any] = {
            "surface": surface,
            "report_count": float(report_count),
            "scored": rng.random() < 0.85,
        }
        row.update({f"score.{c.replace('/', '_')}": math.nan for c in CATEGORIES})
        if row["scored"]:
            present = rng.sample(CATEGORIES, k=rng.randint(1, 3))
            scores = {c: rng.choice([0.05, 0.3, 0.6, 0.95, 0.95]) for c in present}
            if "sexual/minors" in scores:
                scores["sexual/minors"] = rng.choice([0.0, 0.1, 0.1, settings.ROUTING_CHILD_SAFETY_THRESHOLD, 0.9])
            scores_write(item, **{c.replace("/", "_"): v for c, v in scores.items()})
            row.update({f"score.{c.replace('/', '_')}": v for c, v in scores.items()})
        elif rng.random() < 0.5:
            unscored_mark(item)
        one = Stored(item, row, (received_at - start).days)
        one.decision = rng.choice([None, None, (True, "hate-speech"), (False, "hate-speech"), (True, "spam-scam")])
        if one.decision is not None:
            violation, slug = one.decision
            Decision.objects.create(
                item=item,
                reviewer=reviewer,
                queue=intake_queue,
                policy=Policy.objects.get(slug=slug),
                is_violation=violation,
                decided_at=received_at + timedelta(hours=1),
            )
        stored.append(one)
    return stored


def store_ignored_items(period: tuple[datetime, datetime], intake_queue: Queue) -> None:
    """Items a backtest of intake rules leaves out: outside the period, still untriaged, or appeals."""
    start, end = period
    for received_at, kind, state in [
        (start - timedelta(minutes=1), ItemKind.CONTENT, ItemState.QUEUED),
        (end, ItemKind.CONTENT, ItemState.QUEUED),
        (start + timedelta(hours=1), ItemKind.CONTENT, ItemState.RECEIVED),
        (start + timedelta(hours=2), ItemKind.APPEAL, ItemState.QUEUED),
    ]:
        item = item_received(received_at=received_at, kind=kind, state=state, queue=intake_queue)
        scores_write(item, hate=0.99, violence=0.99)


def rules_of(version: RuleSet) -> list[Rule]:
    return list(version.rules.select_related("queue", "policy", "enforcement_action").order_by("position"))


@dataclass
class Expected:
    destinations: dict[int, str]  # item id -> destination
    hits: dict[str, set[int]]  # auto-action rule -> items it was the first match for (before caps)
    closed: int  # items auto-actioned


def route_one_by_one(version: RuleSet, stored: list[Stored]) -> Expected:
    """Where each item goes under ``version``, by the documented semantics, walking trees item by item:
    the child-safety guard first; tag rules never decide; the first other rule that holds decides; an
    auto-action closes a scored item while its rule is under the cap for the item's day (in arrival
    order), otherwise the item goes to the rule's queue; no match goes to the default queue."""
    vocabulary = vocabulary_for(version.kind)
    deciding = [(rule, parse(rule.condition, vocabulary)) for rule in rules_of(version) if rule.action != "tag"]
    closed: Counter[tuple[int, int]] = Counter()
    expected = Expected({}, {r.name: set() for r, _ in deciding if r.action == RuleAction.AUTO_ACTION}, 0)
    assert version.default_queue is not None
    for one in stored:
        destination = f"queue:{version.default_queue.slug}"
        if one.row["score.sexual_minors"] >= settings.ROUTING_CHILD_SAFETY_THRESHOLD:
            destination = f"queue:{settings.ROUTING_CHILD_SAFETY_QUEUE}"
        else:
            for rule, condition in deciding:
                if interpret(condition, one.row) is not True:
                    continue
                assert rule.queue is not None
                destination = f"queue:{rule.queue.slug}"
                if rule.action == RuleAction.AUTO_ACTION:
                    assert rule.policy is not None
                    assert rule.enforcement_action is not None
                    assert rule.daily_cap is not None
                    expected.hits[rule.name].add(one.item.pk)
                    if one.row["scored"] and closed[(rule.pk, one.day)] < rule.daily_cap:
                        closed[(rule.pk, one.day)] += 1
                        destination = f"auto:{rule.policy.slug}/{rule.enforcement_action.slug}"
                break
        expected.destinations[one.item.pk] = destination
    expected.closed = sum(closed.values())
    return expected


def quality_one_by_one(version: RuleSet, stored: list[Stored], hits: dict[str, set[int]]) -> list[dict[str, Any]]:
    decided = [one for one in stored if one.decision is not None]
    rows = []
    for rule in rules_of(version):
        if rule.action != RuleAction.AUTO_ACTION:
            continue
        assert rule.policy is not None
        hit = {one.item.pk for one in decided if one.item.pk in hits[rule.name]}
        truth = {one.item.pk for one in decided if one.decision == (True, rule.policy.slug)}
        tp, fp, fn = len(hit & truth), len(hit - truth), len(truth - hit)
        rows.append(
            {
                "rule": rule.name,
                "policy": rule.policy.slug,
                "decided": len(decided),
                "matched": tp + fp,
                "true_positives": tp,
                "false_positives": fp,
                "false_negatives": fn,
                "precision": round(tp / (tp + fp), 4) if tp + fp else None,
                "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            }
        )
    return rows


def backtest_request_for(version: RuleSet, period: tuple[datetime, datetime], actor: User) -> Backtest:
    start, end = period
    return backtest_request(actor=actor, rule_set=version, start=start, end=end)


# --- the backtest agrees with the one-by-one answer --------------------------------------------------


@pytest.fixture
def stored(
    period: tuple[datetime, datetime], reviewer: User, intake_queue: Queue, spam_policy: Policy, candidate: RuleSet
) -> list[Stored]:
    items = store_items(period, reviewer, intake_queue, seed=11)
    store_ignored_items(period, intake_queue)
    return items


def test_destinations_transitions_and_auto_action_quality_match_a_direct_computation(
    stored: list[Stored],
    candidate: RuleSet,
    baseline: RuleSet,
    period: tuple[datetime, datetime],
    policy_staff: User,
):
    draft = route_one_by_one(candidate, stored)
    current = route_one_by_one(baseline, stored)
    # The data exercise what matters: the cap bites, unscored and child-safety items meet the auto rule.
    assert draft.closed == 4
    assert len(draft.hits["hate-auto"]) > 4
    assert any(not s.row["scored"] and s.row["report_count"] >= 3 for s in stored)
    assert any(s.row["score.sexual_minors"] >= 0.5 and s.row["score.hate"] >= 0.9 for s in stored)

    backtest = backtest_request_for(candidate, period, policy_staff)

    assert backtest.status == BacktestStatus.DONE
    assert backtest.baseline == baseline
    result = backtest.result
    pairs = Counter((current.destinations[pk], draft.destinations[pk]) for pk in draft.destinations)
    assert result["items"] == len(stored) == backtest.items
    assert result["destinations"] == dict(Counter(draft.destinations.values()))
    assert result["current"] == dict(Counter(current.destinations.values()))
    assert {(t["from"], t["to"]): t["items"] for t in result["transitions"]} == dict(pairs)
    assert result["changed"] == sum(n for (a, b), n in pairs.items() if a != b)
    assert result["auto_actions"] == quality_one_by_one(candidate, stored, draft.hits)
    assert result["baseline_version"] == baseline.version


def test_rule_counts_say_which_rule_decided_how_many(
    stored: list[Stored], candidate: RuleSet, period: tuple[datetime, datetime], policy_staff: User
):
    vocabulary = vocabulary_for(candidate.kind)
    deciding = [(r.name, parse(r.condition, vocabulary)) for r in rules_of(candidate) if r.action != "tag"]
    by_rule: Counter[str] = Counter()
    for one in stored:
        if one.row["score.sexual_minors"] >= settings.ROUTING_CHILD_SAFETY_THRESHOLD:
            by_rule["(default or child-safety guard)"] += 1
            continue
        name = next((n for n, c in deciding if interpret(c, one.row) is True), "(default or child-safety guard)")
        by_rule[name] += 1

    result = backtest_request_for(candidate, period, policy_staff).result

    assert {r["rule"]: r["items"] for r in result["rules"]} == {
        "(default or child-safety guard)": by_rule["(default or child-safety guard)"],
        "dm": 0,
        "hate-auto": by_rule["hate-auto"],
        "violence": by_rule["violence"],
    }


def test_the_backtest_of_the_live_version_matches_what_live_routing_did(
    policy_staff: User,
    priya: User,
    candidate: RuleSet,
    intake_queue: Queue,
):
    ruleset_submit(actor=policy_staff, rule_set=candidate)
    unproduced = ruleset_unproduced_scores(candidate)  # this world writes its scores itself, with no model
    ruleset_approve(actor=priya, rule_set=candidate, acknowledge=unproduced)
    ruleset_activate(actor=priya, rule_set=candidate, acknowledge=unproduced)
    rng = random.Random(5)
    items = []
    for _ in range(30):
        item = item_received(surface=rng.choice(["dm", "profile"]), report_count=rng.choice([0, 5]))
        if rng.random() < 0.8:
            scores_write(item, hate=rng.choice([0.1, 0.95]), violence=rng.choice([0.1, 0.7]))
        items.append(item)
    start = timezone.now() - timedelta(minutes=5)
    items_route(item_ids=[i.pk for i in items])

    backtest = backtest_request_for(candidate, (start, timezone.now() + timedelta(minutes=5)), policy_staff)

    live = Counter(RoutingDecision.objects.filter(shadow=False).values_list("destination", flat=True))
    assert backtest.result["destinations"] == dict(live)
    assert live["auto:hate-speech/remove"] == 2


def test_an_escalate_rule_naming_no_queue_goes_to_the_default_queues_target_as_live(
    policy_staff: User, priya: User, intake_queue: Queue, senior_queue: Queue
):
    intake_queue.escalation_target = senior_queue
    intake_queue.save()
    version = ruleset_live(
        RuleSetKind.INTAKE,
        [RuleData(name="urgent", condition="score.violence >= 0.9", action=RuleAction.ESCALATE, priority=50)],
        author=policy_staff,
        approver=priya,
        default_queue=intake_queue,
    )
    start = timezone.now() - timedelta(minutes=5)
    urgent, calm = item_received(), item_received()
    scores_write(urgent, violence=0.95)
    scores_write(calm, violence=0.1)
    items_route(item_ids=[urgent.pk, calm.pk])

    backtest = backtest_request_for(version, (start, timezone.now() + timedelta(minutes=5)), policy_staff)

    assert RoutingDecision.objects.get(item=urgent).destination == "queue:senior"
    assert backtest.result["destinations"] == {"queue:senior": 1, "queue:general": 1}


# --- requests: permissions, periods, the worker path -------------------------------------------------


@pytest.fixture
def inline_max_zero(settings: Any) -> None:
    """Every period counts as large."""
    settings.ROUTING_BACKTEST_INLINE_MAX = 0


def test_large_periods_run_on_a_worker_after_commit(
    stored: list[Stored],
    candidate: RuleSet,
    period: tuple[datetime, datetime],
    policy_staff: User,
    inline_max_zero: None,
    django_capture_on_commit_callbacks: Any,
):
    with django_capture_on_commit_callbacks() as callbacks:
        backtest = backtest_request_for(candidate, period, policy_staff)

    assert len(callbacks) == 1
    backtest.refresh_from_db()
    assert (backtest.status, backtest.result) == (BacktestStatus.PENDING, {})

    callbacks[0]()  # the commit: the task is sent, and tests run tasks eagerly

    backtest.refresh_from_db()
    assert backtest.status == BacktestStatus.DONE
    assert backtest.progress == 1.0
    assert backtest.result["items"] == len(stored)
    draft = route_one_by_one(candidate, stored)
    assert backtest.result["destinations"] == dict(Counter(draft.destinations.values()))


def test_a_finished_backtest_is_not_run_again(
    stored: list[Stored], candidate: RuleSet, period: tuple[datetime, datetime], policy_staff: User
):
    backtest = backtest_request_for(candidate, period, policy_staff)
    finished_at = backtest.finished_at

    assert backtest_run_task(backtest.pk) == len(stored)

    backtest.refresh_from_db()
    assert backtest.finished_at == finished_at


def test_only_policy_staff_run_backtests(candidate: RuleSet, period: tuple[datetime, datetime], reviewer: User):
    with pytest.raises(NotPermitted):
        backtest_request_for(candidate, period, reviewer)

    assert not Backtest.objects.exists()


@pytest.mark.parametrize(
    ("shift_start", "shift_end", "message"),
    [
        (timedelta(0), timedelta(days=-2), "ends after it starts"),
        (timedelta(days=-400), timedelta(0), "at most a year"),
    ],
)
def test_a_backtest_period_must_make_sense(
    shift_start: timedelta,
    shift_end: timedelta,
    message: str,
    candidate: RuleSet,
    period: tuple[datetime, datetime],
    policy_staff: User,
):
    start, end = period
    with pytest.raises(ApplicationError, match=message):
        backtest_request_for(candidate, (start + shift_start, end + shift_end), policy_staff)
