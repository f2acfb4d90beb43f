"""A seeded world of decided, open, auto-actioned, golden, corrected and appealed items with random times, made
directly in the database, plus the plain records a reference computation needs (independent of the rollups)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.utils import timezone

from ops_platform.core.models import Policy, ReviewerProfile, Team, User, Vendor
from queues.models import Decision, ItemEvent, ItemKind, ItemState, Queue, ReviewItem

_ids = itertools.count()


@dataclass
class World:
    start: datetime
    queues: list[Queue]
    appeals_queue: Queue
    policies: list[Policy]
    vendors: list[Vendor]
    reviewers: list[User]
    vendor_of: dict[int, int | None]
    decided: list[dict[str, Any]] = field(default_factory=list)  # one per decided item: what the rollups count
    intake: list[dict[str, Any]] = field(default_factory=list)  # one per non-golden item
    open_items: list[dict[str, Any]] = field(default_factory=list)
    appeals: list[dict[str, Any]] = field(default_factory=list)  # one per appeal item: contested keys, outcome
    decisions: list[dict[str, Any]] = field(default_factory=list)  # every decision on a non-golden item
    events: list[dict[str, Any]] = field(default_factory=list)  # every actor event on a non-golden item
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))


def world_create(*, vendors: list[Vendor], start: datetime, seed: int = 7) -> World:
    queues = [
        Queue.objects.create(slug=f"q{n}-{next(_ids)}", name=f"Queue {n}", sla=sla)
        for n, sla in enumerate([timedelta(hours=1), timedelta(hours=4), timedelta(hours=24)])
    ]
    appeals_queue = Queue.objects.create(slug=f"appeals-{next(_ids)}", name="Appeals", sla=timedelta(hours=48))
    policies = [Policy.objects.create(slug=f"p{n}-{next(_ids)}", name=f"Policy {n}", guidelines="-") for n in range(3)]
    teams = [Team.objects.create(slug=f"house-{next(_ids)}", name="House")]
    teams += [Team.objects.create(slug=f"t-{v.slug}-{next(_ids)}", name=v.name, vendor=v) for v in vendors]
    reviewers, vendor_of = [], {}
    for team in teams:
        for _ in range(2):
            user = User.objects.create(username=f"r{next(_ids)}")
            ReviewerProfile.objects.create(user=user, team=team)
            reviewers.append(user)
            vendor_of[user.pk] = team.vendor_id
    w = World(start, queues, appeals_queue, policies, vendors, reviewers, vendor_of, rng=np.random.default_rng(seed))
    return w


def _minutes(w: World, mean: float) -> timedelta:
    return timedelta(seconds=float(w.rng.lognormal(np.log(mean * 60), 0.8)) + 1.5)


def _event(w: World, item: ReviewItem, at: datetime, event: str, actor: User | None, golden: bool) -> None:
    ItemEvent.objects.create(
        item=item, at=at, actor=actor, actor_label=actor.username if actor else "rule", event=event
    )
    if actor is not None and not golden:
        w.events.append({"actor": actor.pk, "at": at, "event": event, "item": item.pk})


def _decide(w: World, item: ReviewItem, reviewer: User, *, golden: bool, **fields: Any) -> Decision:
    d = Decision.objects.create(item=item, reviewer=reviewer, **fields)
    if not golden:
        w.decisions.append(
            {"reviewer": reviewer.pk, "decided_at": d.decided_at, "handle": d.handle_time, "item": item.pk}
        )
    return d


def items_add(w: World, n: int, *, days: float = 6.0, offset: timedelta = timedelta(0)) -> None:
    """``n`` more items received over ``days`` from ``w.start + offset``."""
    rng = w.rng
    for _ in range(n):
        received = w.start + offset + timedelta(seconds=float(rng.uniform(0, days * 86400)))
        golden = rng.random() < 0.06
        source, surface = str(rng.choice(["app", "web"])), str(rng.choice(["feed", "dm", "comments"]))
        kind = ItemKind.USER_REPORT if rng.random() < 0.3 else ItemKind.CONTENT
        queue = w.queues[int(rng.integers(len(w.queues)))]
        priority = int(rng.choice([0, 10, 50]))
        base = {"source": source, "surface": surface, "kind": kind, "received_at": received, "is_golden": golden}
        ext = f"e{next(_ids)}"
        if rng.random() < 0.1:
            item = ReviewItem.objects.create(
                external_id=ext, state=ItemState.AUTO_ACTIONED, triaged_at=received, decided_at=received, **base
            )
            _event(w, item, received, "auto_actioned", None, golden)
            if not golden:
                w.intake.append({**base, "pk": item.pk, "auto": True, "routed": False, "policy": None})
            continue
        queued = received + timedelta(seconds=float(rng.uniform(1, 30)))
        due = received + queue.sla
        if rng.random() < 0.1:
            item = ReviewItem.objects.create(
                external_id=ext,
                state=ItemState.QUEUED,
                queue=queue,
                priority=priority,
                queued_at=queued,
                due_at=due,
                **base,
            )
            if not golden:
                w.intake.append({**base, "pk": item.pk, "auto": False, "routed": True, "policy": None})
                w.open_items.append({"pk": item.pk, "queue": queue.pk, "received_at": received, "due_at": due})
            continue
        wait = _minutes(w, 40)
        claimed = received + wait
        handle = _minutes(w, 3)
        decided = claimed + handle
        reviewer = w.reviewers[int(rng.integers(len(w.reviewers)))]
        bulk = rng.random() < 0.1
        policy = w.policies[int(rng.integers(len(w.policies)))] if rng.random() < 0.7 else None
        item = ReviewItem.objects.create(
            external_id=ext,
            state=ItemState.DECIDED,
            queue=queue,
            priority=priority,
            queued_at=queued,
            due_at=due,
            decided_at=decided,
            **base,
        )
        _event(w, item, queued, "queued", None, golden)
        escalated = rng.random() < 0.15
        if escalated:
            _event(w, item, received + wait * 0.5, "escalated", w.reviewers[0], golden)
        if rng.random() < 0.08:  # an independent first review that did not close the item
            other = w.reviewers[(w.reviewers.index(reviewer) + 1) % len(w.reviewers)]
            _decide(
                w,
                item,
                other,
                golden=golden,
                queue=queue,
                policy=policy,
                is_violation=policy is not None,
                claimed_at=received + wait * 0.2,
                decided_at=received + wait * 0.4,
                handle_time=wait * 0.2,
                is_final=False,
            )
        if not bulk:
            _event(w, item, claimed, "claimed", reviewer, golden)
        first = _decide(
            w,
            item,
            reviewer,
            golden=golden,
            queue=queue,
            policy=policy,
            is_violation=policy is not None,
            claimed_at=None if bulk else claimed,
            decided_at=decided,
            handle_time=None if bulk else handle,
        )
        _event(w, item, decided, "decided", reviewer, golden)
        in_force, final_policy = first, policy
        if rng.random() < 0.1:  # a QA correction a day later
            corrector = w.reviewers[int(rng.integers(len(w.reviewers)))]
            final_policy = w.policies[int(rng.integers(len(w.policies)))]
            at = decided + timedelta(days=1)
            in_force = _decide(
                w,
                item,
                corrector,
                golden=golden,
                queue=queue,
                policy=final_policy,
                is_violation=True,
                decided_at=at,
                supersedes=first,
            )
            _event(w, item, at, "corrected", corrector, golden)
        record = {
            "pk": item.pk,
            "queue": queue.pk,
            "vendor": w.vendor_of[reviewer.pk],
            "priority": priority,
            "received_at": received,
            "claimed_at": None if bulk else claimed,
            "decided_at": decided,
            "due_at": due,
            "handle": None if bulk else handle.total_seconds(),
            "escalated": escalated,
            "first_policy": policy.pk if policy else None,
            "reviewer": reviewer.pk,
        }
        if golden:
            continue
        if rng.random() < 0.15:
            final_policy = _appeal(w, item, record, in_force, final_policy)
        record["policy"] = final_policy.pk if final_policy else None
        w.decided.append(record)
        w.intake.append({**base, "pk": item.pk, "auto": False, "routed": True, "policy": record["policy"]})


def _appeal(
    w: World, original: ReviewItem, record: dict[str, Any], contested: Decision, policy: Policy | None
) -> Policy | None:
    """An appeal of the item, decided by someone else: upheld, or overturned with a correction."""
    rng = w.rng
    received = record["decided_at"] + timedelta(hours=float(rng.uniform(1, 20)))
    claimed = received + _minutes(w, 60)
    decided = claimed + _minutes(w, 4)
    appeal = ReviewItem.objects.create(
        external_id=f"a{next(_ids)}",
        kind=ItemKind.APPEAL,
        appeal_of=original,
        source="app",
        surface="appeal",
        received_at=received,
        queued_at=received,
        state=ItemState.DECIDED,
        queue=w.appeals_queue,
        due_at=received + w.appeals_queue.sla,
        decided_at=decided,
    )
    reviewer = next(r for r in w.reviewers if r.pk != contested.reviewer_id and r.pk != record["reviewer"])
    overturn = rng.random() < 0.4
    outcome = "overturned" if overturn else "upheld"
    _event(w, appeal, claimed, "claimed", reviewer, False)
    _decide(
        w,
        appeal,
        reviewer,
        golden=False,
        queue=w.appeals_queue,
        policy=None,
        is_violation=False,
        claimed_at=claimed,
        decided_at=decided,
        handle_time=decided - claimed,
        appeal_outcome=outcome,
    )
    _event(w, appeal, decided, "decided", reviewer, False)
    w.decided.append(
        {
            "pk": appeal.pk,
            "queue": w.appeals_queue.pk,
            "vendor": w.vendor_of[reviewer.pk],
            "priority": 0,
            "received_at": received,
            "claimed_at": claimed,
            "decided_at": decided,
            "due_at": received + w.appeals_queue.sla,
            "handle": (decided - claimed).total_seconds(),
            "escalated": False,
            "policy": None,
            "first_policy": None,
            "reviewer": reviewer.pk,
        }
    )
    w.intake.append(
        {
            "source": "app",
            "surface": "appeal",
            "kind": ItemKind.APPEAL,
            "received_at": received,
            "pk": appeal.pk,
            "auto": False,
            "routed": True,
            "policy": None,
        }
    )
    w.appeals.append(
        {
            "original": original.pk,
            "received_at": received,
            "decided_at": decided,
            "outcome": outcome,
            "queue": record["queue"],
            "policy": record["first_policy"],
            "vendor": record["vendor"],
            "original_decided_at": record["decided_at"],
        }
    )
    if not overturn:
        return policy
    _decide(
        w,
        original,
        reviewer,
        golden=False,
        queue=w.appeals_queue,
        policy=None,
        is_violation=False,
        decided_at=decided,
        supersedes=contested,
    )
    return None


def local_day(at: datetime) -> Any:
    return timezone.localtime(at).date()
